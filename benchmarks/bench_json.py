"""What every benchmark script does with its result: save it as JSON beside the others."""

from __future__ import annotations

import json
import math
from pathlib import Path


def save_json(res: dict, path: Path | None) -> None:
    """Write ``res`` to ``path`` (if given) as indented JSON, its folder made and non-finite numbers as null."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(res), indent=2) + "\n")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value

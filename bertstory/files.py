"""Atomic file writes: a temporary file and a rename, so a killed process never leaves half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json_atomic(obj: dict, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented strict JSON (no NaN) through a temporary file and an atomic rename."""
    return write_text_atomic(json.dumps(obj, indent=1, allow_nan=False) + "\n", path)

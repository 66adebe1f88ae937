"""Fixed runs give the metrics.json pinned before the package was restructured (tests/pinned/*.json).

The runs are composed from ``tests/pinned/pin.py``'s overrides and run in this process. The tiny
model runs in float64 and must agree to 1e-9; the bfloat16 ``quick`` runs to bfloat16 round-off.
Keys may be added to metrics.json (schema 1 only grows), never removed or changed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import CONF_DIR

PINNED = Path(__file__).resolve().parents[1] / "pinned"
sys.path.insert(0, str(PINNED))
from pin import PINS  # noqa: E402

# float32 MiniLM: round-off of the CPU's own float32 kernels (AVX2 and AMX machines differ by about 1e-6)
TOLERANCE = {"tiny-quick": 2e-4, "minilm-quick": 2e-4, "minilm-none": 1e-5}  # others: float64, 1e-9


def differences(pinned, now, path: str = "") -> list[str]:
    """Where ``now`` differs from ``pinned`` (numbers by absolute difference; keys only ``now`` has are fine)."""
    if isinstance(pinned, dict):
        if not isinstance(now, dict):
            return [f"{path}: not a dict"]
        out = []
        for key, value in pinned.items():
            if key not in now:
                out.append(f"{path}.{key}: missing")
            else:
                out += differences(value, now[key], f"{path}.{key}")
        return out
    if isinstance(pinned, list):
        if not isinstance(now, list) or len(now) != len(pinned):
            return [f"{path}: length differs"]
        return [d for i, (a, b) in enumerate(zip(pinned, now, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(pinned, float) and isinstance(now, int | float) and not isinstance(now, bool):
        return [] if math.isclose(pinned, now, rel_tol=0, abs_tol=TOL) else [f"{path}: {pinned} -> {now}"]
    return [] if pinned == now else [f"{path}: {pinned!r} -> {now!r}"]


TOL = 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PINS))
def test_run_matches_pinned_metrics(name, tmp_path, monkeypatch):
    global TOL
    from bertstory.run.analysis import run

    overrides = [o for o in PINS[name]]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=overrides)
    monkeypatch.chdir(tmp_path)
    now = run(cfg, tmp_path / "run")
    pinned = json.loads((PINNED / f"{name}.json").read_text())
    TOL = TOLERANCE.get(name, 1e-9)
    diffs = differences(pinned, json.loads(json.dumps(now)))
    assert not diffs, f"{len(diffs)} differences, first: {diffs[:5]}"

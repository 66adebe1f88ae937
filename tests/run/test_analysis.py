"""End to end: Hydra configs compose, analyze.py runs into a tmp folder, outputs follow DESIGN.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors import safe_open

from bertstory.stats.patterns import PATTERNS
from tests.conftest import CONF_DIR, ROOT

GROUPS = {
    "model": ["minilm", "tiny", "bert_base", "hf"],
    "data": ["wiki", "text", "pang_lee", "hf"],
    "attribution": ["exact", "grad_x_input", "sketch", "grad_sum", "rollout", "none"],
    "trainer": ["cpu", "gpu", "ddp"],
    "logger": ["wandb", "csv", "none"],
}


def analyze(*overrides: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_config_group_composes(group, option):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=[f"{group}={option}"])
    assert cfg[group] is not None or option == "none"
    if group == "attribution":
        assert cfg.attribution.name == option
    if group == "trainer":
        assert cfg.trainer.inference_mode is False and cfg.trainer.use_distributed_sampler is False


def test_default_attribution_is_quick_sketch():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze")
    assert cfg.attribution.name == "sketch" and cfg.attribution.probes == 16
    assert cfg.attribution.dtype == "auto" and cfg.attribution.probes_kind == "rademacher"


def test_experiment_paper_composes():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=["experiment=paper"])
    assert cfg.model.name_or_path == "bert-base-uncased" and cfg.attribution.name == "exact"
    assert cfg.data.max_length == 128 and cfg.data.limit is None and cfg.trainer.accelerator == "gpu"


def test_default_is_minilm_on_wiki():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze")
    assert cfg.model.name_or_path == "minilm" and cfg.data.reader == "wiki" and cfg.data.limit >= 50


def assert_lxh(table, L, H, lo=0.0, hi=1.0):
    assert len(table) == L and all(len(row) == H for row in table)
    for row in table:
        for v in row:
            assert v is None or lo - 1e-9 <= v <= hi + 1e-9


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    corpus = out / "corpus.txt"
    corpus.write_text("The cat sat on the mat.\n\nA dog, barking loudly, ran away!\nShort.\n"
                      + " ".join(["word"] * 40) + "\n")
    r = analyze("model=tiny", "attribution=exact", "data=text", f"data.path={corpus}", "data.max_length=16",
                "data.batch_size=2", "writer.dtype=float32", f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@pytest.mark.slow
def test_metrics_json_schema(exact_run, tiny64):
    out, r = exact_run
    lines = [ln for ln in (out / "corpus.txt").read_text().splitlines() if ln.strip()]
    full = [len(tiny64.tokenizer(ln)["input_ids"]) for ln in lines]
    m = json.loads((out / "metrics.json").read_text())
    assert m["schema"] == 1
    assert m["model"] == {"name": "tiny", "layers": 2, "heads": 4, "hidden": 32}
    assert m["method"]["name"] == "exact" and m["method"]["wrt"] == "embeddings"
    assert m["method"]["head_output"] == "context"
    assert m["data"] == {"name": "text", "segments": 4, "tokens": sum(min(n, 16) for n in full),
                         "truncated": sum(n > 16 for n in full), "skipped": 1}
    for block in ("attention", "attribution", "uniform"):
        assert set(m[block]["patterns"]) == set(PATTERNS)
        for t in m[block]["patterns"].values():
            assert_lxh(t, 2, 4)
    assert_lxh(m["attention"]["entropy"], 2, 4, 0, 5)
    for k in ("self", "self_top1"):
        assert_lxh(m["attribution"][k], 2, 4)
    assert set(m["discrepancy"]) == {"js", "tv", "top1", "spearman"}
    assert_lxh(m["discrepancy"]["spearman"], 2, 4, -1, 1)
    p = m["persistence"]
    assert p["tau"] == 0.5 and p["kappa"] == 2.0
    assert set(p["lift"]) == set(PATTERNS) and all(len(v) == 2 for v in p["lift"].values())
    assert all(isinstance(v, bool) for v in p["persists"].values())
    assert "pattern mass" in r.stdout and "analysed 4 segments" in r.stdout
    assert (out / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_shards_hold_the_maps(exact_run, tiny64):
    """Every segment's shard maps equal a direct computation (attention from transformers itself)."""
    from tests.conftest import make_method

    out, _ = exact_run
    shards = sorted((out / "maps").glob("*.safetensors"))
    assert shards and all(s.name.startswith("rank0-batch") for s in shards)
    seen = {}
    for s in shards:
        with safe_open(str(s), framework="pt") as f:
            assert f.metadata()["model"] == "tiny" and f.metadata()["method"] == "exact"
            for key in f.keys():
                if not key.startswith("__"):  # progress records for resume=true (bertstory.resume)
                    seen[key] = f.get_tensor(key)
    assert sorted({k.split(".")[0] for k in seen}) == ["0", "1", "2", "3"]
    model = tiny64.model.float()
    try:
        for k in range(4):
            ids = seen[f"{k}.input_ids"][None]
            n = ids.shape[1]
            hf = model(input_ids=ids, output_attentions=True).attentions
            torch.testing.assert_close(seen[f"{k}.attention"], torch.stack(hf, 1)[0], atol=1e-6, rtol=1e-5)
            attr = make_method("exact").attribute(model, ids, torch.ones_like(ids)).maps[0]
            torch.testing.assert_close(seen[f"{k}.attribution"], attr, atol=1e-5, rtol=1e-4)
            assert seen[f"{k}.attribution"].shape == (2, 4, n, n)
    finally:
        model.double()


@pytest.mark.slow
def test_wandb_offline_run_written(exact_run):
    out, _ = exact_run
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "no W&B run file"


@pytest.mark.slow
def test_attention_only_and_csv_logger(tmp_path):
    r = analyze("model=tiny", "attribution=none", "logger=csv", "data.limit=10", "writer.max_segments=3",
                f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert "attribution" not in m and "discrepancy" not in m and "persistence" not in m
    assert m["data"]["segments"] == 10
    keys = set()
    for s in (tmp_path / "maps").glob("*.safetensors"):
        with safe_open(str(s), framework="pt") as f:
            keys |= {k for k in f.keys() if not k.startswith("__")}
    assert {k.split(".")[0] for k in keys} == {"0", "1", "2"}
    assert not any(k.endswith(".attribution") for k in keys)
    assert list((tmp_path / "csv").rglob("metrics.csv"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["data=text", "data.path=/nonexistent/corpus.txt"], "/nonexistent/corpus.txt"),
        (["data=text", "data.path=EMPTY"], "empty"),
        (["model=hf", "model.name_or_path=/nonexistent/model"], "/nonexistent/model"),
        (["attribution=sketch", "attribution.probes=0"], "probes"),
        (["data.max_length=4096"], "max_length"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, overrides, needle):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    overrides = [o.replace("EMPTY", str(empty)) for o in overrides]
    r = analyze("model=tiny", "logger=none", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and needle in err[0], r.stderr[-2000:]


@pytest.mark.slow
def test_unknown_config_option_fails_without_traceback(tmp_path):
    r = analyze("model=tiny", "attribution.nonsense=1", f"hydra.run.dir={tmp_path}")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "nonsense" in r.stderr

"""Sweeps: summary.csv and summary.png of a multirun folder, checked against each job's metrics.json;
a real sweep through hydra-submitit-launcher's submitit_local; the W&B group of a sweep."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bertstory.results.sweep import summarize_sweep
from bertstory.stats.patterns import PATTERNS
from tests.conftest import CONF_DIR, analyze, wandb_run_records

PNG = b"\x89PNG\r\n\x1a\n"


def head_means(table: list[list[float | None]]) -> list[float | None]:
    """Per layer, the plain mean of the heads that have a value."""
    out = []
    for row in table:
        values = [v for v in row if v is not None]
        out.append(sum(values) / len(values) if values else None)
    return out


def expected_columns(metrics: dict) -> dict[str, float | None]:
    """What summary.csv should hold for one run: per-layer head means of JS and of the pattern masses."""
    out = {}
    tables = {f"att_{p}": metrics["attention"]["patterns"][p] for p in PATTERNS}
    if "attribution" in metrics:
        tables["js"] = metrics["discrepancy"]["js"]
        tables.update({f"attr_{p}": metrics["attribution"]["patterns"][p] for p in PATTERNS})
    for name, table in tables.items():
        for layer, value in enumerate(head_means(table)):
            out[f"{name}_L{layer}"] = value
    if "stderr" in metrics:  # the segment-clustered SEs of the layer means, as metrics.json holds them
        layer_se = metrics["stderr"]["layer_means"]
        errors = {f"att_{p}": layer_se["attention"]["patterns"][p] for p in PATTERNS}
        if "attribution" in metrics:
            errors["js"] = layer_se["discrepancy"]["js"]
            errors.update({f"attr_{p}": layer_se["attribution"]["patterns"][p] for p in PATTERNS})
        for name, values in errors.items():
            out.update({f"{name}_se_L{layer}": v for layer, v in enumerate(values)})
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_row(row: dict[str, str], metrics: dict, overrides: list[str]) -> None:
    assert row["status"] == "ok" and row["overrides"] == " ".join(overrides)
    for o in overrides:
        key, _, value = o.partition("=")
        assert row[key] == value
    assert row["model_name"] == metrics["model"]["name"] and row["method"] == metrics["method"]["name"]
    assert int(row["layers"]) == metrics["model"]["layers"] and int(row["segments"]) == metrics["data"]["segments"]
    expected = expected_columns(metrics)
    for column, value in expected.items():
        if value is None:
            assert row[column] == "", column
        else:
            assert math.isclose(float(row[column]), value, rel_tol=1e-12), column
    layer_columns = {c for c in row if c.rpartition("_L")[2].isdigit() and row[c] != ""}
    assert layer_columns == {c for c, v in expected.items() if v is not None}


def fake_metrics(rng: random.Random, layers: int, heads: int, with_attribution: bool) -> dict:
    """A metrics.json dict with random head values (and a head without a value)."""
    def table():
        t = [[rng.random() for _ in range(heads)] for _ in range(layers)]
        t[0][0] = None
        return t

    m = {"schema": 1, "model": {"name": f"m{layers}", "layers": layers, "heads": heads, "hidden": 8},
         "method": {"name": "exact" if with_attribution else "none"},
         "data": {"name": "text", "segments": 7, "tokens": 70, "truncated": 0, "skipped": 0},
         "attention": {"patterns": {p: table() for p in PATTERNS}, "entropy": table()},
         "uniform": {"patterns": {p: table() for p in PATTERNS}}}
    if with_attribution:
        m["attribution"] = {"patterns": {p: table() for p in PATTERNS}, "entropy": table(), "self": table(),
                            "self_top1": table()}
        m["discrepancy"] = {k: table() for k in ("js", "tv", "top1", "spearman")}
    return m


def fake_job(sweep: Path, num: int, overrides: list[str], metrics: dict | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_summary_of_a_sweep_folder(tmp_path):
    rng = random.Random(0)
    jobs = [(["model=a", "attribution=exact"], fake_metrics(rng, 2, 3, True)),
            (["model=b", "attribution=exact"], fake_metrics(rng, 4, 2, True)),
            (["model=a", "attribution=none"], fake_metrics(rng, 2, 3, False)),
            (["model=b", "attribution=none"], None)]  # a failed job
    for num, (overrides, metrics) in enumerate(jobs):
        fake_job(tmp_path, num + 8, overrides, metrics)  # 8..11: job folders sort by number, not as text
    rows = summarize_sweep(tmp_path)
    assert [r["job"] for r in rows] == ["8", "9", "10", "11"]
    table = read_csv(tmp_path / "summary.csv")
    assert [r["job"] for r in table] == ["8", "9", "10", "11"]
    header = list(table[0])
    assert header[:5] == ["job", "overrides", "status", "model", "attribution"]
    assert header.index("js_L0") < header.index("js_L1") < header.index("js_L3")
    for row, (overrides, metrics) in zip(table[:3], jobs[:3], strict=True):
        check_row(row, metrics, overrides)
    assert table[3]["status"] == "no metrics.json" and table[3]["js_L0"] == "" and table[3]["model"] == "b"
    assert (tmp_path / "summary.png").read_bytes()[:8] == PNG


def test_sweep_summary_is_a_hydra_callback():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", return_hydra_config=True)
    assert cfg.hydra.callbacks.sweep_summary._target_ == "bertstory.results.sweep.SweepSummary"


def test_slurm_launcher_asks_for_one_task_per_gpu():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm", "experiment=paper", "trainer.devices=4",
                                 "trainer.num_nodes=2"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 4 and launcher.nodes == 2
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu"


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path):
    """model x attribution through submitit_local: one run per combination, summary.csv from their
    metrics.json, one W&B run each, all in the sweep's group."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sat on the mat.\nA dog, barking loudly, ran away!\nShort one.\n"
                      "Birds sang in the trees (all day) and people walked home.\n")
    sweep = tmp_path / "sweep"
    r = analyze("-m", "hydra/launcher=submitit_local", "model=tiny,minilm", "attribution=rollout,none", "data=text",
                f"data.path={corpus}", "report.enabled=false", "logger=wandb", f"hydra.sweep.dir={sweep}",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (sweep / ".submitit").is_dir(), "the jobs went through submitit"
    jobs = sorted((d for d in sweep.iterdir() if (d / ".hydra").is_dir()), key=lambda d: int(d.name))
    assert [d.name for d in jobs] == ["0", "1", "2", "3"]
    table = read_csv(sweep / "summary.csv")
    assert [row["job"] for row in table] == ["0", "1", "2", "3"]
    combos = set()
    for row, job in zip(table, jobs, strict=True):
        metrics = json.loads((job / "metrics.json").read_text())
        overrides = [line[2:] for line in (job / ".hydra" / "overrides.yaml").read_text().splitlines()]
        check_row(row, metrics, overrides)
        combos.add((row["model"], row["attribution"]))
        assert metrics["data"]["segments"] == 4
    assert combos == {(m, a) for m in ("tiny", "minilm") for a in ("rollout", "none")}
    assert (sweep / "summary.png").read_bytes()[:8] == PNG
    runs = [rec for job in jobs for d in (job / "wandb").glob("offline-run-*") for rec in wandb_run_records(d)]
    assert len(runs) == 4 and len({run["id"] for run in runs}) == 4
    assert {run["group"] for run in runs} == {str(sweep)}

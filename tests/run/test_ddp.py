"""Several processes (Lightning DDP, gloo on CPU) give the same analysis as one; memory does not grow
with the corpus; the helpers that start and account for the processes."""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from bertstory.run.distributed import check_partition, quote_override_value
from tests.conftest import ROOT, analyze, wandb_run_records

WORDS = ("the cat sat on a mat while dogs ran far away , and birds . sang loudly in trees ; people walked home "
         "( quietly ) after it rained - 42 times !").split()
SEGMENTS = 23  # odd: the two processes cannot get the same number of segments


def write_corpus(path: Path, segments: int, words: tuple[int, int], seed: int = 0) -> Path:
    """``segments`` lines of random words (lengths drawn from ``words``), seeded."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) for _ in range(segments)]
    path.write_text("\n".join(lines) + "\n")
    return path


def job_dirs(sweep: Path) -> dict[str, Path]:
    """The runs of a multirun by their attribution override."""
    out = {}
    for d in sweep.iterdir():
        if (d / ".hydra" / "overrides.yaml").is_file():
            method = re.search(r"attribution=(\w+)", (d / ".hydra" / "overrides.yaml").read_text()).group(1)
            out[method] = d
    return out


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """The same multirun (exact, sketch) in one process and in two DDP processes (float64 model and tangents)."""
    tmp = tmp_path_factory.mktemp("ddp")
    corpus = write_corpus(tmp / "corpus.txt", SEGMENTS, (2, 40))
    common = ["-m", "model=tiny", "+model.dtype=float64", "attribution=exact,sketch", "attribution.dtype=float64",
              "data=text", f"data.path={corpus}", "data.max_length=32", "data.batch_size=3",
              "writer.max_segments=null", "writer.dtype=float32", "report.enabled=false"]
    one = analyze(*common, "logger=none", f"hydra.sweep.dir={tmp / 'one'}", cwd=tmp)
    assert one.returncode == 0, one.stderr[-3000:]
    two = analyze(*common, "logger=wandb", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                  f"hydra.sweep.dir={tmp / 'two'}", cwd=tmp)
    assert two.returncode == 0, two.stderr[-3000:]
    return tmp, job_dirs(tmp / "one"), job_dirs(tmp / "two")


def compare(a, b, path: str = "") -> list[str]:
    """Where two metrics.json trees differ: structure, non-float values, or floats beyond 1e-9 relative."""
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in compare(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in compare(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


def segment_keys(keys) -> list[str]:
    """The ``"{k}.<field>"`` keys of a shard (not the ``__...`` bookkeeping of resume)."""
    return [k for k in keys if k[0].isdigit()]


def shard_keys(run: Path) -> dict[int, list[str]]:
    """Segment keys of every shard, by rank."""
    out: dict[int, list[str]] = {}
    for s in sorted((run / "maps").glob("*.safetensors")):
        rank = int(re.match(r"rank(\d+)-batch\d+\.safetensors", s.name).group(1))
        with safe_open(str(s), framework="pt") as f:
            out.setdefault(rank, []).extend(segment_keys(f.keys()))
    return out


def read_maps(run: Path) -> dict[str, object]:
    maps = {}
    for s in (run / "maps").glob("*.safetensors"):
        with safe_open(str(s), framework="pt") as f:
            for k in segment_keys(f.keys()):
                maps[k] = f.get_tensor(k)
    return maps


@pytest.mark.slow
@pytest.mark.parametrize("method", ["exact", "sketch"])
def test_two_processes_give_the_same_metrics(one_and_two, method):
    _, one, two = one_and_two
    a = json.loads((one[method] / "metrics.json").read_text())
    b = json.loads((two[method] / "metrics.json").read_text())
    assert a["data"]["segments"] == b["data"]["segments"] == SEGMENTS
    assert a["method"]["name"] == method and "discrepancy" in a
    differences = compare(a, b)
    assert not differences, differences[:10]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["exact", "sketch"])
def test_each_rank_writes_its_shards_and_every_segment_once(one_and_two, method):
    _, one, two = one_and_two
    keys = shard_keys(two[method])
    assert sorted(keys) == [0, 1], "both processes write shards of their own"
    per_rank = [sorted({int(k.split(".")[0]) for k in keys[r]}) for r in (0, 1)]
    assert all(per_rank), "both processes got segments"
    assert sorted(per_rank[0] + per_rank[1]) == list(range(SEGMENTS)), "every segment exactly once"
    for r in (0, 1):  # input_ids, attention and attribution of each of its segments, once
        assert len(keys[r]) == 3 * len(per_rank[r]) == len(set(keys[r]))
    single, double = read_maps(one[method]), read_maps(two[method])
    assert single.keys() == double.keys()
    for k in single:
        assert (single[k] == double[k]).all() if k.endswith("input_ids") else \
            (single[k] - double[k]).abs().max() <= 1e-6, k


@pytest.mark.slow
@pytest.mark.parametrize("method", ["exact", "sketch"])
def test_two_processes_give_the_same_standard_errors_and_segment_stats(one_and_two, method):
    """The stderr block is part of metrics.json (compared above to 1e-9); here it is checked to be there
    and the per-segment statistics that both ranks wrote are compared with the one-process run's."""
    from bertstory.results import load

    _, one, two = one_and_two
    a, b = load(one[method]), load(two[method])
    assert a.metrics.has_stderr
    torch.testing.assert_close(torch.tensor(a.metrics.stderr("discrepancy/js")),
                               torch.tensor(b.metrics.stderr("discrepancy/js")), rtol=1e-9, atol=0)
    for p, se in a.metrics.persistence["lift_stderr"].items():
        assert se == pytest.approx(b.metrics.persistence["lift_stderr"][p], rel=1e-9), p
    single, double = a.segment_stats(), b.segment_stats()
    assert single.indices.tolist() == double.indices.tolist() == list(range(SEGMENTS))
    assert single.sums.keys() == double.sums.keys() and len(single.sums) == 26
    for name in single.sums:
        torch.testing.assert_close(single.sums[name], double.sums[name], rtol=1e-6, atol=1e-6)
    for name in single.counts:
        assert torch.equal(single.counts[name], double.counts[name]), name


@pytest.mark.slow
def test_rank_work_is_logged_and_balanced(one_and_two):
    _, _, two = one_and_two
    log = (two["exact"] / "analyze.log").read_text()
    planned = {int(r): (int(s), int(t)) for r, s, t in re.findall(r"rank (\d+): (\d+) segments, (\d+) tokens", log)}
    done = {int(r): (int(s), int(t)) for r, s, t in re.findall(r"rank (\d+) analysed (\d+) segments, (\d+) tokens",
                                                                 log)}
    assert sorted(done) == [0, 1] and done == planned
    tokens = json.loads((two["exact"] / "metrics.json").read_text())["data"]["tokens"]
    assert sum(s for s, _ in done.values()) == SEGMENTS and sum(t for _, t in done.values()) == tokens
    costs = [t for _, t in done.values()]
    assert min(costs) >= 0.3 * max(costs)  # spread by cost (tokens), not dealt out in one rank


@pytest.mark.slow
def test_ddp_keeps_one_run_dir_and_one_wandb_run(one_and_two):
    tmp, _, two = one_and_two
    assert sorted(p.name for p in tmp.iterdir()) == ["corpus.txt", "one", "two"], "no stray outputs/ or multirun/"
    assert sorted(p.name for p in (tmp / "two").iterdir() if p.is_dir()) == ["0", "1"]
    runs = []
    for run in two.values():
        assert (run / ".hydra" / "config.yaml").is_file() and (run / "analyze_rank1.log").is_file()
        assert not list(run.rglob("analyze_rank1/.hydra")) and not (run / "metrics.json.tmp").exists()
        wandb_runs = list((run / "wandb").glob("offline-run-*"))
        assert len(wandb_runs) == 1, "only rank 0 logs to W&B"
        runs += wandb_run_records(wandb_runs[0])
    assert len(runs) == 2 and runs[0]["id"] != runs[1]["id"], "each job of the sweep has its own W&B run"
    assert runs[0]["group"] == runs[1]["group"] == str(tmp / "two"), "the runs of a sweep share a group"


@pytest.mark.slow
def test_single_ddp_run_keeps_one_run_dir(tmp_path):
    """``python analyze.py trainer=ddp ...`` without -m and without hydra.run.dir: one outputs/DATE/TIME."""
    corpus = write_corpus(tmp_path / "corpus.txt", 9, (2, 30))
    r = analyze("model=tiny", "attribution=none", "data=text", f"data.path={corpus}", "data.batch_size=2",
                "logger=none", "report.enabled=false", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "outputs"]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    run = runs[0]
    assert (run / ".hydra").is_dir() and (run / "analyze_rank1.log").is_file()
    assert json.loads((run / "metrics.json").read_text())["data"]["segments"] == 9
    keys = shard_keys(run)
    assert sorted(keys) == [0, 1]
    assert sorted(int(k.split(".")[0]) for r in (0, 1) for k in keys[r] if k.endswith(".input_ids")) == list(range(9))


def peak_rss_mb(*overrides: str, cwd: Path) -> float:
    """Peak resident memory (MB) of one ``analyze.py`` process, from ``os.wait4``."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "analyze.py"), *overrides], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, stderr[-3000:]
    return usage.ru_maxrss / 1024  # kilobytes on Linux


@pytest.mark.slow
def test_memory_does_not_grow_with_the_corpus(tmp_path):
    """100 and 400 segments of 128 tokens, maps kept for 8: the peak RSS of the larger run is within a
    quarter of what holding the attention maps of its 300 extra segments would take (measured: ~10 MB
    against 150 MB; with predictions gathered and all maps kept, ~300 MB)."""
    corpus = write_corpus(tmp_path / "corpus.txt", 400, (130, 160), seed=1)
    rss = {}
    for n in (100, 400):
        rss[n] = peak_rss_mb("model=tiny", "attribution=none", "data=text", f"data.path={corpus}", f"data.limit={n}",
                             "data.max_length=128", "data.batch_size=4", "writer.max_segments=8", "logger=none",
                             "report.enabled=false", f"hydra.run.dir={tmp_path / str(n)}", cwd=tmp_path)
        m = json.loads((tmp_path / str(n) / "metrics.json").read_text())["data"]
        assert m["segments"] == n and m["tokens"] == 128 * n
    extra_maps_mb = 300 * (2 * 4 * 128 * 128 * 4) / 2**20  # float32 attention, 2 layers x 4 heads
    assert rss[400] - rss[100] < 0.25 * extra_maps_mb, (rss, extra_maps_mb)


def test_check_partition_finds_missing_and_repeated_segments():
    check_partition([[0, 2, 4], [3, 1]], 5)
    with pytest.raises(RuntimeError, match="1 missing"):
        check_partition([[0, 2], [3, 1]], 5)
    with pytest.raises(RuntimeError, match="1 more than once"):
        check_partition([[0, 2, 4], [3, 1, 2]], 5)
    with pytest.raises(RuntimeError, match="outside"):
        check_partition([[0, 5]], 5)


@pytest.mark.parametrize("value", ["/tmp/a,b", "/tmp/it's here", "/tmp/x=y z", "multirun/2026-01-01/10-00-00/0"])
def test_quoted_override_value_is_taken_literally(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(f"hydra.run.dir={quote_override_value(value)}")
    assert override.value() == value

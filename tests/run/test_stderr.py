"""Standard errors of real (tiny) runs: against a jackknife over segments, the per-segment statistics
against single-segment statistics, and the paired comparison of two runs (rerun noise, planted changes)."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bertstory.results import load
from bertstory.results.compare import main as compare_main
from bertstory.stats.collection import AnalysisMetrics
from bertstory.stats.patterns import pattern_masks, punct_vocab_mask
from tests.conftest import CONF_DIR, analyze, shard_maps

WORDS = "the cat sat on a mat while dogs ran far away , and birds . sang loudly in trees".split()
LENGTH = 12  # every segment is truncated to this many tokens


def corpus(path: Path, segments: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 25)))
                              for _ in range(segments)) + "\n")
    return path


def table(tree: dict, name: str):
    for part in name.split("/"):
        tree = tree[part]
    return tree


@pytest.fixture(scope="module")
def equal_length_run(tmp_path_factory):
    """A tiny float64 exact run over 9 segments of exactly LENGTH tokens, every map kept in float64."""
    from bertstory.run.analysis import run

    tmp = tmp_path_factory.mktemp("jackknife")
    overrides = ["model=tiny", "++model.dtype=float64", "attribution=exact", "attribution.dtype=float64", "data=text",
                 f"data.path={corpus(tmp / 'corpus.txt', 9)}", f"data.max_length={LENGTH}", "data.batch_size=4",
                 "writer.dtype=float32", "writer.max_segments=null", "logger=none", "report.enabled=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=overrides)
    metrics = run(cfg, tmp / "run")
    return tmp / "run", metrics


def statistics_of(maps: dict[int, dict], keep: list[int], tokenizer) -> dict:
    """metrics.json's blocks recomputed by AnalysisMetrics from the saved maps of the segments ``keep``."""
    ids = torch.stack([maps[k]["input_ids"] for k in keep])
    mask = torch.ones_like(ids)
    att = torch.stack([maps[k]["attention"] for k in keep]).double()
    attr = torch.stack([maps[k]["attribution"] for k in keep]).double()
    metrics = AnalysisMetrics(att.shape[1], att.shape[2], with_attribution=True)
    masks = pattern_masks(ids, mask, tokenizer.cls_token_id, tokenizer.sep_token_id, punct_vocab_mask(tokenizer))
    metrics.update(att, attr, mask, masks)
    return metrics.compute_block()


@pytest.mark.slow
def test_standard_errors_equal_a_jackknife_over_segments(equal_length_run, tiny64):
    """With equal segment lengths the delta-method SE of a ratio equals the jackknife SE exactly:
    ``SE_J^2 = (K-1)/K sum_k (R_(-k) - mean R_(-.))^2``, each ``R_(-k)`` recomputed without segment k."""
    run_dir, metrics = equal_length_run
    results = load(run_dir)
    maps = shard_maps(run_dir)
    assert len(maps) == 9 and all(m["input_ids"].numel() == LENGTH for m in maps.values())
    k = len(maps)
    leave_out = [statistics_of(maps, [j for j in maps if j != i], tiny64.tokenizer) for i in maps]
    names = [n for n in results.metrics.tables() if n.split("/")[0] in ("attention", "attribution", "discrepancy")]
    checked = 0
    for name in names:
        se = results.metrics.stderr(name)
        layer_se = results.metrics.layer_stderr(name)
        for layer in range(results.layers):
            for head in range(results.heads + 1):  # the last is the layer mean
                if head < results.heads:
                    values = [table(b, name)[layer][head] for b in leave_out]
                    got = se[layer][head]
                else:
                    values = [sum(table(b, name)[layer]) / results.heads for b in leave_out]
                    got = layer_se[layer]
                mean = sum(values) / k
                jackknife = math.sqrt((k - 1) / k * sum((v - mean) ** 2 for v in values))
                assert got == pytest.approx(jackknife, rel=1e-3, abs=1e-7), (name, layer, head)
                checked += jackknife > 1e-6
    assert checked > 100


@pytest.mark.slow
def test_segment_stats_are_each_segments_own_sums(equal_length_run, tiny64):
    run_dir, metrics = equal_length_run
    results = load(run_dir)
    stats = results.segment_stats()
    maps = shard_maps(run_dir)
    assert stats.indices.tolist() == sorted(maps) and stats.counts["queries"].tolist() == [LENGTH] * len(maps)
    for k in (0, 4, 8):
        alone = statistics_of(maps, [k], tiny64.tokenizer)
        for name in results.metrics.tables():
            mean = stats.sums[name][stats.indices.tolist().index(k)] / stats.count(name)[k]
            torch.testing.assert_close(mean.double(), torch.tensor(table(alone, name), dtype=torch.float64),
                                       rtol=1e-5, atol=1e-6)
    for name in results.metrics.tables():  # the corpus means from the per-segment sums
        mean = stats.sums[name].double().sum(0) / stats.count(name).double().sum(0)
        torch.testing.assert_close(mean, torch.tensor(results.metrics.table(name), dtype=torch.float64),
                                   rtol=1e-6, atol=1e-7)
    assert metrics["stderr"]["discrepancy"]["js"] == results.metrics.stderr("discrepancy/js")


# --------------------------------------------------------------------------- paired comparison


@pytest.fixture(scope="module")
def sketch_runs(tmp_path_factory):
    """The same tiny sketch run with probe seeds 0 and 1, with shared and with per-segment probes, over 24
    segments of random length."""
    tmp = tmp_path_factory.mktemp("paired")
    text = corpus(tmp / "corpus.txt", 24)
    lines = [" ".join(line.split()[: random.Random(i).randint(3, 25)])
             for i, line in enumerate(text.read_text().splitlines())]
    text.write_text("\n".join(lines) + "\n")
    runs = {}
    for probes in ("shared", "segment"):
        for seed in (0, 1):
            runs[probes, seed] = tmp / f"{probes}-{seed}"
            r = analyze("model=tiny", "attribution=sketch", f"attribution.seed={seed}", "attribution.probes=4",
                        f"attribution.segment_probes={probes == 'segment'}", "data=text", f"data.path={text}",
                        "data.batch_size=8", "writer.max_segments=0", "logger=none", "report.enabled=false",
                        f"hydra.run.dir={runs[probes, seed]}")
            assert r.returncode == 0, r.stderr[-3000:]
    return tmp, runs


def compare_runs(a: Path, b: Path, out: Path) -> dict:
    compare_main([str(a), str(b), "--out", str(out)])
    return json.loads((out / "compare.json").read_text())


@pytest.mark.slow
def test_a_rerun_with_another_sketch_seed_differs_in_no_head(sketch_runs, tmp_path):
    _, runs = sketch_runs
    result = compare_runs(runs["segment", 0], runs["segment", 1], tmp_path / "out")
    a, b = (json.loads((runs["segment", s] / "metrics.json").read_text()) for s in (0, 1))
    assert table(a, "discrepancy/js") != table(b, "discrepancy/js"), "the seeds give other attributions"
    assert result["segments"] == 24 and set(result["tables"]) >= {"discrepancy/js", "attribution/patterns/cls"}
    significant = {n: t["significant_heads"] for n, t in result["tables"].items() if t["significant_heads"]}
    assert not significant, significant
    attention = result["tables"]["attention/entropy"]
    assert attention["difference"] == [[0.0] * 4] * 2 and attention["p"] == [[1.0] * 4] * 2
    tested = [p for n, t in result["tables"].items() if n.split("/")[0] in ("attribution", "discrepancy")
              for row in t["p"] for p in row if p is not None]
    assert len(tested) > 90 and all(0 < p <= 1 for p in tested)


@pytest.mark.slow
def test_probes_shared_by_every_segment_make_a_seed_change_significant(sketch_runs, tmp_path):
    """With the default shared probes the sketch's noise is common to all segments: segment-clustered SEs
    leave it out, and another seed moves many heads beyond them (why ``segment_probes=true`` exists)."""
    _, runs = sketch_runs
    result = compare_runs(runs["shared", 0], runs["shared", 1], tmp_path / "out")
    flagged = sum(t["significant_heads"] for n, t in result["tables"].items() if n.startswith("attribution/"))
    assert flagged > 20, flagged


def plant(run: Path, out: Path, name: str, heads: list[tuple[int, int]], shift: float, seed: int = 0) -> None:
    """Copy ``run`` to ``out`` with table ``name`` of ``heads`` raised per query by ``shift`` on average
    (a segment's shift is ``shift * (1 + N(0, 1))``), in the shards' per-segment sums and in metrics.json."""
    shutil.copytree(run, out)
    gen = torch.Generator().manual_seed(seed)
    count = 0.0
    added = torch.zeros(2, 4, dtype=torch.float64)
    for path in sorted((out / "maps").glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        tensors = load_file(str(path))
        key = f"__segment__.{name}"
        n = tensors["__segment__.queries"].double()
        for layer, head in heads:
            change = n * shift * (1 + torch.randn(len(n), generator=gen, dtype=torch.float64))
            tensors[key][:, layer, head] += change.float()
            added[layer, head] += change.sum()
        count += float(n.sum())
        save_file(tensors, str(path), metadata=metadata)
    metrics = json.loads((out / "metrics.json").read_text())
    grid = table(metrics, name)
    for layer, head in heads:
        grid[layer][head] += float(added[layer, head]) / count
    (out / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.slow
def test_planted_differences_are_found(sketch_runs, tmp_path):
    _, runs = sketch_runs
    planted = [(0, 1), (1, 3)]
    plant(runs["segment", 1], tmp_path / "planted", "attribution/patterns/self", planted, shift=0.05)
    result = compare_runs(runs["segment", 0], tmp_path / "planted", tmp_path / "out")
    found = result["tables"]["attribution/patterns/self"]
    flagged = [(layer, head) for layer, row in enumerate(found["significant"]) for head, v in enumerate(row) if v]
    assert set(planted) <= set(flagged), flagged
    for layer, head in planted:
        assert found["difference"][layer][head] == pytest.approx(0.05, abs=0.03)
        assert found["p"][layer][head] < 5e-3
    # Benjamini-Hochberg bounds the share of false discoveries, not their number: once the planted heads
    # are found, a borderline null head (here the same a_ii in both self tables) may join them
    extra = sum(t["significant_heads"] for t in result["tables"].values()) - len(planted)
    assert extra <= 2, {n: t["significant_heads"] for n, t in result["tables"].items() if t["significant_heads"]}
    assert (tmp_path / "out" / "attribution_patterns_self.png").is_file()


@pytest.mark.slow
def test_runs_over_other_segments_are_refused_in_one_line(sketch_runs, tmp_path, capsys):
    tmp, runs = sketch_runs
    other = tmp_path / "other"
    r = analyze("model=tiny", "attribution=sketch", "attribution.probes=4", "data=text",
                f"data.path={corpus(tmp_path / 'c.txt', 24, seed=5)}", "data.batch_size=8", "writer.max_segments=0",
                "logger=none", "report.enabled=false", f"hydra.run.dir={other}")
    assert r.returncode == 0, r.stderr[-3000:]
    with pytest.raises(SystemExit) as exit_info:
        compare_main([str(runs["segment", 0]), str(other), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "different segments" in err[0], err

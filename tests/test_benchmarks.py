"""The attribution benchmark (a smoke run on ``tiny``, not timed) and the fast engine's exactness.

The engine checks compare ``engine=fast`` with ``engine=jvp`` (``torch.func.jvp`` under ``vmap``
on the Hugging Face modules) in float64, on both score paths (per-token folded score maps and
query/key tangents), and bfloat16 tangents against float32 on MiniLM.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bertstory.attribution.engine as engine  # noqa: E402
from bertstory.attribution import normalise_rows  # noqa: E402
from bertstory.attribution.exact import Exact, GradXInput  # noqa: E402
from bertstory.attribution.memory import CPU_ROWS, auto_chunk  # noqa: E402
from bertstory.attribution.sketch import Sketch  # noqa: E402
from bertstory.models import load_encoder  # noqa: E402
from bertstory.stats.formulas import js_bits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY3 = dict(num_hidden_layers=3, num_attention_heads=4, hidden_size=32, intermediate_size=64)


def load_script(name: str):
    """``benchmarks/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return load_script("attribution")


@pytest.fixture(scope="module")
def tiny3():
    return load_encoder("minilm", name="tiny3", random_init=True, seed=1, config_overrides=TINY3, dtype="float64")


@pytest.fixture(scope="module")
def pair(tiny3):
    e = tiny3.tokenizer("The cat sat on the mat.", "It purred.")
    return torch.tensor([e["input_ids"]]), torch.tensor([e["token_type_ids"]])


# --------------------------------------------------------------------------- the benchmark


def test_benchmark_smoke_on_tiny(bench, tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--model", "tiny", "--tokens", "10", "--naive-samples", "30", "--repeats", "1"]
    res = bench.main([*argv, "--matmul-size", "256", "--json", str(out)])
    data = json.loads(out.read_text())
    assert set(bench.KEYS) <= set(data)
    assert data["model"] == "tiny" and data["tokens"] == 10
    for key in ("exact_s", "exact_bf16_s", "naive_s", "sketch_s", "grad_sum_s", "forward_s", "jacobian_s"):
        assert data[key] > 0, key
    for key in ("matmul_flops_per_s", "matmul_bf16_flops_per_s", "flop_efficiency", "exact_flops"):
        assert data[key] > 0 and math.isfinite(data[key]), key
    assert data["naive_extrapolated"] is True  # 30 of 2*10*32 passes
    assert data["exact_bf16_js"] >= 0 and data["sketch_js"] >= 0
    assert 0 <= data["exact_bf16_max_err"] <= 1
    assert data["peak_mem_mb"] is not None and data["peak_mem_mb"] >= 0
    assert data["speedup_vs_naive"] == pytest.approx(data["naive_s"] / data["exact_s"])
    assert data["exact_flops"] == bench.exact_flops(2, 10, 32, 64)
    assert res["details"]["naive_passes_timed"] == 30


def test_mixing_benchmark_smoke_on_tiny(bench, tmp_path):
    out = tmp_path / "mixing.json"
    bench.main(["--model", "tiny", "--tokens", "10", "--repeats", "1", "--mixing", "--json", str(out)])
    data = json.loads(out.read_text())
    for name in bench.MIXING:
        assert data[f"{name}_s"] > 0 and data[f"{name}_vs_exact"] == pytest.approx(data[f"{name}_s"] / data["exact_s"])
    assert data["exact_s"] > 0 and data["tokens"] == 10


def test_exact_flops_formula(bench):
    L, n, d, f = 6, 24, 384, 1536
    per = L * 6 * n * d * d + (L - 1) * (2 * n * d * d + 4 * n * d * f) + L * 4 * n * n * d
    assert bench.exact_flops(L, n, d, f) == n * d * per


def test_jacobian_memory_estimate_skips_large_models(bench):
    """MiniLM at 21+ tokens does not fit a 24 GB machine; tiny does."""
    assert bench.jacobian_mb(6, 12, 21, 384, 1536, 4) > 0.5 * 24 * 1024
    assert bench.jacobian_mb(2, 4, 10, 32, 64, 4) < 100


# --------------------------------------------------------------------------- engine exactness


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("wrt", ["embeddings", "word"])
@pytest.mark.parametrize("head_output", ["context", "projected"])
def test_fast_engine_equals_jvp(tiny3, pair, monkeypatch, fold, wrt, head_output):
    ids, tt = pair
    monkeypatch.setattr(engine, "fold_scores", lambda H, n, d: fold)
    for cls, kw in ((Exact, {}), (GradXInput, {}), (Sketch, dict(probes=3, seed=1))):
        opts = dict(dtype="float64", wrt=wrt, head_output=head_output, **kw)
        ref = cls(engine="jvp", **opts).scores(tiny3.model, ids, tt)
        for chunk in (None, 5):
            got = cls(chunk_size=chunk, **opts).scores(tiny3.model, ids, tt)
            assert got.shape == ref.shape
            assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-10


@pytest.mark.parametrize("maps", [0, 1])
@pytest.mark.parametrize("head_output", ["context", "projected"])
def test_plain_residual_rules_equal_jvp(tiny3, pair, monkeypatch, maps, head_output):
    """Layers beyond the map budget use the plain LayerNorm/feed-forward rules: still exact."""
    ids, tt = pair
    n, d = ids.shape[1], tiny3.model.config.hidden_size
    monkeypatch.setattr(Exact, "map_budget", lambda self, plan: maps * n * d * d * 8)
    ref = Exact(engine="jvp", dtype="float64", head_output=head_output).scores(tiny3.model, ids, tt)
    got = Exact(dtype="float64", head_output=head_output).scores(tiny3.model, ids, tt)
    assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-10


def test_out_of_memory_inside_a_chunk_counts_nothing_twice(tiny3, pair, monkeypatch):
    """A failure after layer 0 of a chunk went through: the retried chunk is not counted twice."""
    ids, tt = pair
    original = engine.Engine.residual

    def failing(self, plan, do, X, rows, vecs):
        if X is not None and rows.shape[0] > 8:
            raise torch.OutOfMemoryError("out of memory (injected)")
        return original(self, plan, do, X, rows, vecs)

    ref = Exact(dtype="float64", chunk_size=64).scores(tiny3.model, ids, tt)
    monkeypatch.setattr(engine.Engine, "residual", failing)
    method = Exact(dtype="float64", chunk_size=64)
    got = method.scores(tiny3.model, ids, tt)
    assert method.chunk_size == 64  # the back-off stays inside the call
    assert (got - ref).abs().max().item() < 1e-12


def test_auto_chunk_is_bounded(tiny3):
    cfg = tiny3.model.config
    c = auto_chunk(12, cfg, torch.float32, 1024, "cpu")
    assert 1 <= c <= CPU_ROWS // 12
    assert auto_chunk(12, cfg, torch.float32, 1, "cpu") >= 1


@pytest.mark.slow  # bfloat16 matmuls are slow on CPUs without bf16 units
def test_bfloat16_tangents_match_float32_on_minilm():
    enc = load_encoder("minilm")
    e = enc.tokenizer("Anarchism is a political philosophy.")
    ids, tt = torch.tensor([e["input_ids"]]), torch.tensor([e["token_type_ids"]])
    a = normalise_rows(Exact(dtype="float32").scores(enc.model, ids, tt).double())[0]
    b = normalise_rows(Exact(dtype="bfloat16").scores(enc.model, ids, tt).double())[0]
    assert js_bits(a, b).mean().item() <= 1e-4
    assert (a - b).abs().max().item() <= 0.02


# --------------------------------------------------------------------------- gpu_check.sh


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_compare_finds_a_changed_statistic(tmp_path):
    gc = load_gpu_check()
    base = {"data": {"segments": 2}, "attention": {"entropy": [[1.0, 2.0]]}, "discrepancy": {"js": [[0.1, 0.2]]}}
    (tmp_path / "a.json").write_text(json.dumps(base))
    changed = json.loads(json.dumps(base))
    changed["discrepancy"]["js"][0][1] = 0.2 + 3e-3
    (tmp_path / "b.json").write_text(json.dumps(changed))
    c = gc.compare(tmp_path / "a.json", tmp_path / "b.json", 1e-3)
    assert not c["ok"] and c["where"] == "discrepancy.js[0][1]" and c["max_abs_diff"] == pytest.approx(3e-3)
    assert gc.compare(tmp_path / "a.json", tmp_path / "b.json", 5e-3)["ok"]
    del changed["discrepancy"]
    (tmp_path / "c.json").write_text(json.dumps(changed))
    assert not gc.compare(tmp_path / "a.json", tmp_path / "c.json", 1.0)["ok"]  # a block missing


@pytest.mark.slow
def test_gpu_check_cpu_dry_run(tmp_path):
    """``gpu_check.sh --cpu-dry-run`` runs every step of the GPU check on CPU, and the runs agree."""
    import subprocess

    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert r.returncode == 0, (r.stdout[-2000:], [s for s in res["steps"] if not s["ok"]])
    names = [s["name"] for s in res["steps"]]
    assert names == ["tests", "bench_tiny", "run_cpu", "run_gpu", "run_ddp", "compare_gpu", "compare_ddp"]
    assert res["ok"] and res["dry_run"]
    bench = next(s for s in res["steps"] if s["name"] == "bench_tiny")["bench"]
    assert bench["exact_s"] > 0 and bench["tokens"] == 10
    for name in ("compare_gpu", "compare_ddp"):
        c = next(s for s in res["steps"] if s["name"] == name)["compare"]
        assert c["same_data"] and c["numbers"] > 0 and c["max_abs_diff"] <= 1e-5
    assert "| compare_ddp | yes |" in (tmp_path / "summary.md").read_text()


# --------------------------------------------------------------------------- the other benchmarks (smoke runs on tiny)


def test_long_segments_extrapolates_from_timed_chunks_and_merges(tmp_path, capsys):
    long = load_script("long_segments")
    out = tmp_path / "10.json"
    base = ["--model", "tiny", "--tokens", "10", "--warmup", "0", "--chunks", "1", "--json", str(out)]
    long.main([*base, "--whole-under", "0", "--memory-mb", "64"])
    first = json.loads(out.read_text())
    assert first["model"] == "tiny" and first["tokens"] == 10 and set(first["results"]) == {"exact_float32",
                                                                                             "sketch32_float32"}
    r = first["results"]["exact_float32"]
    assert r["extrapolated"] is True and r["tangents"] == 10 * 32 and 0 < r["tangents_timed"] <= r["chunk"]
    assert r["seconds"] == pytest.approx(r["setup_s"] + r["tangents"] * r["s_per_tangent"])
    assert r["memory_mb"] == 64 and r["peak_mb"] >= 0
    long.main([*base, "--whole-under", "1e9", "--methods", "exact_bfloat16", "--bf16-tangents", "4", "--merge"])
    merged = json.loads(out.read_text())["results"]
    assert set(merged) == {"exact_float32", "sketch32_float32", "exact_bfloat16", "exact_bfloat16_4tangents"}
    assert merged["exact_float32"] == r and merged["exact_bfloat16"]["extrapolated"] is False
    assert merged["exact_bfloat16"]["dtype"] == "bfloat16"
    few = merged["exact_bfloat16_4tangents"]  # its own key: it does not replace the whole segment's figure
    assert few["extrapolated"] is True and few["chunk"] == 4 and few["dtype"] == "bfloat16"
    capsys.readouterr()
    long.main(["--summarize", str(out)])
    table = capsys.readouterr().out
    assert "| 10 | exact_float32 |" in table and "extrapolated: " in table and "whole segment" in table


def test_growth_exponent_is_the_log_log_slope():
    long = load_script("long_segments")
    ns = [32, 64, 128, 256, 512]
    assert long.fit_exponent(ns, [3.0 * n**2.5 for n in ns]) == pytest.approx(2.5)
    assert long.fit_exponent([1, 2], [5.0, 5.0]) == pytest.approx(0.0)


def test_probe_curves_orthogonal_is_exact_at_m_equal_d():
    """tiny has d = 32: 32 orthogonal probes per token span the input space (exact); 32 Rademacher do not."""
    probes = load_script("probes")
    res = probes.main(["--model", "tiny", "--segments", "1", "--max-length", "10", "--probes", "4", "32"])
    curves = {kind: {row["probes"]: row for row in rows} for kind, rows in res["curves"].items()}
    assert set(curves) == {"rademacher", "orthogonal"}
    assert curves["orthogonal"][32]["max_abs_err"] < 1e-4
    assert curves["rademacher"][32]["max_abs_err"] > 1e-3
    for kind in curves:
        assert curves[kind][4]["mean_js_bits"] > curves[kind][32]["mean_js_bits"] >= 0


@pytest.mark.slow
def test_overhead_split_adds_up_to_the_run(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "overhead.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "model=tiny", "data.limit=4",
                        "logger=none", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    parts = data["parts_s"]
    assert set(parts) >= {"attribute", "attention", "statistics", "shards", "report", "viewer", "logger"}
    assert sum(parts.values()) == pytest.approx(data["run_s"])
    assert parts["attribute"] > 0 and parts["report"] > 0 and parts["viewer"] >= -1e-6  # viewer: the wait beyond
    assert data["outside_share"] == pytest.approx(1 - parts["attribute"] / data["run_s"])

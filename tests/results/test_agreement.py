"""Agreement between runs whose agreement is known: a run against itself, and two methods that coincide by
construction (``rollout`` with ``scope=local`` is the attention itself, which ``attribution=none`` saves)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir

from bertstory.results.agreement import agreement
from bertstory.results.compare import main
from bertstory.results.sweep import summarize_sweep
from tests.conftest import CONF_DIR, RUN_CORPUS

BASE = ["model=tiny", "++model.dtype=float64", "data=text", "writer.dtype=float32", "logger=none",
        "report.enabled=false", "data.batch_size=2"]
RUNS = {
    "rollout_local": ["attribution=rollout", "attribution.scope=local"],
    "none": ["attribution=none"],
    "alti": ["attribution=alti", "attribution.dtype=float64", "data.batch_size=3"],
    "fewer": ["attribution=rollout", "writer.max_segments=2"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs over the same five segments (``fewer`` keeps the maps of two only), made in this process."""
    from bertstory.run.analysis import run

    base = tmp_path_factory.mktemp("agreement-runs")
    corpus = base / "corpus.txt"
    corpus.write_text(RUN_CORPUS)
    out = {}
    for name, overrides in RUNS.items():
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="analyze", overrides=[*BASE, f"data.path={corpus}", *overrides])
        run(cfg, base / name)
        out[name] = base / name
    return out


def cli(capsys, *args) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_a_run_against_itself_agrees_perfectly(runs):
    result = agreement([runs["alti"], runs["alti"]])
    (pair,) = result["pairs"]
    L, H = len(pair["js"]), len(pair["js"][0])
    assert (L, H) == (2, 4) and result["segments"] == 5
    assert all(v == pytest.approx(1.0, abs=1e-12) for row in pair["spearman"] for v in row)
    assert all(v == pytest.approx(0.0, abs=1e-12) for row in pair["js"] for v in row)
    assert pair["layers"]["spearman"] == pytest.approx([1.0] * L, abs=1e-12)
    assert pair["a"] != pair["b"]  # same label numbered apart


@pytest.mark.slow
def test_local_rollout_coincides_with_attention(runs):
    result = agreement([runs["rollout_local"], runs["none"], runs["alti"]])
    by_pair = {(p["a"], p["b"]): p for p in result["pairs"]}
    same = by_pair[("tiny/rollout:local", "tiny/none")]
    assert all(v == pytest.approx(1.0, abs=1e-9) for row in same["spearman"] for v in row)
    assert all(v == pytest.approx(0.0, abs=1e-9) for row in same["js"] for v in row)
    # alti is not attention: its agreement is below 1 and matches its own with_attention block
    differ = by_pair[("tiny/none", "tiny/alti")]
    own = {w["run"]: w for w in result["with_attention"]}
    assert differ["mean"]["spearman"] < 0.99
    for stat in ("spearman", "js"):
        torch.testing.assert_close(torch.tensor(differ[stat]), torch.tensor(own["tiny/alti"][stat]), atol=1e-12, rtol=0)
    assert own["tiny/rollout:local"]["mean"]["js"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_agreement_matches_a_loop_over_the_saved_rows(runs):
    """JS and Spearman of one head recomputed from the shards with scipy, query by query."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import spearmanr

    from bertstory.results.shards import iter_maps

    result = agreement([runs["none"], runs["alti"]])
    att = {k: f["attention"] for k, f, _ in iter_maps(runs["none"])}
    attr = {k: f["attribution"] for k, f, _ in iter_maps(runs["alti"])}
    layer, head = 1, 2
    js, rho, counted, queries = 0.0, 0.0, 0, 0
    for k in att:
        p, q = att[k][layer, head].double().numpy(), attr[k][layer, head].double().numpy()
        for i in range(p.shape[0]):
            js += jensenshannon(p[i], q[i], base=2) ** 2
            queries += 1
            if p.shape[0] >= 3:
                rho += spearmanr(p[i], q[i]).statistic
                counted += 1
    (pair,) = result["pairs"]
    assert pair["js"][layer][head] == pytest.approx(js / queries, abs=1e-9)
    assert pair["spearman"][layer][head] == pytest.approx(rho / counted, abs=1e-9)


@pytest.mark.slow
def test_cli_writes_agreement_for_many_runs_and_refuses_other_segments(runs, tmp_path, capsys):
    code, out, err = cli(capsys, runs["rollout_local"], runs["none"], runs["alti"], "--out", tmp_path / "a")
    assert code == 0, err
    written = json.loads((tmp_path / "a" / "agreement.json").read_text())
    assert [r["label"] for r in written["runs"]] == ["tiny/rollout:local", "tiny/none", "tiny/alti"]
    assert len(written["pairs"]) == 3 and (tmp_path / "a" / "agreement.png").stat().st_size > 0
    assert not (tmp_path / "a" / "differences.json").exists()
    assert "Spearman per layer" in out

    code, out, err = cli(capsys, runs["none"], runs["alti"], runs["fewer"], "--out", tmp_path / "b")
    assert code != 0 and "not over the same segments" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b" / "agreement.json").exists()

    # two runs: the paired differences as before, and the agreement
    code, out, err = cli(capsys, runs["none"], runs["alti"], "--out", tmp_path / "c")
    assert code == 0, err
    assert (tmp_path / "c" / "differences.json").is_file() and (tmp_path / "c" / "agreement.json").is_file()


@pytest.mark.slow
def test_sweep_folder_gets_the_agreement_table(runs, tmp_path):
    for job, name in enumerate(["rollout_local", "alti"]):
        shutil.copytree(runs[name], tmp_path / str(job))
        (tmp_path / str(job) / ".hydra").mkdir(exist_ok=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(f"- {RUNS[name][0]}\n")
    summarize_sweep(tmp_path)
    result = json.loads((tmp_path / "agreement.json").read_text())
    assert [r["method"]["name"] for r in result["runs"]] == ["rollout", "alti"]
    assert torch.isfinite(torch.tensor(result["pairs"][0]["layers"]["js"])).all()

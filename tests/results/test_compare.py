"""compare: per-head differences of two real (tiny) runs, heatmaps, shape errors."""

import json
import subprocess
import sys

import pytest

from bertstory.results import RunMetrics
from bertstory.results.compare import compare, main
from bertstory.stats.patterns import PATTERNS
from tests.conftest import ROOT, run_once, shard_maps

NAMES = (
    [f"{block}/patterns/{p}" for block in ("attention", "attribution", "uniform") for p in PATTERNS]
    + ["attention/entropy", "attribution/entropy", "attribution/self", "attribution/self_top1"]
    + [f"discrepancy/{k}" for k in ("js", "tv", "top1", "spearman")]
)


def table(metrics: dict, name: str) -> list[list]:
    """An LxH table of metrics.json by its flat name, walked independently of bertstory.compare."""
    node = metrics
    for part in name.split("/"):
        node = node[part]
    return node


def compare_cli(a, b, out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertstory.compare", str(a), str(b), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def compare_main(capsys, *args) -> tuple[int, str, str]:
    """``bertstory.compare.main`` in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {name: run_once(tmp_path_factory, name) for name in ("exact", "rollout", "none")}


@pytest.mark.slow
def test_a_run_against_itself_is_all_zero(runs, tmp_path):
    r = compare_cli(runs["exact"], runs["exact"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "differences.json").read_text())
    m = json.loads((runs["exact"] / "metrics.json").read_text())
    assert set(result["differences"]) == set(NAMES)
    for name, diff in result["differences"].items():
        expected = [[None if v is None else 0.0 for v in row] for row in table(m, name)]
        assert diff == expected, name
        assert result["summary"][name]["max_abs"] in (0.0, None)
    # one heatmap per table, and the agreement figure of the two runs (same segments)
    assert {p.name for p in tmp_path.glob("*.png")} == {n.replace("/", "_") + ".png" for n in NAMES} | {"agreement.png"}
    agreement = json.loads((tmp_path / "agreement.json").read_text())
    assert agreement["segments"] == len(shard_maps(runs["exact"]))


@pytest.mark.slow
def test_differences_are_b_minus_a_per_head(runs, tmp_path, capsys):
    code, stdout, stderr = compare_main(capsys, runs["exact"], runs["rollout"], "--out", tmp_path)
    assert code == 0, stderr
    result = json.loads((tmp_path / "differences.json").read_text())
    a = json.loads((runs["exact"] / "metrics.json").read_text())
    b = json.loads((runs["rollout"] / "metrics.json").read_text())
    assert result["direction"] == "B - A" and result["a"]["method"]["name"] == "exact"
    assert result["b"]["method"]["name"] == "rollout" and result["only_in_a"] == result["only_in_b"] == []
    nonzero = 0
    for name in NAMES:
        ta, tb, diff = table(a, name), table(b, name), result["differences"][name]
        assert len(diff) == 2 and all(len(row) == 4 for row in diff)
        for layer in range(2):
            for head in range(4):
                x, y, d = ta[layer][head], tb[layer][head], diff[layer][head]
                if x is None or y is None:
                    assert d is None
                else:
                    assert d == pytest.approx(y - x, abs=1e-15)
                    nonzero += d != 0
        flat = [abs(v) for row in diff for v in row if v is not None]
        assert result["summary"][name]["max_abs"] == pytest.approx(max(flat))
    assert nonzero > 100  # another seed and method: the tables really differ
    assert "26 tables compared" in stdout
    # the side-by-side table: A and B rows are the head means of each metrics.json, B - A comes from compare.json
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in stdout.splitlines()
             if line.startswith("| JS (bits) |")]
    rows = {tuple(c[:2]): c[2:] for c in cells}
    paired = json.loads((tmp_path / "compare.json").read_text())["tables"]["discrepancy/js"]["layer_means"]
    for layer in range(2):
        mean_a = sum(table(a, "discrepancy/js")[layer]) / 4
        mean_b = sum(table(b, "discrepancy/js")[layer]) / 4
        assert float(rows[("JS (bits)", "A")][layer]) == pytest.approx(mean_a, abs=5e-4)
        assert float(rows[("JS (bits)", "B")][layer]) == pytest.approx(mean_b, abs=5e-4)
        diff, se = rows[("JS (bits)", "B - A")][layer].rstrip("*").split(" ± ")
        assert float(diff) == pytest.approx(mean_b - mean_a, abs=5e-4)
        assert float(diff) == pytest.approx(paired["difference"][layer], abs=5e-5)
        assert float(se) == pytest.approx(paired["stderr"][layer], abs=5e-5)


def test_tables_missing_in_one_run_are_listed():
    a = {"model": {"layers": 1, "heads": 2}, "method": {"name": "x"}, "data": {},
         "attention": {"entropy": [[1.0, 2.0]]}, "discrepancy": {"js": [[0.1, None]]}}
    b = {"model": {"layers": 1, "heads": 2}, "method": {"name": "none"}, "data": {},
         "attention": {"entropy": [[0.5, 2.5]]}}
    result = compare(RunMetrics(a), RunMetrics(b))
    assert result["differences"] == {"attention/entropy": [[-0.5, 0.5]]}
    assert result["only_in_a"] == ["discrepancy/js"] and result["only_in_b"] == []
    assert result["summary"]["attention/entropy"]["max_abs_head"] == [0, 0]


@pytest.mark.slow
def test_runs_of_different_shapes_are_refused(runs, tmp_path, capsys):
    code, _, stderr = compare_main(capsys, runs["exact"], runs["none"], "--out", tmp_path / "out")
    err = stderr.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), stderr
    assert "different shapes" in err[0] and "2 layers x 4 heads" in err[0] and "1 x 4" in err[0]
    assert not (tmp_path / "out" / "differences.json").exists()


@pytest.mark.slow
def test_missing_run_is_one_line(runs, tmp_path, capsys):
    code, _, stderr = compare_main(capsys, runs["exact"], tmp_path / "nothing", "--out", tmp_path / "out")
    err = stderr.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "metrics.json" in err[0]

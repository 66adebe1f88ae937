"""Figures and report.html of real (tiny) runs: files, self-contained HTML, numbers, W&B media, rebuild CLI."""

import base64
import json
import math
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bertstory.results import RunMetrics, load, report
from bertstory.results.figures import choose_heads, make_figures, own_share_quantiles, own_share_samples
from bertstory.stats.patterns import PATTERNS
from tests.conftest import ROOT, analyze, run_once, shard_maps


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    return run_once(tmp_path_factory, "exact")


@pytest.fixture(scope="module")
def none_run(tmp_path_factory):
    return run_once(tmp_path_factory, "none")


class Page(HTMLParser):
    """Every tag with its attributes, the <img> tags, the tables' cells and the text."""

    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.tables, self.text = [], [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "img":
            self.imgs.append(attrs)
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell += data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def head_layer_mean(table) -> list[float]:
    return [sum(row) / len(row) for row in table]


FIGURES = {"layer_patterns", "heads_js", "heads_patterns", "own_share", "segment_0", "segment_1", "segment_2"}


@pytest.mark.slow
def test_run_leaves_png_figures(exact_run):
    figs = exact_run / "figures"
    assert {p.name for p in figs.iterdir()} == {f"{name}.png" for name in FIGURES}
    for name in FIGURES:
        assert (figs / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def copy_run(run: Path, to: Path) -> Path:
    """metrics.json, the shards and the config of ``run`` (no figures) in ``to``."""
    to.mkdir()
    shutil.copy(run / "metrics.json", to)
    shutil.copytree(run / "maps", to / "maps")
    shutil.copytree(run / ".hydra", to / ".hydra")
    return to


@pytest.mark.slow
def test_forked_workers_draw_the_same_figures_as_one_process(exact_run, tmp_path):
    one, two = copy_run(exact_run, tmp_path / "one"), copy_run(exact_run, tmp_path / "two")
    serial, _ = make_figures(load(one), workers=1)
    forked, _ = make_figures(load(two), workers=2)
    assert [f.name for f in forked] == [f.name for f in serial]  # the report's order
    assert {f.name for f in serial} == FIGURES
    for a, b in zip(serial, forked, strict=True):
        assert a.png.read_bytes() == b.png.read_bytes(), a.name


@pytest.mark.slow
def test_report_formats_add_pdf_and_svg(exact_run, tmp_path):
    run = copy_run(exact_run, tmp_path / "run")
    report.main([str(run), "--formats", "pdf", "svg"])
    figs = run / "figures"
    for name in FIGURES:
        assert (figs / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (figs / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in (figs / f"{name}.svg").read_bytes()[:2000]


@pytest.mark.slow
def test_report_is_self_contained(exact_run):
    text = (exact_run / "report.html").read_text(encoding="utf-8")
    page = parse(exact_run / "report.html")
    assert "http://" not in text and "https://" not in text and "url(" not in text
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert not attrs.get(key, "").startswith(("http", "//")), attrs
    figs = exact_run / "figures"
    assert len(page.imgs) == len(list(figs.glob("*.png"))) == 7
    for img in page.imgs:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix):]) == (figs / f"{img['alt']}.png").read_bytes()


@pytest.mark.slow
def test_report_tables_hold_the_runs_numbers(exact_run):
    m = json.loads((exact_run / "metrics.json").read_text())
    page = parse(exact_run / "report.html")
    overview = {row[0]: row[1] for row in page.tables[0][1:]}
    assert overview["model.name"] == "tiny" and overview["model.layers"] == "2" and overview["model.heads"] == "4"
    assert overview["method.name"] == "exact" and overview["data.segments"] == "5"
    assert overview["data.tokens"] == str(m["data"]["tokens"])
    per_layer = page.tables[1]
    header = per_layer[0]
    js = head_layer_mean(m["discrepancy"]["js"])
    own = head_layer_mean(m["attribution"]["self"])
    se = m["stderr"]["layer_means"]  # each head mean ± its segment-clustered standard error
    for layer in range(2):
        row = dict(zip(header, per_layer[1 + layer], strict=True))
        assert row["js"] == f"{js[layer]:.3f} ± {se['discrepancy']['js'][layer]:.3f}"
        assert row["self"] == f"{own[layer]:.3f} ± {se['attribution']['self'][layer]:.3f}"
    patterns = page.tables[2]
    for layer in range(2):
        row = dict(zip(patterns[0], patterns[1 + layer], strict=True))
        for p, b in ((p, b) for p in PATTERNS for b in ("attention", "attribution")):
            mean = head_layer_mean(m[b]["patterns"][p])[layer]
            assert row[f"{p} {b[:3] if b == 'attention' else 'attr'}"] == (
                f"{mean:.3f} ± {se[b]['patterns'][p][layer]:.3f}")
        assert row[f"{PATTERNS[0]} uniform"] == f"{head_layer_mean(m['uniform']['patterns'][PATTERNS[0]])[layer]:.3f}"
    lift = page.tables[3]
    assert lift[0][-2:] == ["persists", "persists (95% CI)"]
    for p, row in zip(PATTERNS, lift[1:], strict=True):
        assert row[-1] == ("yes" if m["persistence"]["persists_ci"][p] else "no")
    text = "".join(page.text)
    assert "report:" in text and "heads:" in text and "name_or_path: minilm" in text  # the config


@pytest.mark.slow
def test_heads_shown_are_the_extreme_js_heads_and_the_chosen_one(exact_run):
    m = json.loads((exact_run / "metrics.json").read_text())
    js = m["discrepancy"]["js"]
    flat = [(v, layer, head) for layer, row in enumerate(js) for head, v in enumerate(row)]
    hi, lo = max(flat), min(flat)
    shown = choose_heads(RunMetrics(m), [[1, 2]])
    assert shown[0] == ("highest JS", (hi[1], hi[2])) and shown[1] == ("lowest JS", (lo[1], lo[2]))
    assert shown[-1][1] == (1, 2)
    assert len({h for _, h in shown}) == len(shown)
    assert choose_heads(RunMetrics(m), [[hi[1], hi[2]]]) == shown[:2]  # duplicates dropped


@pytest.mark.slow
def test_own_share_quantiles_and_mean_match_the_maps_and_metrics(exact_run):
    m = json.loads((exact_run / "metrics.json").read_text())
    maps = shard_maps(exact_run)
    assert sorted(maps) == list(range(5))  # every segment was saved: the saved maps are the whole corpus
    diag = [np.concatenate([maps[k]["attribution"][layer].double().diagonal(dim1=-2, dim2=-1).numpy().ravel()
                            for k in maps]) for layer in range(2)]
    samples, count, tokens = own_share_samples(load(exact_run).segments())
    assert count == 5 and tokens == m["data"]["tokens"]
    q = own_share_quantiles(samples).numpy()
    for layer in range(2):
        np.testing.assert_allclose(q[layer], np.percentile(diag[layer], [25, 50, 75]), rtol=0, atol=1e-12)
        # with all maps saved, the mean own share is metrics.json's head mean of attribution.self
        assert math.isclose(diag[layer].mean(), head_layer_mean(m["attribution"]["self"])[layer], abs_tol=1e-5)


@pytest.mark.slow
def test_attention_only_run_makes_only_attention_figures(none_run):
    figs = {p.name for p in (none_run / "figures").iterdir()}
    stems = {name.rsplit(".", 1)[0] for name in figs}
    # report.segments=3 but writer.max_segments=2: two segment figures
    assert stems == {"layer_patterns", "heads_patterns", "segment_0", "segment_1"}
    page = parse(none_run / "report.html")
    assert len(page.imgs) == 4
    header = page.tables[1][0]
    assert header == ["layer", "att_entropy"]


@pytest.mark.slow
def test_wandb_gets_images_and_line_charts(exact_run):
    m = json.loads((exact_run / "metrics.json").read_text())
    (run,) = list((exact_run / "wandb").glob("offline-run-*"))
    media = run / "files" / "media"
    images = {p.name.split("_")[0] for p in (media / "images" / "figures").glob("*.png")}
    assert {"layer", "heads", "own", "segment"} <= images
    assert len(list((media / "images" / "figures").glob("*.png"))) == 7
    for p in PATTERNS:
        (table,) = list((media / "table" / "layer_curves").glob(f"{p}_table_*.table.json"))
        data = json.loads(table.read_text())
        cols = data["columns"]
        rows = [dict(zip(cols, row, strict=True)) for row in data["data"]]
        att = {r["step"]: r["lineVal"] for r in rows if r["lineKey"] == "attention"}
        attr = {r["step"]: r["lineVal"] for r in rows if r["lineKey"] == "attribution"}
        for layer in range(2):
            assert math.isclose(att[layer], head_layer_mean(m["attention"]["patterns"][p])[layer], rel_tol=1e-12)
            assert math.isclose(attr[layer], head_layer_mean(m["attribution"]["patterns"][p])[layer], rel_tol=1e-12)


@pytest.mark.slow
def test_report_cli_rebuilds_from_a_finished_run(exact_run, tmp_path):
    copy = copy_run(exact_run, tmp_path / "run")
    r = subprocess.run([sys.executable, "-m", "bertstory.report", str(copy), "--segments", "1", "--heads", "0,3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    stems = {p.stem for p in (copy / "figures").glob("*.png")}
    assert stems == {"layer_patterns", "heads_js", "heads_patterns", "own_share", "segment_0"}
    assert len(parse(copy / "report.html").imgs) == 5


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", [(["EMPTY"], "metrics.json"), (["RUN", "--heads", "7,0"], "report.heads"),
                                         (["RUN", "--formats", "jpg"], "report.formats")])
def test_report_cli_errors_are_one_line(exact_run, tmp_path, capsys, args, needle):
    run = tmp_path / "run"
    shutil.copytree(exact_run, run, ignore=shutil.ignore_patterns("wandb"))
    args = [a.replace("EMPTY", str(tmp_path / "empty")).replace("RUN", str(run)) for a in args]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_:
        report.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


@pytest.mark.slow
def test_bad_report_heads_fail_before_the_analysis(tmp_path):
    r = analyze("model=tiny", "logger=none", "data.limit=4", "report.heads=[[2,0]]", f"hydra.run.dir={tmp_path}")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "report.heads" in err[0] and "[2,0]" in err[0], r.stderr[-2000:]
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(exact_run, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    r = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000",
                        f"--screenshot={shot}", (exact_run / "report.html").as_uri()],
                       capture_output=True, text=True, timeout=180)
    assert shot.is_file(), r.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    not_white = (pixels < 0.95).any(axis=-1)
    assert pixels.std() > 0.05 and 0.02 < not_white.mean() < 0.9
    # the figures are drawn: some pixels are neither grey nor white (the colour maps)
    rgb_spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    assert (rgb_spread > 0.2).mean() > 0.01


@pytest.mark.slow
def test_report_links_the_viewer(exact_run):
    page = parse(exact_run / "report.html")
    assert ("a", {"href": "viewer.html"}) in page.tags
    assert (exact_run / "viewer.html").is_file()


def test_report_formats_always_start_with_png_and_refuse_unknown_ones():
    from bertstory.errors import BertstoryError
    from bertstory.results.report_options import check_formats

    assert check_formats(["pdf", "png", "pdf"]) == ["png", "pdf"]
    assert check_formats("svg") == ["png", "svg"]
    with pytest.raises(BertstoryError, match=r"report.formats has \['jpg'\]"):
        check_formats(["jpg"])

"""viewer.html's data, read back in Python: the maps equal the shards, per-segment statistics (the shards'
records, or recomputed for shards without them) equal explicit loops over the saved maps, the page loads
nothing, the CLI's errors are one line."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import save_file

from bertstory.results.shards import SEGMENT, has_segment_stats
from bertstory.viewer import build, build_after_run
from bertstory.viewer.__main__ import main
from bertstory.viewer.encode import MAX_ERROR, decode_map
from tests.conftest import shard_maps

pytestmark = pytest.mark.slow  # each module builds tiny runs in-process (about 20 s each on 2 cores)


def page_data(path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="bertstory-data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def js_bits(p, q) -> float:
    """Jensen-Shannon divergence in bits by an explicit loop over the keys."""
    total = 0.0
    for pj, qj in zip(p, q, strict=True):
        mj = 0.5 * (pj + qj)
        total += 0.5 * (pj * math.log2(pj / mj) if pj > 0 else 0.0) + 0.5 * (qj * math.log2(qj / mj) if qj > 0 else 0.0)
    return total


def argmax_first(row) -> int:
    best = 0
    for j, v in enumerate(row):
        if v > row[best]:
            best = j
    return best


@pytest.fixture(scope="module")
def exact_run(viewer_runs):
    return viewer_runs("exact")


def test_finish_writes_the_viewer_with_every_saved_segment(exact_run):
    data = page_data(exact_run / "viewer.html")
    (run,) = data["runs"]
    shards = shard_maps(exact_run)
    assert [s["index"] for s in run["segments"]] == sorted(shards)
    for seg in run["segments"]:
        ref = shards[seg["index"]]
        assert seg["ids"] == ref["input_ids"].tolist()
        n = len(seg["ids"])
        assert len(seg["tokens"]) == n and seg["tokens"][0] == "[CLS]" and seg["tokens"][-1] == "[SEP]"
        for name in ("attention", "attribution"):
            values = decode_map(seg[name], run["dtype"], tuple(ref[name].shape))
            assert values.shape == (run["layers"], run["heads"], n, n)
            # float32 shards stored as float16: within half a float16 step of values in [0, 1]
            assert np.abs(values - ref[name].numpy()).max() <= MAX_ERROR["float16"]


def test_segment_statistics_equal_explicit_loops(exact_run):
    (run,) = page_data(exact_run / "viewer.html")["runs"]
    shards = shard_maps(exact_run)
    for seg in run["segments"]:
        A = shards[seg["index"]]["attention"].double().numpy()
        a = shards[seg["index"]]["attribution"].double().numpy()
        n = A.shape[-1]
        for layer in range(run["layers"]):
            for head in range(run["heads"]):
                rows = range(n)
                js = sum(js_bits(A[layer, head, i], a[layer, head, i]) for i in rows) / n
                tv = sum(0.5 * sum(abs(A[layer, head, i, j] - a[layer, head, i, j]) for j in rows) for i in rows) / n
                top1 = sum(argmax_first(A[layer, head, i]) == argmax_first(a[layer, head, i]) for i in rows) / n
                prev = sum(a[layer, head, i, i - 1] for i in range(1, n)) / n
                stats = seg["stats"]
                assert stats["discrepancy/js"][layer][head] == pytest.approx(js, rel=1e-5, abs=1e-12)
                assert stats["discrepancy/tv"][layer][head] == pytest.approx(tv, rel=1e-5, abs=1e-12)
                assert stats["discrepancy/top1"][layer][head] == pytest.approx(top1, rel=1e-5)
                assert stats["attribution/patterns/prev"][layer][head] == pytest.approx(prev, rel=1e-5)
                cls_mass = sum(A[layer, head, i, 0] for i in rows) / n  # [CLS] is token 0 only
                assert stats["attention/patterns/cls"][layer][head] == pytest.approx(cls_mass, rel=1e-5)


def test_a_run_without_segment_records_gets_its_statistics_recomputed_from_the_maps(exact_run, tmp_path):
    """Shards made before they kept per-segment sums: the viewer recomputes each segment's statistics from its
    maps (float32 here), and they equal the recorded ones the page shows for a current run."""
    old = tmp_path / "old"
    shutil.copytree(exact_run, old)
    for path in (old / "maps").glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            kept = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(SEGMENT)}
            meta = f.metadata()
        save_file(kept, str(path), metadata=meta)
    assert not has_segment_stats(old)
    (recorded,) = page_data(exact_run / "viewer.html")["runs"]
    (recomputed,) = page_data(build(old, out=tmp_path / "v.html").path)["runs"]
    assert [s["index"] for s in recomputed["segments"]] == [s["index"] for s in recorded["segments"]]
    for a, b in zip(recorded["segments"], recomputed["segments"], strict=True):
        assert set(a["stats"]) == set(b["stats"])
        for name in a["stats"]:
            x, y = np.array(a["stats"][name], dtype=float), np.array(b["stats"][name], dtype=float)
            np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-9, err_msg=name)


def test_corpus_tables_are_metrics_json(exact_run):
    (run,) = page_data(exact_run / "viewer.html")["runs"]
    m = json.loads((exact_run / "metrics.json").read_text())
    for layer in range(run["layers"]):
        for head in range(run["heads"]):
            assert run["corpus"]["discrepancy/js"][layer][head] == pytest.approx(m["discrepancy"]["js"][layer][head],
                                                                                rel=1e-5)
            assert run["corpus"]["attribution/patterns/sep"][layer][head] == pytest.approx(
                m["attribution"]["patterns"]["sep"][layer][head], rel=1e-5)


def test_the_page_loads_nothing(exact_run):
    text = (exact_run / "viewer.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    code = re.sub(r'<script type="application/json".*?</script>', "", text, flags=re.S)
    assert not re.search(r"https?://|\bsrc=|<link\b(?![^>]*data:)|import\s*\(|fetch\(|XMLHttpRequest", code)


def test_attention_only_run_stores_the_float16_shards_exactly(viewer_runs):
    run_dir = viewer_runs("none")
    (run,) = page_data(run_dir / "viewer.html")["runs"]
    assert run["has_attribution"] is False and "discrepancy/js" not in run["corpus"]
    shards = shard_maps(run_dir)
    for seg in run["segments"]:
        ref = shards[seg["index"]]["attention"]
        assert seg["attribution"] is None and "attribution" not in shards[seg["index"]]
        assert np.array_equal(decode_map(seg["attention"], "float16", tuple(ref.shape)), ref.float().numpy())


def test_uint8_storage_is_within_its_bound_and_smaller(exact_run, tmp_path):
    small = build(exact_run, out=tmp_path / "v8.html", dtype="uint8")
    (run,) = page_data(small.path)["runs"]
    shards = shard_maps(exact_run)
    for seg in run["segments"]:
        ref = shards[seg["index"]]["attribution"]
        err = np.abs(decode_map(seg["attribution"], "uint8", tuple(ref.shape)) - ref.numpy()).max()
        assert err <= MAX_ERROR["uint8"] + 1e-7
    assert small.bytes < (exact_run / "viewer.html").stat().st_size


def test_cli_rebuilds_and_prints_the_size(exact_run, tmp_path, capsys):
    main([str(exact_run), "--out", str(tmp_path / "v.html"), "--segments", "2"])
    out = capsys.readouterr().out
    assert re.fullmatch(rf"viewer: {re.escape(str(tmp_path / 'v.html'))} \(\d+ kB\)\n", out), out
    assert [s["index"] for s in page_data(tmp_path / "v.html")["runs"][0]["segments"]] == [0, 1]


def test_a_run_without_saved_maps_gets_a_note_not_a_page(exact_run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(exact_run, bare, ignore=shutil.ignore_patterns("*.safetensors", "viewer.html"))
    assert build_after_run(bare, OmegaConf.load(bare / ".hydra" / "config.yaml")).endswith("no saved maps "
                                                                                        "(writer.max_segments=0)")
    assert not (bare / "viewer.html").exists()


@pytest.mark.parametrize("case,needle", [("empty", "metrics.json"), ("other-segments", "different segments"),
                                         ("no-maps", "saved no maps")])
def test_cli_errors_are_one_line(exact_run, tmp_path, capsys, case, needle):
    if case == "empty":
        (tmp_path / "empty").mkdir()
        args = [str(tmp_path / "empty")]
    elif case == "no-maps":
        shutil.copytree(exact_run, tmp_path / "bare", ignore=shutil.ignore_patterns("*.safetensors"))
        args = [str(tmp_path / "bare")]
    else:
        other = tmp_path / "other"
        shutil.copytree(exact_run, other)
        sorted((other / "maps").glob("*.safetensors"))[-1].unlink()  # one batch's segments fewer
        args = [str(exact_run), "--compare", str(other), "--out", str(tmp_path / "c.html")]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err

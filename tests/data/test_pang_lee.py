"""The pang_lee reader: gensim's labelled movie-review sentences (cp1252)."""

from __future__ import annotations

from bertstory.data import SegmentDataModule
from bertstory.data.pang_lee import read_pang_lee


def test_pang_lee_cp1252():
    rows = read_pang_lee()
    assert len(rows) == 200
    assert sorted({y for _, y in rows}) == [0, 1]
    assert sum(y for _, y in rows) == 100
    assert rows[0] == ("simplistic , silly and tedious .", 0)
    joined = " ".join(t for t, _ in rows)
    assert "\u2014" in joined  # byte 0x97 in cp1252 is an em dash
    assert "clich\u00e9s" in joined and "\ufffd" not in joined
    assert not any(t.startswith("__label__") for t, _ in rows)


def test_pang_lee_module_keeps_labels(tokenizer):
    dm = SegmentDataModule(tokenizer, name="pang_lee", reader="pang_lee", limit=30)
    dm.setup()
    rows = read_pang_lee()[:30]
    assert dm.segments == [t for t, _ in rows]
    assert dm.labels == [y for _, y in rows]
    assert dm.stats == {
        "name": "pang_lee",
        "segments": 30,
        "tokens": sum(len(ids) for ids in dm.input_ids),
        "truncated": 0,
        "skipped": 0,
    }

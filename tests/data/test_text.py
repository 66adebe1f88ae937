"""The text reader: one segment per line of a UTF-8 file."""

from __future__ import annotations

import pytest

from bertstory.data import SegmentDataModule, read_corpus
from bertstory.data.text import read_text
from bertstory.errors import BertstoryError
from tests.data.conftest import write


def test_text_reader_skips_blank_lines(tmp_path, tokenizer):
    p = write(tmp_path, "c.txt", "first line here\n\n   \nsecond line\r\n\t\nthird one\n")
    texts, skipped = read_text(p)
    assert texts == ["first line here", "second line", "third one"]
    assert skipped == 3
    dm = SegmentDataModule(tokenizer, name="t", reader="text", path=str(p), batch_size=2)
    dm.setup()
    assert dm.stats["segments"] == 3 and dm.stats["skipped"] == 3
    # dataset index k = position after skipping: every batch row holds segment k's tokens
    seen = {}
    for batch in dm.predict_dataloader():
        for row, k in enumerate(batch["index"].tolist()):
            n = int(batch["attention_mask"][row].sum())
            seen[k] = tokenizer.decode(batch["input_ids"][row, :n], skip_special_tokens=True)
    assert seen == {0: "first line here", 1: "second line", 2: "third one"}


def test_text_reader_limit(tmp_path):
    p = write(tmp_path, "c.txt", "a b\n\nc d\n\ne f\n\n\ng h\n")
    assert read_text(p, limit=2) == (["a b", "c d"], 1)
    corpus = read_corpus("text", path=str(p), limit=1, pairs=True)
    assert corpus.segments == [("a b", "c d")] and corpus.skipped == 1


def test_text_pairs_odd_leftover_skipped(tmp_path):
    p = write(tmp_path, "c.txt", "one\ntwo\n\nthree\nfour\nfive\n")
    corpus = read_corpus("text", path=str(p), pairs=True)
    assert corpus.segments == [("one", "two"), ("three", "four")]
    assert corpus.skipped == 2  # one blank line and the odd leftover "five"


def test_text_bad_utf8_names_line(tmp_path):
    p = write(tmp_path, "bad.txt", b"ok line\nstill fine\ncaf\xe9 au lait\n")
    with pytest.raises(BertstoryError, match=r"bad\.txt.*line 3"):
        read_text(p)


def test_text_bom_is_dropped(tmp_path):
    p = write(tmp_path, "bom.txt", b"\xef\xbb\xbfhello there\n")
    assert read_text(p) == (["hello there"], 0)


def test_text_missing_file_and_directory(tmp_path):
    with pytest.raises(BertstoryError, match=r"nope\.txt.*not found"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(BertstoryError, match="directory"):
        read_text(tmp_path)


def test_text_empty_file(tmp_path):
    for name, content in [("empty.txt", ""), ("blank.txt", "\n  \n\t\n")]:
        p = write(tmp_path, name, content)
        with pytest.raises(BertstoryError, match=rf"corpus .*{name} is empty"):
            read_text(p)


def test_text_needs_path(tokenizer):
    dm = SegmentDataModule(tokenizer, name="t", reader="text")
    with pytest.raises(BertstoryError, match="data.path"):
        dm.setup()

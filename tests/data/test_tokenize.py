"""Tokenisation: truncation counted, pairs and token types, length limits."""

from __future__ import annotations

import pytest

from bertstory.data import SegmentCollator, SegmentDataModule, read_corpus
from bertstory.errors import BertstoryError
from tests.data.conftest import write


def test_truncation_counted_exactly(tokenizer, wiki250):
    texts, _ = wiki250
    max_length = 24
    dm = SegmentDataModule(tokenizer, name="wiki", reader="wiki", limit=250, max_length=max_length)
    dm.setup()
    full = [tokenizer(t)["input_ids"] for t in texts]  # independent, no truncation
    expected = sum(len(ids) > max_length for ids in full)
    assert 0 < expected < 250
    assert dm.stats["truncated"] == expected
    assert dm.stats["tokens"] == sum(min(len(ids), max_length) for ids in full)
    assert all(len(ids) <= max_length for ids in dm.input_ids)
    for ids, ref in zip(dm.input_ids, full, strict=True):
        if len(ref) <= max_length:
            assert ids == ref
        else:
            assert ids == ref[: max_length - 1] + [tokenizer.sep_token_id]


def test_exactly_max_length_is_not_truncated(tmp_path, tokenizer):
    text = "one two three four five six seven"
    n = len(tokenizer(text)["input_ids"])
    p = write(tmp_path, "c.txt", text + "\n")
    dm = SegmentDataModule(tokenizer, name="t", reader="text", path=str(p), max_length=n)
    dm.setup()
    assert dm.stats["truncated"] == 0 and dm.stats["tokens"] == n
    dm = SegmentDataModule(tokenizer, name="t", reader="text", path=str(p), max_length=n - 1)
    dm.setup()
    assert dm.stats["truncated"] == 1 and dm.stats["tokens"] == n - 1


def test_pairs_structure_and_token_types(tmp_path, tokenizer):
    lines = ["the cat sat on the mat", "it was happy there", "a b c d e f g h i j k l", "short one", "odd"]
    p = write(tmp_path, "c.txt", "\n".join(lines) + "\n")
    dm = SegmentDataModule(tokenizer, name="t", reader="text", path=str(p), pairs=True, max_length=12)
    dm.setup()
    assert dm.stats["segments"] == 2 and dm.stats["skipped"] == 1
    batch = SegmentCollator(tokenizer.pad_token_id)([dm.predict_dataloader().dataset[k] for k in (0, 1)])
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for row, (a, b) in enumerate(dm.segments):
        n = int(batch["attention_mask"][row].sum())
        ids = batch["input_ids"][row, :n].tolist()
        tt = batch["token_type_ids"][row, :n].tolist()
        seps = [i for i, t in enumerate(ids) if t == sep]
        assert ids[0] == cls and len(seps) == 2 and seps[1] == n - 1
        assert tt == [0] * (seps[0] + 1) + [1] * (n - seps[0] - 1)
        a_ids, b_ids = ids[1 : seps[0]], ids[seps[0] + 1 : n - 1]
        ref_a = tokenizer(a, add_special_tokens=False)["input_ids"]
        ref_b = tokenizer(b, add_special_tokens=False)["input_ids"]
        assert a_ids == ref_a[: len(a_ids)] and b_ids == ref_b[: len(b_ids)]
        assert a_ids and b_ids
    # both pairs are longer than 12 tokens untruncated (6+4+3 and 12+2+3) and were cut longest-first
    full = [tokenizer(a, b)["input_ids"] for a, b in dm.segments]
    assert [len(x) for x in full] == [13, 17]
    assert dm.stats["truncated"] == 2 and all(len(ids) == 12 for ids in dm.input_ids)


def test_max_length_validation(tokenizer):
    with pytest.raises(BertstoryError, match="512"):
        SegmentDataModule(tokenizer, name="wiki", reader="wiki", max_length=513)
    with pytest.raises(BertstoryError, match="at least 4"):
        SegmentDataModule(tokenizer, name="wiki", reader="wiki", max_length=3)
    SegmentDataModule(tokenizer, name="wiki", reader="wiki", max_length=512)


def test_bad_options(tokenizer):
    with pytest.raises(BertstoryError, match="reader"):
        SegmentDataModule(tokenizer, name="x", reader="nope")
    with pytest.raises(BertstoryError, match="batch_size"):
        SegmentDataModule(tokenizer, name="wiki", reader="wiki", batch_size=0)
    with pytest.raises(BertstoryError, match="limit"):
        read_corpus("wiki", limit=0)

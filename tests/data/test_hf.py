"""The hf reader: a local save_to_disk dataset, its errors; pairing."""

from __future__ import annotations

import pytest

from bertstory.data import SegmentDataModule, pair_up
from bertstory.data.hf import read_hf
from bertstory.errors import BertstoryError


def test_hf_reader_local_dataset(hf_dir, tokenizer):
    path, dd_path = hf_dir
    texts, skipped = read_hf(str(path), column="sentence")
    assert texts == ["A first example sentence.", "The third row.", "Fifth row here."]
    assert skipped == 2
    assert read_hf(str(path), column="sentence", limit=2) == (texts[:2], 1)
    pairs, skipped = read_hf(str(path), column="sentence", column_b="other")
    assert pairs == [("A first example sentence.", "B one."), ("The third row.", "B three.")]
    assert skipped == 3
    assert read_hf(str(dd_path), split="train", column="sentence") == (
        ["A first example sentence.", "The third row."],
        0,
    )
    dm = SegmentDataModule(
        tokenizer, name="hf", reader="hf", dataset=str(dd_path), column="sentence", column_b="other"
    )
    dm.setup()
    assert dm.pairs and dm.stats["segments"] == 2 and dm.stats["skipped"] == 3
    batch = next(iter(dm.predict_dataloader()))
    assert batch["token_type_ids"].max() == 1


def test_hf_reader_errors(hf_dir, tmp_path):
    path, dd_path = hf_dir
    with pytest.raises(BertstoryError, match="no column 'text'"):
        read_hf(str(path))
    with pytest.raises(BertstoryError, match="no split 'test'"):
        read_hf(str(dd_path), split="test", column="sentence")
    with pytest.raises(BertstoryError, match="cannot load dataset"):
        read_hf(str(tmp_path / "hf_dir_that_is_not_a_dataset"), column="sentence")


def test_pair_up():
    assert pair_up(["a", "b", "c"]) == ([("a", "b")], 1)
    assert pair_up([]) == ([], 0)

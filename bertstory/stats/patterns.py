"""Pattern key sets (DESIGN.md, "Patterns").

For every query ``i`` of a segment each pattern ``p`` names a set of keys ``p(i)``:

| pattern | keys                                                                 |
|---------|----------------------------------------------------------------------|
| cls     | tokens equal to the tokenizer's CLS token                            |
| sep     | tokens equal to the tokenizer's SEP token                            |
| punct   | tokens whose string, ``##`` removed, is non-empty Unicode P* only    |
| self    | ``{i}``                                                              |
| prev    | ``{i-1}`` if ``i >= 1``                                              |
| next    | ``{i+1}`` if ``i+1 < n``                                             |

Batches are right-padded; ``n`` is the segment's non-padding length ``n_b``.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PATTERNS: tuple[str, ...] = ("cls", "sep", "punct", "self", "prev", "next")

_SUBWORD_PREFIX = "##"


def is_punct(token: str) -> bool:
    """True iff ``token`` with a leading ``##`` removed is non-empty and all Unicode category P*."""
    text = token[len(_SUBWORD_PREFIX) :] if token.startswith(_SUBWORD_PREFIX) else token
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


def punct_vocab_mask(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """``is_punct`` of every token id: bool ``(V,)`` with ``V = len(tokenizer)``; special tokens are False."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    flags = [tok is not None and idx not in special and is_punct(tok) for idx, tok in enumerate(tokens)]
    return torch.tensor(flags, dtype=torch.bool)


def _key_set(pair: torch.Tensor, is_key: torch.Tensor) -> torch.Tensor:
    """Query-independent key set: ``[b,i,j] = pair[b,i,j] and is_key[b,j]``; (B,n,n) from (B,n,n), (B,n)."""
    return pair & is_key[:, None, :]


def _offset_set(pair: torch.Tensor, offset: int) -> torch.Tensor:
    """Positional key set ``{i + offset}``: ``[b,i,j] = pair[b,i,j] and j == i + offset``; (B,n,n)."""
    n = pair.shape[-1]
    band = torch.ones(n, n, dtype=torch.bool, device=pair.device).triu(offset).tril(offset)
    return pair & band


def pattern_masks(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cls_id: int,
    sep_id: int,
    punct_vocab: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Key sets of every pattern: ``masks[p][b,i,j]`` True iff ``j in p(i)``; bool (B,n,n) each.

    ``input_ids`` (B,n) long, ``attention_mask`` (B,n) (1 = token, 0 = right padding),
    ``punct_vocab`` (V,) bool from :func:`punct_vocab_mask`. Entries with a padding query
    ``i`` or a padding key ``j`` are always False, so ``next`` stops at ``i+1 < n_b``.
    """
    valid = attention_mask.bool()
    pair = valid[:, :, None] & valid[:, None, :]
    return {
        "cls": _key_set(pair, input_ids == cls_id),
        "sep": _key_set(pair, input_ids == sep_id),
        "punct": _key_set(pair, punct_vocab.to(input_ids.device)[input_ids]),
        "self": _offset_set(pair, 0),
        "prev": _offset_set(pair, -1),
        "next": _offset_set(pair, 1),
    }

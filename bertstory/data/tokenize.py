"""Tokenising segments once, counting the ones that truncation shortened."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bertstory.data.segments import Segment
from bertstory.errors import BertstoryError

CHUNK = 2048  # segments per tokenizer call


@dataclass
class Tokenised:
    """Token ids per segment, token types per segment (pairs only, as bytes) and the truncation count."""

    input_ids: list[list[int]]
    token_type_ids: list[bytes] | None
    truncated: int


def model_limit(tokenizer) -> int | None:
    """The tokenizer's ``model_max_length`` when it is a real limit (not transformers' 'infinite' placeholder)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int | float) and not isinstance(limit, bool) and 0 < limit < 1e6:
        return int(limit)
    return None


def tokenize(tokenizer, segments: Sequence[Segment], max_length: int, pairs: bool, name: str) -> Tokenised:
    """Token ids of ``segments`` with [CLS]/[SEP] added, truncated to ``max_length`` (pairs: longest first)."""
    input_ids: list[list[int]] = []
    token_type_ids: list[bytes] = []
    truncated = 0
    for start in range(0, len(segments), CHUNK):
        part = segments[start : start + CHUNK]
        if pairs:
            args = ([a for a, _ in part], [b for _, b in part])
            trunc: bool | str = "longest_first"
        else:
            args = (list(part),)
            trunc = True
        try:
            enc = tokenizer(*args, truncation=trunc, max_length=max_length, add_special_tokens=True)
        except Exception as e:  # tokenizers raise plain exceptions for impossible truncations
            raise BertstoryError(f"cannot tokenise {name} with max_length={max_length} ({e}): raise data.max_length"
                                 ) from e
        ids = [list(x) for x in enc["input_ids"]]
        truncated += count_truncated(tokenizer, enc, args, max_length, len(ids))
        input_ids.extend(ids)
        if pairs:
            tts = enc.get("token_type_ids")
            if tts is None:
                raise BertstoryError(f"the tokenizer {type(tokenizer).__name__} has no token type ids: data.pairs "
                                     "needs a BERT-style tokenizer")
            token_type_ids.extend(bytes(t) for t in tts)
    return Tokenised(input_ids, token_type_ids if pairs else None, truncated)


def count_truncated(tokenizer, enc, args: tuple, max_length: int, count: int) -> int:
    """How many of the ``count`` encoded segments truncation shortened."""
    encodings = getattr(enc, "encodings", None) if getattr(tokenizer, "is_fast", False) else None
    if encodings is not None and len(encodings) == count:
        return sum(1 for e in encodings if e.overflowing)  # a fast tokenizer keeps what was cut off
    full = tokenizer(*args, truncation=False, add_special_tokens=True)["input_ids"]
    return sum(1 for x in full if len(x) > max_length)

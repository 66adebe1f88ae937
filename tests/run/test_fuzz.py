"""Fuzz (hypothesis): arbitrary Unicode corpora never crash the pipeline, and every statistic stays in range.

Each example writes a UTF-8 text corpus the way an editor would (lone surrogates replaced by U+FFFD)
with empty lines, whitespace-only lines, control characters, very long lines and any other code point,
then runs the data module and ``AnalysisModule.predict_step`` in-process on the random ``tiny`` model.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertstory.errors import BertstoryError
from tests.conftest import TINY

MAX_LENGTH = 24
EPS = 1e-6

WORD = st.text(st.characters(categories=("Lu", "Ll", "Nd", "Po", "Lo")), min_size=1, max_size=12)
LINE = st.one_of(
    st.just(""),
    st.text(st.sampled_from(" \t\u00a0\u3000\u2028\x0b\x0c\x1c\x85\ufeff\u200b"), max_size=6),  # blank-looking
    st.text(max_size=40),  # any code point (surrogates included, replaced below)
    st.text(st.characters(categories=("Cc", "Cf", "Cs", "Co", "Mn")), min_size=1, max_size=20),  # controls, marks
    st.builds(lambda w, k: " ".join([w] * k), WORD, st.integers(30, 400)),  # very long lines
    st.lists(WORD, min_size=1, max_size=12).map(" ".join),
)


def editor_text(line: str) -> str:
    """``line`` as an editor saves it in UTF-8: lone surrogates become U+FFFD."""
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in line)


def expected_counts(data: bytes) -> tuple[int, int]:
    """(segments, blank lines) of a corpus by the rule 'one segment per line, blank lines skipped'."""
    text = data.decode("utf-8")
    text = text.removeprefix("\ufeff")  # a byte order mark is not content
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line
    blank = sum(1 for line in lines if not line.strip())
    return len(lines) - blank, blank


@pytest.fixture(scope="module")
def tiny():
    from bertstory.models import load_encoder

    return load_encoder("minilm", name="tiny", random_init=True, seed=0, config_overrides=TINY)


def check_rows(maps: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    """Maps (B,L,H,n,n) are finite, in [0,1], zero on padding, rows summing to 1 over the segment."""
    assert torch.isfinite(maps).all(), what
    assert maps.min() >= 0 and maps.max() <= 1 + EPS, what
    valid = mask.bool()
    pair = (valid[:, :, None] & valid[:, None, :])[:, None, None]
    assert (maps[~pair.expand_as(maps)] == 0).all(), what
    sums = maps.sum(-1)  # (B,L,H,n)
    rows = valid[:, None, None, :].expand_as(sums)
    torch.testing.assert_close(sums[rows], torch.ones_like(sums[rows]), atol=1e-4, rtol=0)


def in_range(table, lo: float, hi: float, name: str, allow_none: bool = False) -> None:
    for row in table:
        for v in row:
            if v is None:
                assert allow_none, f"{name}: None"
                continue
            assert math.isfinite(v) and lo - EPS <= v <= hi + EPS, f"{name}: {v}"


def check_blocks(blocks: dict, max_n: int, with_attribution: bool) -> None:
    """Every statistic of metrics.json within its range."""
    entropy_max = math.log2(max_n)
    for block in ("attention", "uniform") + (("attribution",) if with_attribution else ()):
        for p, table in blocks[block]["patterns"].items():
            in_range(table, 0, 1, f"{block}.{p}")
    in_range(blocks["attention"]["entropy"], 0, entropy_max, "attention.entropy")
    if not with_attribution:
        assert "attribution" not in blocks and "discrepancy" not in blocks
        return
    in_range(blocks["attribution"]["entropy"], 0, entropy_max, "attribution.entropy")
    for key in ("self", "self_top1"):
        in_range(blocks["attribution"][key], 0, 1, key)
    for key in ("js", "tv", "top1"):
        in_range(blocks["discrepancy"][key], 0, 1, key)
    in_range(blocks["discrepancy"]["spearman"], -1, 1, "spearman", allow_none=True)
    for p, values in blocks["persistence"]["lift"].items():
        assert all(v is None or v >= 0 for v in values), p


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(lines=st.lists(LINE, min_size=1, max_size=7), method=st.sampled_from(["exact", "sketch", "rollout", "none"]))
def test_any_unicode_corpus_runs_and_stays_in_range(tiny, lines, method):
    from bertstory.data import SegmentDataModule
    from bertstory.results.shards import shard_tensors
    from bertstory.run.module import AnalysisModule
    from tests.conftest import make_method

    data = ("\n".join(editor_text(line) for line in lines) + "\n").encode("utf-8")
    segments, blank = expected_counts(data)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_bytes(data)
        dm = SegmentDataModule(tiny.tokenizer, name="text", reader="text", path=str(corpus), max_length=MAX_LENGTH,
                               batch_size=3)
        if segments == 0:
            with pytest.raises(BertstoryError, match="is empty"):
                dm.prepare_texts()
            return
        dm.prepare_texts()
    lengths = [len(ids) for ids in dm.input_ids]
    assert dm.stats["segments"] == segments and dm.stats["skipped"] == blank
    assert dm.stats["tokens"] == sum(lengths) and 0 <= dm.stats["truncated"] <= segments
    assert all(2 <= n <= MAX_LENGTH for n in lengths)

    options = {"probes": 4} if method == "sketch" else {}
    module = AnalysisModule(tiny, make_method(method, **options))
    seen = []
    for batch in dm.predict_dataloader():
        out = module.predict_step(batch)
        check_rows(out["attention"], out["attention_mask"], "attention")
        if method != "none":
            check_rows(out["attribution"], out["attention_mask"], "attribution")
        shard_tensors(out, torch.float16)
        seen += out["done"].tolist()
    assert sorted(seen) == list(range(segments))
    check_blocks(module.metrics.compute_block(), max(lengths), with_attribution=method != "none")

"""The analysis data module: one corpus, tokenised once, served to ``Trainer.predict`` in cost-balanced batches."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from bertstory.data.batches import SegmentCollator, SegmentDataset
from bertstory.data.corpus import CorpusSpec
from bertstory.data.sampler import CostBalancedBatchSampler
from bertstory.data.segments import Segment
from bertstory.data.tokenize import model_limit, tokenize
from bertstory.errors import BertstoryError

log = logging.getLogger(__name__)

MIN_LENGTH = 4  # [CLS] + two tokens + [SEP]


def check_loader_options(max_length: Any, batch_size: Any, num_workers: Any, tokenizer) -> None:
    """Refuse a ``max_length``, ``batch_size`` or ``num_workers`` that cannot work, in one line each."""
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise BertstoryError(f"data.max_length must be an integer, got {max_length!r}")
    if max_length < MIN_LENGTH:
        raise BertstoryError(f"data.max_length={max_length} is too small: use at least {MIN_LENGTH} tokens")
    limit = model_limit(tokenizer)
    if limit is not None and max_length > limit:
        raise BertstoryError(f"data.max_length={max_length} exceeds the model's limit of {limit} tokens: "
                             f"set data.max_length<={limit}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BertstoryError(f"data.batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise BertstoryError(f"data.num_workers must be an integer >= 0, got {num_workers!r}")


class SegmentDataModule(L.LightningDataModule):
    """One corpus, tokenised once, served to ``Trainer.predict`` through :class:`CostBalancedBatchSampler`.

    Built by Hydra from ``conf/data/*.yaml``: ``instantiate(cfg.data, tokenizer=tok)``; the corpus
    options (``reader``, ``path``, ``limit``, ``pairs``, ``dataset``, ...) form a :class:`CorpusSpec`.
    After :meth:`prepare_texts`: ``segments`` (texts or (A, B) pairs), ``labels`` (pang_lee only),
    ``input_ids`` (token id lists; dataset index k = position in the corpus after skipped items and
    ``limit``) and ``stats``, the ``data`` block of metrics.json.
    """

    def __init__(self, tokenizer, name: str, reader: str, max_length: int = 128, batch_size: int = 8,
                 num_workers: int = 0, **corpus_options: Any):
        super().__init__()
        check_loader_options(max_length, batch_size, num_workers, tokenizer)
        self.spec = CorpusSpec.from_options(reader, corpus_options)
        self.spec.check()
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.segments: list[Segment] | None = None
        self.labels: list[int] | None = None
        self.input_ids: list[list[int]] | None = None
        self.token_type_ids: list[bytes] | None = None
        self.done: frozenset[int] = frozenset()
        self.stats: dict[str, Any] = {"name": name, "segments": 0, "tokens": 0, "truncated": 0, "skipped": 0}

    @property
    def pairs(self) -> bool:
        return self.spec.paired

    # -- reading and tokenising ---------------------------------------------------------------

    def prepare_texts(self) -> None:
        """Read the corpus and tokenise it (once; later calls do nothing)."""
        if self.input_ids is not None:
            return
        corpus = self.spec.read()
        tokens = tokenize(self.tokenizer, corpus.segments, self.max_length, self.pairs, self.name)
        self.segments = corpus.segments
        self.labels = corpus.labels
        self.input_ids = tokens.input_ids
        self.token_type_ids = tokens.token_type_ids
        self.stats = {
            "name": self.name,
            "segments": len(tokens.input_ids),
            "tokens": sum(len(ids) for ids in tokens.input_ids),
            "truncated": tokens.truncated,
            "skipped": corpus.skipped,
        }
        s = self.stats
        log.info("data %s: %d segments, %d tokens, %d truncated to %d tokens, %d skipped",
                 s["name"], s["segments"], s["tokens"], s["truncated"], self.max_length, s["skipped"])

    def setup(self, stage: str | None = None) -> None:
        self.prepare_texts()

    # -- batches --------------------------------------------------------------------------------

    def skip_segments(self, done: set[int] | frozenset[int]) -> None:
        """Leave the segments with these dataset indices out of the batches (a resumed run's finished ones).

        ``stats`` still describe the whole corpus; the batches and ``rank_summary`` cover the rest.
        """
        self.prepare_texts()
        bad = [k for k in done if not 0 <= k < len(self.input_ids)]
        if bad:
            raise BertstoryError(f"segment {min(bad)} of the run to resume is not in the corpus "
                                 f"({len(self.input_ids)} segments): resume with the original data settings")
        self.done = frozenset(done)

    def remaining(self) -> list[int] | None:
        """Dataset indices still to analyse, or None for all of them."""
        if not self.done:
            return None
        return [k for k in range(len(self.input_ids)) if k not in self.done]

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    @property
    def lengths(self) -> list[int]:
        self.prepare_texts()
        return [len(ids) for ids in self.input_ids]

    def batch_sampler(self, rank: int | None = None, world_size: int | None = None) -> CostBalancedBatchSampler:
        """The batch sampler of ``rank`` in ``world_size`` (default: from the attached trainer)."""
        r, w = self._rank_world()
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
        return CostBalancedBatchSampler(self.lengths, self.batch_size, rank=rank, world_size=world_size,
                                        indices=self.remaining())

    def collator(self) -> SegmentCollator:
        return SegmentCollator(getattr(self.tokenizer, "pad_token_id", None))

    def predict_dataloader(self) -> DataLoader:
        self.prepare_texts()
        return DataLoader(SegmentDataset(self.input_ids, self.token_type_ids), batch_sampler=self.batch_sampler(),
                          collate_fn=self.collator(), num_workers=self.num_workers)

    def rank_summary(self, world_size: int | None = None) -> list[tuple[int, int]]:
        """``(segments, tokens)`` per rank, for logging how the work is spread."""
        sampler = self.batch_sampler(rank=0, world_size=world_size)
        out = []
        for r in range(sampler.world_size):
            idx = [i for b in sampler.rank_batches(r) for i in b]
            out.append((len(idx), sum(sampler.lengths[i] for i in idx)))
        return out

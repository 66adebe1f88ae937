"""Read a finished run from Python without recomputing anything.

>>> from bertstory import results
>>> run = results.load("outputs/2025-01-01/12-00-00")
>>> run.metrics.table("discrepancy/js")[5][3]       # JS of layer 5, head 3 (metrics.json, a RunMetrics)
>>> run.config.model.name                          # the composed Hydra config
>>> for seg in run.segments():                     # lazily, one shard open at a time
...     seg.index, seg.tokens, seg.attention.shape   # (L, H, n, n) torch tensors
>>> stats = run.segment_stats()                    # every segment's sums and counts per table
>>> stats.sums["discrepancy/js"].shape             # (K, L, H)

``tokens`` are strings from the run's tokenizer when it can be loaded offline, else the ids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bertstory.errors import BertstoryError
from bertstory.results.run_metrics import RunMetrics
from bertstory.results.shards import SegmentStats, iter_maps, read_segment_stats, saved_indices

log = logging.getLogger(__name__)


@dataclass
class Segment:
    """One saved segment: dataset index, tokens, ids and its (L, H, n, n) maps (attribution None without one)."""

    index: int
    tokens: list
    input_ids: torch.Tensor
    attention: torch.Tensor
    attribution: torch.Tensor | None
    metadata: dict = field(default_factory=dict)


class Results:
    """A finished run directory: ``.metrics``, ``.config``, ``.segments()``."""

    def __init__(self, run_dir: str | os.PathLike, metrics: RunMetrics | None = None):
        self.run_dir = Path(run_dir)
        self.metrics: RunMetrics = RunMetrics.read(self.run_dir) if metrics is None else metrics
        if self.metrics.kind == "finetune":
            raise BertstoryError(f"{self.run_dir} is a train.py run, not an analysis: analyse its model first with "
                                 f"python analyze.py model=hf model.name_or_path={self.run_dir}/model")
        self.config: DictConfig | None = read_config(self.run_dir)

    @property
    def layers(self) -> int:
        return self.metrics.layers

    @property
    def heads(self) -> int:
        return self.metrics.heads

    def indices(self) -> list[int]:
        """Sorted dataset indices of the segments whose maps were saved (reads only the shard headers)."""
        return saved_indices(self.run_dir)

    def segments(self, indices: Iterable[int] | None = None) -> Iterator[Segment]:
        """Lazily yield the saved segments in shard order (only ``indices`` when given)."""
        wanted = None if indices is None else set(indices)
        for k, fields, meta in iter_maps(self.run_dir):
            if wanted is not None and k not in wanted:
                continue
            ids = fields["input_ids"]
            yield Segment(index=k, tokens=self.tokens(ids), input_ids=ids, attention=fields["attention"],
                          attribution=fields.get("attribution"), metadata=meta)
            if wanted is not None:
                wanted.discard(k)
                if not wanted:
                    return

    def segment_stats(self, saved: Iterable[int] | None = None) -> SegmentStats:
        """Every segment's sums ``s_k`` and counts ``n_k`` per LxH table (all segments, not only those whose
        maps were kept), sorted by dataset index; with ``saved``, only those of the shards holding the maps
        of these saved segments."""
        return read_segment_stats(self.run_dir, saved)

    def tokens(self, input_ids: torch.Tensor) -> list:
        """Token strings of ``input_ids`` with the run's tokenizer, or the ids when it cannot be loaded."""
        ids = input_ids.tolist()
        if self.tokenizer is None:
            return ids
        return self.tokenizer.convert_ids_to_tokens(ids)

    @cached_property
    def tokenizer(self):
        """The run's tokenizer (offline), or None when the config names none that can be loaded."""
        return load_tokenizer(self.config)


def read_config(run_dir: Path) -> DictConfig | None:
    """The run's ``.hydra/config.yaml`` (unresolved: it may name Hydra's runtime), or None if absent."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    return cfg if isinstance(cfg, DictConfig) else None


def load_tokenizer(cfg: DictConfig | None):
    """The tokenizer named by ``cfg.model`` (``tokenizer`` or ``name_or_path``), loaded offline; None on failure."""
    if cfg is None or cfg.get("model") is None:
        return None
    name = cfg.model.get("tokenizer") or cfg.model.get("name_or_path")
    if not name:
        return None
    try:
        from transformers import AutoTokenizer

        from bertstory.models.loading import resolve_path

        path = resolve_path(str(name))
        online = bool(os.environ.get("BERTSTORY_ONLINE")) and not os.path.isdir(path)
        return AutoTokenizer.from_pretrained(path, local_files_only=not online)
    except Exception as e:  # any failure: fall back to ids (documented)
        log.info("tokenizer %s not loadable (%s): tokens are ids", name, e)
        return None


def load(run_dir: str | os.PathLike) -> Results:
    """Open a finished run directory (raises BertstoryError without metrics.json)."""
    return Results(run_dir)

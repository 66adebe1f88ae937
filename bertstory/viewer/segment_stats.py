"""Per-segment head statistics for the viewer, from the same torchmetrics Metrics as the whole run.

One segment's statistics are those of DESIGN.md "Statistics per (layer, head)" with the corpus
reduced to that segment. The run computed them already, from the full-precision maps, and its shards
keep each segment's sums and counts (:func:`recorded_tables` reads them: ``s_k / n_k``). A run made
before the shards kept them gets them recomputed from the saved maps (:class:`SegmentStatistics`:
:class:`~bertstory.stats.collection.AnalysisMetrics` updated on the one segment, so every formula is
still the one in :mod:`bertstory.stats`); those can differ in the last digits of a float16 map.
"""

from __future__ import annotations

import torch

from bertstory.results.run import Results, Segment
from bertstory.results.run_metrics import RunMetrics, Table
from bertstory.results.shards import has_segment_stats
from bertstory.stats.collection import AnalysisMetrics, nested
from bertstory.stats.patterns import pattern_masks, punct_vocab_mask

TOKEN_PATTERNS = ("cls", "sep", "punct")  # patterns whose key sets need the tokenizer


class SegmentStatistics:
    """``tables(segment)`` -> ``{flat name: LxH table}`` (names as :meth:`RunMetrics.tables`) of one segment.

    Without a tokenizer the token patterns (cls, sep, punct) cannot be told and are left out.
    """

    def __init__(self, layers: int, heads: int, tokenizer=None):
        self.layers = layers
        self.heads = heads
        self.tokenizer = tokenizer
        self._scratch: dict[bool, AnalysisMetrics] = {}  # one per with_attribution, reset for each segment
        if tokenizer is not None:
            self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
            self.punct_vocab = punct_vocab_mask(tokenizer)

    def masks(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pattern key sets of one segment (B=1): ``{p: (1,n,n)}``."""
        if self.tokenizer is not None:
            return pattern_masks(input_ids, attention_mask, self.cls_id, self.sep_id, self.punct_vocab)
        no_punct = torch.zeros(int(input_ids.max()) + 1, dtype=torch.bool)
        return pattern_masks(input_ids, attention_mask, -1, -1, no_punct)

    def tables(self, segment: Segment) -> dict[str, Table]:
        """Every statistic of the segment as ``{name: [layer][head]}``."""
        ids = segment.input_ids[None].to(torch.int64)  # (1, n)
        mask = torch.ones_like(ids)
        with_attr = segment.attribution is not None
        if with_attr not in self._scratch:
            self._scratch[with_attr] = AnalysisMetrics(self.layers, self.heads, with_attribution=with_attr)
        metrics = self._scratch[with_attr]
        metrics.reset()
        attention = segment.attention[None].to(torch.float64)  # (1, L, H, n, n)
        attribution = segment.attribution[None].to(torch.float64) if with_attr else None
        metrics.update(attention, attribution, mask, self.masks(ids, mask))
        tables = RunMetrics(metrics.compute_block()).tables()
        if self.tokenizer is None:
            tables = {k: v for k, v in tables.items() if k.rsplit("/", 1)[-1] not in TOKEN_PATTERNS}
        return tables


def recorded_tables(run: Results, indices: list[int]) -> dict[int, dict[str, Table]] | None:
    """``{k: {flat name: LxH table}}`` of the saved segments ``indices``, each table the segment's own mean
    ``s_k / n_k`` from the shards' per-segment records (None, as in metrics.json, where ``n_k = 0``);
    None for a run whose shards keep no records."""
    if not indices or not has_segment_stats(run.run_dir):
        return None
    stats = run.segment_stats(saved=indices)
    row = {k: i for i, k in enumerate(stats.indices.tolist())}
    means = {name: stats.means(name) for name in stats.sums}  # (K, L, H) each
    return {k: {name: nested(m[row[k]]) for name, m in means.items()} for k in indices}

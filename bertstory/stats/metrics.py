"""Per-(layer, head) statistics as torchmetrics ``Metric``s (DESIGN.md, "Statistics per (layer, head)").

Inputs are batched and right-padded:

- ``dist`` ``D`` (B,L,H,n,n): one distribution per query row ``i`` over keys ``j`` (an attention
  map ``A`` or a normalised attribution map ``a``), any float dtype; cast to float64 here;
- ``attention_mask`` (B,n): 1 for tokens, 0 for padding; ``n_b`` = the segment's token count;
- ``masks`` ``{p: (B,n,n) bool}`` from :func:`bertstory.stats.patterns.pattern_masks`.

Every statistic ``s`` is a token-weighted mean over every non-padding query of every segment:
``mean = sum_{b,i} s(b,i) / #queries``. States are float64 sums of shape (L,H) plus a float64
query count, all reduced with ``dist_reduce_fx="sum"``, so the result does not depend (beyond
round-off) on batch size, segment order or the number of processes. Padding queries never count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from bertstory.stats.formulas import (
    clean_rows,
    count_queries,
    entropy_bits,
    js_bits,
    key_mask,
    masked_argmax,
    pattern_mass_total,
    query_weights,
    segment_lengths,
    spearman_rows,
    sum_over_queries,
    total_variation,
    uniform_mass,
)
from bertstory.stats.patterns import PATTERNS

SPEARMAN_MIN_TOKENS = 3
DISCREPANCIES: tuple[str, ...] = ("js", "tv", "top1", "spearman")


class _QueryMean(Metric):
    """Base: float64 (L,H) sum states and a float64 count of non-padding queries (``queries``)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, layers: int, heads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layers = layers
        self.heads = heads
        self.add_state("queries", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _add_sum(self, name: str) -> None:
        self.add_state(name, torch.zeros(self.layers, self.heads, dtype=torch.float64), dist_reduce_fx="sum")

    def _check(self, dist: Tensor) -> None:
        if dist.ndim != 5 or tuple(dist.shape[1:3]) != (self.layers, self.heads):
            raise ValueError(f"expected a (B, {self.layers}, {self.heads}, n, n) tensor, got shape {tuple(dist.shape)}")


class PatternMass(_QueryMean):
    """Mean pattern mass ``M_p(i) = sum_{j in p(i)} D_ij`` per pattern: compute() -> {p: (L,H)}."""

    def __init__(self, layers: int, heads: int, patterns: tuple[str, ...] = PATTERNS, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self.patterns = patterns
        for p in patterns:
            self._add_sum(f"mass_{p}")

    def update(self, dist: Tensor, attention_mask: Tensor, masks: Mapping[str, Tensor]) -> None:
        self._check(dist)
        rows = clean_rows(dist, attention_mask)
        for p in self.patterns:
            getattr(self, f"mass_{p}").add_(pattern_mass_total(rows, masks[p]))
        self.queries += count_queries(attention_mask)

    def compute(self) -> dict[str, Tensor]:
        return {p: getattr(self, f"mass_{p}") / self.queries for p in self.patterns}


class UniformMass(_QueryMean):
    """Mean uniform baseline ``U_p(i) = |p(i)| / n_b``: compute() -> {p: (L,H)}, equal in every head."""

    def __init__(self, layers: int, heads: int, patterns: tuple[str, ...] = PATTERNS, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self.patterns = patterns
        for p in patterns:
            self._add_sum(f"uniform_{p}")

    def update(self, attention_mask: Tensor, masks: Mapping[str, Tensor]) -> None:
        for p in self.patterns:
            getattr(self, f"uniform_{p}").add_(uniform_mass(masks[p], attention_mask).sum())
        self.queries += count_queries(attention_mask)

    def compute(self) -> dict[str, Tensor]:
        return {p: getattr(self, f"uniform_{p}") / self.queries for p in self.patterns}


class RowEntropy(_QueryMean):
    """Mean row entropy in bits, ``-sum_j D_ij log2 D_ij``: compute() -> (L,H)."""

    def __init__(self, layers: int, heads: int, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self._add_sum("entropy")

    def update(self, dist: Tensor, attention_mask: Tensor) -> None:
        self._check(dist)
        rows = clean_rows(dist, attention_mask)
        self.entropy += sum_over_queries(entropy_bits(rows), query_weights(attention_mask))
        self.queries += count_queries(attention_mask)

    def compute(self) -> Tensor:
        return self.entropy / self.queries


class SelfAttribution(_QueryMean):
    """Mean ``a_ii`` (``self``) and share of queries with ``argmax_j a_ij = i`` (``self_top1``).

    The argmax runs over non-padding keys, first index on ties. compute() -> {"self", "self_top1"}: (L,H).
    """

    def __init__(self, layers: int, heads: int, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self._add_sum("self_mass")
        self._add_sum("self_top1")

    def update(self, dist: Tensor, attention_mask: Tensor) -> None:
        self._check(dist)
        rows = clean_rows(dist, attention_mask)
        weights = query_weights(attention_mask)
        positions = torch.arange(rows.shape[-1], device=rows.device)
        is_self = masked_argmax(rows, key_mask(attention_mask)) == positions
        self.self_mass += sum_over_queries(rows.diagonal(dim1=-2, dim2=-1), weights)
        self.self_top1 += sum_over_queries(is_self.to(torch.float64), weights)
        self.queries += count_queries(attention_mask)

    def compute(self) -> dict[str, Tensor]:
        return {"self": self.self_mass / self.queries, "self_top1": self.self_top1 / self.queries}


class Discrepancy(_QueryMean):
    """Discrepancy between attention rows ``A_i`` and attribution rows ``a_i``.

    - ``js``: Jensen-Shannon divergence in bits (:func:`js_bits`);
    - ``tv``: total variation ``0.5 sum_j |A_ij - a_ij|``;
    - ``top1``: share of queries where ``argmax_j A_ij == argmax_j a_ij`` (non-padding keys, first on ties);
    - ``spearman``: mean Spearman correlation over the non-padding keys (:func:`spearman_rows`), over
      the queries of segments with ``n_b >= 3`` only.

    Undefined correlations: a query whose ``A_i`` or ``a_i`` is constant over its keys has no Spearman
    correlation; it is left out of the ``spearman`` mean (its own count ``spearman_queries``) and
    counted in ``spearman_undefined``. ``spearman`` is NaN for a head with no defined query.

    compute() -> {"js", "tv", "top1", "spearman"} means, plus ``spearman_undefined`` (the count of
    left-out queries), each (L,H) float64.
    """

    def __init__(self, layers: int, heads: int, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        for name in (*DISCREPANCIES, "spearman_queries", "spearman_undefined"):
            self._add_sum(name)

    def update(self, attention: Tensor, attribution: Tensor, attention_mask: Tensor) -> None:
        self._check(attention)
        self._check(attribution)
        att = clean_rows(attention, attention_mask)
        attr = clean_rows(attribution, attention_mask)
        weights = query_weights(attention_mask)
        keys = key_mask(attention_mask)
        agree = masked_argmax(att, keys) == masked_argmax(attr, keys)
        self.js += sum_over_queries(js_bits(att, attr), weights)
        self.tv += sum_over_queries(total_variation(att, attr), weights)
        self.top1 += sum_over_queries(agree.to(torch.float64), weights)
        self.queries += count_queries(attention_mask)

        rho, defined = spearman_rows(att, attr, attention_mask)
        long_enough = (segment_lengths(attention_mask) >= SPEARMAN_MIN_TOKENS).to(torch.float64)
        eligible = weights * long_enough[:, None, None, None]
        counted = eligible * defined
        self.spearman += sum_over_queries(rho, counted)
        self.spearman_queries += sum_over_queries(torch.ones_like(rho), counted)
        self.spearman_undefined += sum_over_queries(torch.ones_like(rho), eligible * ~defined)

    def compute(self) -> dict[str, Tensor]:
        return {
            "js": self.js / self.queries,
            "tv": self.tv / self.queries,
            "top1": self.top1 / self.queries,
            "spearman": self.spearman / self.spearman_queries,
            "spearman_undefined": self.spearman_undefined.clone(),
        }



class ZeroRows(Metric):
    """How many attribution rows had all-zero raw scores and became uniform (the zero-row rule)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("rows", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, rows: int) -> None:
        self.rows += rows

    def compute(self) -> Tensor:
        return self.rows

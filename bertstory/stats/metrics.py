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

For the segment-clustered standard errors (:mod:`bertstory.stats.clustered`) every mean ``name``
also keeps, over the segments k with sums ``s_k`` (L,H) and counts ``n_k``: ``{name}_sq`` =
``sum_k s_k^2`` and ``{name}_x_n`` = ``sum_k s_k n_k`` (L,H); for the layer means, with
``t_k = sum_h s_k`` and ``m_k = sum_h n_k``: ``{name}_layer_sq`` = ``sum_k t_k^2`` and
``{name}_layer_x_n`` = ``sum_k t_k m_k`` (L,). A count ``c`` keeps ``c``, ``c_sq`` = ``sum_k n_k^2``,
and ``c_layer_sq`` = ``sum_k m_k^2``; ``segments`` counts the segments K (all of them: a segment
without a query for a head contributes ``s_k = n_k = 0``). All are sums too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from bertstory.stats.clustered import ratio_stderr
from bertstory.stats.formulas import (
    clean_rows,
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
COUNT = "queries"


class _QueryMean(Metric):
    """Base: float64 (L,H) sum states of per-segment sums, with the sums the standard errors need, and
    the float64 count of non-padding queries (``queries``). ``means`` maps each mean's sum state to its count."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, layers: int, heads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layers = layers
        self.heads = heads
        self.means: dict[str, str] = {}
        self.last_batch: dict[str, Tensor] = {}  # not a state: the last update's s_k and n_k, see _add_segments
        self._add_state("segments", ())
        self._add_count(COUNT, per_head=False)

    def _add_state(self, name: str, shape: tuple[int, ...]) -> None:
        self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def _add_sum(self, name: str) -> None:
        self._add_state(name, (self.layers, self.heads))

    def _add_count(self, name: str, per_head: bool) -> None:
        """A query count: per head (L,H) or one per segment (scalar), with its clustering sums."""
        self._add_state(name, (self.layers, self.heads) if per_head else ())
        self._add_state(f"{name}_sq", (self.layers, self.heads) if per_head else ())
        self._add_state(f"{name}_layer_sq", (self.layers,) if per_head else ())

    def _add_mean(self, name: str, count: str = COUNT) -> None:
        """A mean: the sum state ``name`` over the count ``count``, with its clustering sums."""
        for suffix in ("", "_sq", "_x_n"):
            self._add_sum(name + suffix)
        for suffix in ("_layer_sq", "_layer_x_n"):
            self._add_state(name + suffix, (self.layers,))
        self.means[name] = count

    def _add_segments(self, sums: Mapping[str, Tensor], counts: Mapping[str, Tensor]) -> None:
        """Add a batch of segments: per-segment sums ``s_k`` (B,L,H) of each mean and per-segment counts
        ``n_k``, (B,) or per head (B,L,H), of each count. ``last_batch`` keeps them, by state name, until the
        next update: each segment's own statistics (:func:`bertstory.stats.collection.batch_records`)."""
        self.last_batch = {**sums, **counts}
        per_head = {}
        self.segments += len(counts[COUNT])
        for name, n in counts.items():
            n = n.to(torch.float64)
            per_head[name] = n[:, None, None].expand(-1, self.layers, self.heads) if n.ndim == 1 else n
            layer = per_head[name].sum(dim=2)  # m_k (B,L)
            getattr(self, name).add_(n.sum(0))
            getattr(self, f"{name}_sq").add_(n.square().sum(0))
            getattr(self, f"{name}_layer_sq").add_(layer.square().sum(0) if n.ndim > 1 else layer[:, 0].square().sum())
        for name, s in sums.items():
            n = per_head[self.means[name]]
            layer, layer_n = s.sum(dim=2), n.sum(dim=2)
            getattr(self, name).add_(s.sum(0))
            getattr(self, f"{name}_sq").add_(s.square().sum(0))
            getattr(self, f"{name}_x_n").add_((s * n).sum(0))
            getattr(self, f"{name}_layer_sq").add_(layer.square().sum(0))
            getattr(self, f"{name}_layer_x_n").add_((layer * layer_n).sum(0))

    def standard_errors(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{mean: (SE per head (L,H), SE of the layer means (L,))}``, segment-clustered
        (:func:`~bertstory.stats.clustered.ratio_stderr`); a collective call under DDP.

        A layer mean is ``sum_k t_k / sum_k m_k``: for a count shared by the heads the mean of the
        head means; for per-head counts (``spearman``) the pooled mean, whose SE stands for that
        of the mean of the head means.
        """
        out = {}
        with self.sync_context():
            for name, count in self.means.items():
                n = getattr(self, count)
                per_head = n.ndim > 0
                head_se = ratio_stderr(getattr(self, name), n, getattr(self, f"{name}_sq"),
                                       getattr(self, f"{name}_x_n"), getattr(self, f"{count}_sq"), self.segments)
                layer_n = n.sum(dim=1) if per_head else n * self.heads
                layer_se = ratio_stderr(getattr(self, name).sum(dim=1), layer_n, getattr(self, f"{name}_layer_sq"),
                                        getattr(self, f"{name}_layer_x_n"), getattr(self, f"{count}_layer_sq"),
                                        self.segments)
                out[name] = (head_se, layer_se)
        return out

    def _check(self, dist: Tensor) -> None:
        if dist.ndim != 5 or tuple(dist.shape[1:3]) != (self.layers, self.heads):
            raise ValueError(f"expected a (B, {self.layers}, {self.heads}, n, n) tensor, got shape {tuple(dist.shape)}")


class PatternMass(_QueryMean):
    """Mean pattern mass ``M_p(i) = sum_{j in p(i)} D_ij`` per pattern: compute() -> {p: (L,H)}.

    With ``lift=True`` (attribution) it also keeps ``mass_{p}_layer_x_uniform`` = ``sum_k t_k u_k``
    (L,), ``t_k`` the segment's sum over heads and ``u_k = sum_i U_p(i)`` its uniform-baseline sum,
    for the standard error of the lift (:func:`bertstory.stats.persistence.lift_stderr`).
    """

    def __init__(self, layers: int, heads: int, patterns: tuple[str, ...] = PATTERNS, lift: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self.patterns = patterns
        self.lift = lift
        for p in patterns:
            self._add_mean(f"mass_{p}")
            if lift:
                self._add_state(f"mass_{p}_layer_x_uniform", (layers,))

    def update(self, dist: Tensor, attention_mask: Tensor, masks: Mapping[str, Tensor]) -> None:
        self._check(dist)
        rows = clean_rows(dist, attention_mask)
        sums = {f"mass_{p}": pattern_mass_total(rows, masks[p]) for p in self.patterns}
        self._add_segments(sums, {COUNT: segment_lengths(attention_mask)})
        if self.lift:
            for p in self.patterns:
                u = uniform_mass(masks[p], attention_mask).sum(dim=-1)  # (B,)
                getattr(self, f"mass_{p}_layer_x_uniform").add_((sums[f"mass_{p}"].sum(dim=2) * u[:, None]).sum(0))

    def compute(self) -> dict[str, Tensor]:
        return {p: getattr(self, f"mass_{p}") / self.queries for p in self.patterns}


class UniformMass(_QueryMean):
    """Mean uniform baseline ``U_p(i) = |p(i)| / n_b``: compute() -> {p: (L,H)}, equal in every head."""

    def __init__(self, layers: int, heads: int, patterns: tuple[str, ...] = PATTERNS, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self.patterns = patterns
        for p in patterns:
            self._add_mean(f"uniform_{p}")

    def update(self, attention_mask: Tensor, masks: Mapping[str, Tensor]) -> None:
        shape = (-1, self.layers, self.heads)
        sums = {f"uniform_{p}": uniform_mass(masks[p], attention_mask).sum(dim=-1)[:, None, None].expand(shape)
                for p in self.patterns}
        self._add_segments(sums, {COUNT: segment_lengths(attention_mask)})

    def compute(self) -> dict[str, Tensor]:
        return {p: getattr(self, f"uniform_{p}") / self.queries for p in self.patterns}


class RowEntropy(_QueryMean):
    """Mean row entropy in bits, ``-sum_j D_ij log2 D_ij``: compute() -> (L,H)."""

    def __init__(self, layers: int, heads: int, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self._add_mean("entropy")

    def update(self, dist: Tensor, attention_mask: Tensor) -> None:
        self._check(dist)
        rows = clean_rows(dist, attention_mask)
        self._add_segments({"entropy": sum_over_queries(entropy_bits(rows), query_weights(attention_mask))},
                           {COUNT: segment_lengths(attention_mask)})

    def compute(self) -> Tensor:
        return self.entropy / self.queries


class SelfAttribution(_QueryMean):
    """Mean ``a_ii`` (``self``) and share of queries with ``argmax_j a_ij = i`` (``self_top1``).

    The argmax runs over non-padding keys, first index on ties. compute() -> {"self", "self_top1"}: (L,H).
    """

    def __init__(self, layers: int, heads: int, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self._add_mean("self_mass")
        self._add_mean("self_top1")

    def update(self, dist: Tensor, attention_mask: Tensor) -> None:
        self._check(dist)
        rows = clean_rows(dist, attention_mask)
        weights = query_weights(attention_mask)
        positions = torch.arange(rows.shape[-1], device=rows.device)
        is_self = masked_argmax(rows, key_mask(attention_mask)) == positions
        self._add_segments({"self_mass": sum_over_queries(rows.diagonal(dim1=-2, dim2=-1), weights),
                            "self_top1": sum_over_queries(is_self.to(torch.float64), weights)},
                           {COUNT: segment_lengths(attention_mask)})

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
    correlation; it is left out of the ``spearman`` mean (its own per-head count ``spearman_queries``)
    and counted in ``spearman_undefined``. ``spearman`` is NaN for a head with no defined query.

    compute() -> {"js", "tv", "top1", "spearman"} means, plus ``spearman_undefined`` (the count of
    left-out queries), each (L,H) float64.
    """

    def __init__(self, layers: int, heads: int, **kwargs: Any) -> None:
        super().__init__(layers, heads, **kwargs)
        self._add_count("spearman_queries", per_head=True)
        for name in ("js", "tv", "top1"):
            self._add_mean(name)
        self._add_mean("spearman", count="spearman_queries")
        self._add_sum("spearman_undefined")

    def update(self, attention: Tensor, attribution: Tensor, attention_mask: Tensor) -> None:
        self._check(attention)
        self._check(attribution)
        att = clean_rows(attention, attention_mask)
        attr = clean_rows(attribution, attention_mask)
        weights = query_weights(attention_mask)
        keys = key_mask(attention_mask)
        agree = masked_argmax(att, keys) == masked_argmax(attr, keys)
        rho, defined = spearman_rows(att, attr, attention_mask)
        long_enough = (segment_lengths(attention_mask) >= SPEARMAN_MIN_TOKENS).to(torch.float64)
        eligible = weights * long_enough[:, None, None, None]
        counted = eligible * defined
        sums = {"js": sum_over_queries(js_bits(att, attr), weights),
                "tv": sum_over_queries(total_variation(att, attr), weights),
                "top1": sum_over_queries(agree.to(torch.float64), weights),
                "spearman": sum_over_queries(rho, counted)}
        counts = {COUNT: segment_lengths(attention_mask),
                  "spearman_queries": sum_over_queries(torch.ones_like(rho), counted)}
        self._add_segments(sums, counts)
        self.spearman_undefined += sum_over_queries(torch.ones_like(rho), eligible * ~defined).sum(0)

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

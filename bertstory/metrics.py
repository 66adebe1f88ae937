"""Per-(layer, head) statistics as torchmetrics ``Metric``s (DESIGN.md, "Statistics per (layer, head)").

Inputs are batched and right-padded:

- ``dist`` ``D`` (B,L,H,n,n): one distribution per query row ``i`` over keys ``j`` (an attention
  map ``A`` or a normalised attribution map ``a``), any float dtype; cast to float64 here;
- ``attention_mask`` (B,n): 1 for tokens, 0 for padding; ``n_b`` = the segment's token count;
- ``masks`` ``{p: (B,n,n) bool}`` from :func:`bertstory.patterns.pattern_masks`.

Every statistic ``s`` is a token-weighted mean over every non-padding query of every segment:
``mean = sum_{b,i} s(b,i) / #queries``. States are float64 sums of shape (L,H) plus a float64
query count, all reduced with ``dist_reduce_fx="sum"``, so the result does not depend (beyond
round-off) on batch size, segment order or the number of processes. Padding queries never count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from bertstory.patterns import PATTERNS

LN2 = math.log(2.0)
SPEARMAN_MIN_TOKENS = 3
DISCREPANCIES: tuple[str, ...] = ("js", "tv", "top1", "spearman")


# --------------------------------------------------------------------------- masks and reductions


def key_mask(attention_mask: Tensor) -> Tensor:
    """Non-padding keys ``j``, shaped to broadcast against (B,L,H,n,n): bool (B,1,1,1,n)."""
    return attention_mask.bool()[:, None, None, None, :]


def query_weights(attention_mask: Tensor) -> Tensor:
    """1.0 for every non-padding query ``i``, else 0.0: float64 (B,1,1,n)."""
    return attention_mask.to(torch.float64)[:, None, None, :]


def segment_lengths(attention_mask: Tensor) -> Tensor:
    """``n_b``, the number of non-padding tokens of each segment: float64 (B,)."""
    return attention_mask.to(torch.float64).sum(dim=-1)


def count_queries(attention_mask: Tensor) -> Tensor:
    """The number of non-padding queries in the batch, ``sum_b n_b``: float64 scalar."""
    return attention_mask.to(torch.float64).sum()


def clean_rows(dist: Tensor, attention_mask: Tensor) -> Tensor:
    """``D`` detached as float64 (B,L,H,n,n), zero wherever query ``i`` or key ``j`` is padding."""
    valid = attention_mask.bool()
    pair = (valid[:, :, None] & valid[:, None, :])[:, None, None]
    return torch.where(pair, dist.detach().to(torch.float64), 0.0)


def sum_over_queries(values: Tensor, weights: Tensor) -> Tensor:
    """``sum_{b,i} w_bi * v_bi`` per (layer, head): (L,H) from values (B,L,H,n), weights (B,1|L,1|H,n)."""
    return (values * weights).sum(dim=(0, 3))


# --------------------------------------------------------------------------- per-query formulas


def pattern_mass_total(dist: Tensor, mask: Tensor) -> Tensor:
    """``sum_{b,i} M_p(i)`` with ``M_p(i) = sum_{j in p(i)} D_ij``: (L,H) from D (B,L,H,n,n), mask (B,n,n).

    ``mask`` is False at padding queries, so only non-padding queries contribute.
    """
    return torch.einsum("blhij,bij->lh", dist, mask.to(dist.dtype))


def uniform_mass(mask: Tensor, attention_mask: Tensor) -> Tensor:
    """``U_p(i) = |p(i)| / n_b``: float64 (B,n) from mask (B,n,n); 0 at padding queries."""
    sizes = mask.to(torch.float64).sum(dim=-1)
    return sizes / segment_lengths(attention_mask).clamp(min=1.0)[:, None]


def cross_entropy_bits(p: Tensor, q: Tensor) -> Tensor:
    """``-sum_j p_ij log2 q_ij`` with ``0 log q = 0``: (...,) from (..., n)."""
    return -torch.special.xlogy(p, q).sum(dim=-1) / LN2


def entropy_bits(p: Tensor) -> Tensor:
    """Row entropy ``-sum_j p_ij log2 p_ij`` (``0 log 0 = 0``): (...,) from (..., n)."""
    return cross_entropy_bits(p, p)


def js_bits(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence in bits, ``0.5 KL(p||m) + 0.5 KL(q||m)``, ``m = (p+q)/2``.

    ``KL(p||m) = CE(p,m) - H(p)``; 0 for identical rows, 1 for disjoint supports: (...,) from (..., n).
    """
    m = 0.5 * (p + q)
    return 0.5 * (cross_entropy_bits(p, m) - entropy_bits(p) + cross_entropy_bits(q, m) - entropy_bits(q))


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """``0.5 sum_j |p_ij - q_ij|``: (...,) from (..., n)."""
    return 0.5 * (p - q).abs().sum(dim=-1)


def masked_argmax(dist: Tensor, keys: Tensor) -> Tensor:
    """``argmax_j D_ij`` over non-padding keys, first index on ties.

    long (B,L,H,n) from D (B,L,H,n,n) and keys (B,1,1,1,n).
    """
    return dist.masked_fill(~keys, -math.inf).argmax(dim=-1)


def centred_ranks(x: Tensor, keys: Tensor, lengths: Tensor) -> Tensor:
    """Twice the centred average rank of each row among its non-padding keys; 0 at padding keys.

    With ``rank_j`` the 1-based rank of ``x_j`` among the ``n_b`` non-padding keys, ties getting their
    average rank (so the mean rank is ``(n_b+1)/2``):
    ``2 rank_j - (n_b+1) = #{k: x_k < x_j} + #{k: x_k <= x_j} - n_b``, an integer.
    float64 (B,L,H,n,n) from x (B,L,H,n,n), keys (B,1,1,1,n) bool and lengths ``n_b`` (B,).
    """
    filled = x.masked_fill(~keys, math.inf)
    ordered = filled.sort(dim=-1).values
    below = torch.searchsorted(ordered, filled, side="left", out_int32=True)
    upto = torch.searchsorted(ordered, filled, side="right", out_int32=True)
    centred = (below + upto).to(torch.float64).sub_(lengths[:, None, None, None, None])
    return centred.masked_fill_(~keys, 0.0)


def spearman_rows(p: Tensor, q: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Spearman correlation of rows ``p_i`` and ``q_i`` over the ``n_b`` non-padding keys.

    The Pearson correlation of the average ranks, ``sum_j r_j s_j / sqrt(sum_j r_j^2 sum_j s_j^2)``
    with ``r``, ``s`` the :func:`centred_ranks` of ``p_i`` and ``q_i`` (the factor 2 cancels).
    Returns ``rho`` (B,L,H,n) float64 and ``defined`` (B,L,H,n) bool: False where either row is
    constant over its keys (all ranks equal, zero variance); ``rho`` is 0 there. Ranks are exact
    integers, so ``defined`` is exact.
    """
    keys = key_mask(attention_mask)
    lengths = segment_lengths(attention_mask)
    rp = centred_ranks(p, keys, lengths)
    rq = centred_ranks(q, keys, lengths)
    var = (rp * rp).sum(dim=-1) * (rq * rq).sum(dim=-1)
    defined = var > 0
    rho = torch.where(defined, (rp * rq).sum(dim=-1) / var.clamp(min=1.0).sqrt(), 0.0)
    return rho, defined


# --------------------------------------------------------------------------- metrics


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


# --------------------------------------------------------------------------- persistence


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def persistence(
    att_patterns: Mapping[str, Tensor],
    attr_patterns: Mapping[str, Tensor],
    uniform_patterns: Mapping[str, Tensor],
    tau: float = 0.5,
    kappa: float = 2.0,
) -> dict[str, Any]:
    """The ``persistence`` block of metrics.json from per-pattern (L,H) means.

    ``lift^{l,h}_p = attr_p^{l,h} / uniform_p^{l,h}``; ``lift[p][l] = mean_h lift^{l,h}_p``;
    ``carried[p][l]`` = the same mean over heads with ``att_p^{l,h} >= tau`` (None where none);
    ``persists[p] = all_l lift[p][l] >= kappa``.

    A zero (or missing) uniform mass means the pattern never occurs in the corpus: the lift is then
    not finite, and any layer whose mean is not finite gets None in ``lift`` and ``carried``; such a
    pattern never persists. Returns ``{"tau", "kappa", "lift": {p: [L]}, "carried": {p: [L]},
    "persists": {p: bool}}`` with plain Python values.
    """
    lift: dict[str, list[float | None]] = {}
    carried: dict[str, list[float | None]] = {}
    persists: dict[str, bool] = {}
    for p in attr_patterns:
        attr = torch.as_tensor(attr_patterns[p], dtype=torch.float64)
        head_lift = attr / torch.as_tensor(uniform_patterns[p], dtype=torch.float64)
        carriers = torch.as_tensor(att_patterns[p], dtype=torch.float64) >= tau
        carried_lift = torch.where(carriers, head_lift, 0.0).sum(dim=1) / carriers.sum(dim=1)
        lift[p] = [_finite_or_none(v) for v in head_lift.mean(dim=1).tolist()]
        carried[p] = [_finite_or_none(v) for v in carried_lift.tolist()]
        persists[p] = all(v is not None and v >= kappa for v in lift[p])
    return {"tau": float(tau), "kappa": float(kappa), "lift": lift, "carried": carried, "persists": persists}


# --------------------------------------------------------------------------- the analysis container


def _nested(values: Tensor) -> list[list[float | None]]:
    """(L,H) tensor as ``[layer][head]`` floats; NaN (a head with nothing to average) becomes None."""
    return [[_finite_or_none(v) for v in row] for row in values.tolist()]


class AnalysisMetrics(torch.nn.Module):
    """All statistics of one analysis run; ``compute_block()`` gives the metrics.json blocks.

    Each child Metric syncs itself across processes in ``compute()``; ``.to(device)`` moves all states.
    """

    def __init__(self, layers: int, heads: int, with_attribution: bool, tau: float = 0.5, kappa: float = 2.0) -> None:
        super().__init__()
        self.with_attribution = with_attribution
        self.tau = tau
        self.kappa = kappa
        self.attention_patterns = PatternMass(layers, heads)
        self.attention_entropy = RowEntropy(layers, heads)
        self.uniform_patterns = UniformMass(layers, heads)
        if with_attribution:
            self.attribution_patterns = PatternMass(layers, heads)
            self.attribution_entropy = RowEntropy(layers, heads)
            self.attribution_self = SelfAttribution(layers, heads)
            self.discrepancy = Discrepancy(layers, heads)

    def update(
        self,
        attention: Tensor,
        attribution: Tensor | None,
        attention_mask: Tensor,
        masks: Mapping[str, Tensor],
    ) -> None:
        """Add one batch: attention and attribution (B,L,H,n,n), attention_mask (B,n), masks {p: (B,n,n)}."""
        if (attribution is not None) != self.with_attribution:
            raise ValueError(
                f"attribution {'missing' if attribution is None else 'given'} but "
                f"with_attribution={self.with_attribution}"
            )
        self.attention_patterns.update(attention, attention_mask, masks)
        self.attention_entropy.update(attention, attention_mask)
        self.uniform_patterns.update(attention_mask, masks)
        if attribution is not None:
            self.attribution_patterns.update(attribution, attention_mask, masks)
            self.attribution_entropy.update(attribution, attention_mask)
            self.attribution_self.update(attribution, attention_mask)
            self.discrepancy.update(attention, attribution, attention_mask)

    @property
    def queries(self) -> int:
        """Number of non-padding query positions seen, summed over processes under DDP.

        A collective call under DDP: every process must read it.
        """
        with self.uniform_patterns.sync_context():
            return int(self.uniform_patterns.queries.item())

    @property
    def spearman_undefined(self) -> list[list[float | None]]:
        """Per head, the number of queries left out of ``spearman`` (constant rows): ``[layer][head]``."""
        return _nested(self.discrepancy.compute()["spearman_undefined"])

    def compute_block(self) -> dict[str, Any]:
        """JSON-ready ``attention``, ``uniform`` and (with attribution) ``attribution``, ``discrepancy``,
        ``persistence`` blocks of metrics.json, ``[layer][head]`` nested lists of floats.

        A mean with nothing to average (no query seen; ``spearman`` of a head without a single
        defined correlation) is NaN in ``compute()`` and None here, so the JSON stays strict.
        A collective call under DDP: every process must call it.
        """
        att_patterns = self.attention_patterns.compute()
        uniform = self.uniform_patterns.compute()
        blocks: dict[str, Any] = {
            "attention": {
                "patterns": {p: _nested(v) for p, v in att_patterns.items()},
                "entropy": _nested(self.attention_entropy.compute()),
            },
        }
        if self.with_attribution:
            attr_patterns = self.attribution_patterns.compute()
            self_stats = self.attribution_self.compute()
            discrepancy = self.discrepancy.compute()
            blocks["attribution"] = {
                "patterns": {p: _nested(v) for p, v in attr_patterns.items()},
                "entropy": _nested(self.attribution_entropy.compute()),
                "self": _nested(self_stats["self"]),
                "self_top1": _nested(self_stats["self_top1"]),
            }
        blocks["uniform"] = {"patterns": {p: _nested(v) for p, v in uniform.items()}}
        if self.with_attribution:
            blocks["discrepancy"] = {k: _nested(discrepancy[k]) for k in DISCREPANCIES}
            blocks["persistence"] = persistence(att_patterns, attr_patterns, uniform, self.tau, self.kappa)
        return blocks

    def reset(self) -> None:
        """Reset every child Metric."""
        for child in self.children():
            if isinstance(child, Metric):
                child.reset()


def build_metrics(
    layers: int, heads: int, with_attribution: bool, tau: float = 0.5, kappa: float = 2.0
) -> AnalysisMetrics:
    """The :class:`AnalysisMetrics` container for an encoder with ``layers`` x ``heads`` heads."""
    return AnalysisMetrics(layers, heads, with_attribution, tau=tau, kappa=kappa)

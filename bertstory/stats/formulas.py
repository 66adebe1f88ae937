"""The per-query formulas of DESIGN.md "Statistics per (layer, head)", on batched, right-padded maps.

Shapes: ``D`` (B,L,H,n,n) one distribution per query row ``i`` over keys ``j`` (an attention map
``A`` or a normalised attribution map ``a``); ``attention_mask`` (B,n), 1 for tokens, 0 for padding;
``n_b`` = a segment's token count; pattern ``masks`` ``{p: (B,n,n) bool}`` from
:func:`bertstory.stats.patterns.pattern_masks`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LN2 = math.log(2.0)

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


def clean_rows(dist: Tensor, attention_mask: Tensor) -> Tensor:
    """``D`` detached as float64 (B,L,H,n,n), zero wherever query ``i`` or key ``j`` is padding."""
    valid = attention_mask.bool()
    pair = (valid[:, :, None] & valid[:, None, :])[:, None, None]
    return torch.where(pair, dist.detach().to(torch.float64), 0.0)


def sum_over_queries(values: Tensor, weights: Tensor) -> Tensor:
    """``s_b = sum_i w_bi * v_bi``, each segment's sum per (layer, head): (B,L,H) from values (B,L,H,n),
    weights (B,1|L,1|H,n)."""
    return (values * weights).sum(dim=3)


# --------------------------------------------------------------------------- per-query formulas


def pattern_mass_total(dist: Tensor, mask: Tensor) -> Tensor:
    """``sum_i M_p(i)`` per segment, with ``M_p(i) = sum_{j in p(i)} D_ij``: (B,L,H) from D (B,L,H,n,n),
    mask (B,n,n).

    ``mask`` is False at padding queries, so only non-padding queries contribute.
    """
    return torch.einsum("blhij,bij->blh", dist, mask.to(dist.dtype))


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


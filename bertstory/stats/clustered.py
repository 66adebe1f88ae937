"""Segment-clustered standard errors (DESIGN.md, ``"stderr"`` in metrics.json): the one formula, in two forms.

Every statistic of bertstory is a ratio of sums over the K segments of the corpus,
``R = X / Y`` with ``X = sum_k x_k`` and ``Y = sum_k y_k``: a token-weighted mean (``x_k = s_k`` a
segment's sum over its queries, ``y_k = n_k`` its query count), a layer mean (``x_k`` the head mean
of ``s_k``), an attribution lift (``y_k`` the segment's uniform-baseline sum). Tokens within a
segment are not independent, so the segment is the unit: with the influence of segment k,
``z_k = (x_k - R y_k) / Y``,

    SE(R)^2 = K/(K-1) * sum_k z_k^2 = K/(K-1) * sum_k (x_k - R y_k)^2 / Y^2.

:func:`ratio_stderr` evaluates it from float64 sum states (``sum x``, ``sum y``, ``sum x^2``,
``sum x y``, ``sum y^2``, ``K``: every one a sum, so DDP and resume keep it exact), expanding
``sum_k (x_k - R y_k)^2 = sum x^2 - 2 R sum xy + R^2 sum y^2``. :func:`influence_stderr` evaluates
it from per-segment influences (the paired comparison of two runs, :func:`influence`).
Intervals and tests use the normal approximation (``Z95``, :func:`two_sided_p`).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torch import Tensor

Z95 = NormalDist().inv_cdf(0.975)  # two-sided 95% normal quantile, ~1.96


def ratio_stderr(x: Tensor, y: Tensor, xx: Tensor, xy: Tensor, yy: Tensor, segments: Tensor) -> Tensor:
    """``SE(R)`` of ``R = x / y`` from sum states over K segments, any common (broadcastable) shape.

    ``x = sum_k x_k``, ``y = sum_k y_k``, ``xx = sum_k x_k^2``, ``xy = sum_k x_k y_k``,
    ``yy = sum_k y_k^2``, ``segments = K``. ``SE^2 = K/(K-1) (xx - 2 R xy + R^2 yy) / y^2``; the
    residual sum is clamped at 0 (round-off). NaN where ``K < 2`` or ``y = 0``. float64.
    """
    x, y, xx, xy, yy, k = (torch.as_tensor(t, dtype=torch.float64) for t in (x, y, xx, xy, yy, segments))
    r = x / y
    residual = (xx - 2.0 * r * xy + r * r * yy).clamp(min=0.0)
    var = k / (k - 1.0) * residual / (y * y)
    return torch.where((k >= 2) & (y != 0), var.sqrt(), math.nan)


def influence(x: Tensor, y: Tensor) -> Tensor:
    """Per-segment influences ``z_k = (x_k - R y_k) / Y`` of ``R = sum x / sum y``: (K, ...) from (K, ...).

    Segments are along dim 0; NaN where ``Y = 0``.
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    total = y.sum(dim=0)
    return (x - x.sum(dim=0) / total * y) / total


def influence_stderr(z: Tensor) -> Tensor:
    """``SE = sqrt(K/(K-1) sum_k z_k^2)`` from influences ``z`` (K, ...) of K segments: (...). NaN if K < 2."""
    k = z.shape[0]
    if k < 2:
        return torch.full(z.shape[1:], math.nan, dtype=torch.float64)
    return (k / (k - 1) * z.to(torch.float64).pow(2).sum(dim=0)).sqrt()


def two_sided_p(estimate: Tensor, stderr: Tensor) -> Tensor:
    """Two-sided normal p-value of ``estimate / stderr``: ``2 (1 - Phi(|t|))``.

    A zero estimate with a zero standard error (two runs that agree exactly) gets p = 1; a
    non-zero estimate with zero standard error gets p = 0; NaN inputs give NaN.
    """
    estimate, stderr = estimate.to(torch.float64), stderr.to(torch.float64)
    t = estimate.abs() / stderr
    p = torch.special.erfc(t / math.sqrt(2.0))
    p = torch.where((stderr == 0) & (estimate == 0), 1.0, p)
    return torch.where(estimate.isnan() | stderr.isnan(), math.nan, p)


def benjamini_hochberg(p: Tensor, alpha: float = 0.05) -> Tensor:
    """Which hypotheses the Benjamini-Hochberg step-up procedure rejects at false discovery rate ``alpha``.

    Over the m finite p-values: sort them, find the largest rank i with ``p_(i) <= i alpha / m`` and
    reject the i smallest. bool, the shape of ``p``; NaN p-values are never rejected nor counted.
    """
    flat = p.reshape(-1).to(torch.float64)
    finite = torch.isfinite(flat)
    m = int(finite.sum())
    out = torch.zeros_like(flat, dtype=torch.bool)
    if m == 0:
        return out.reshape(p.shape)
    values = flat[finite]
    order = values.argsort()
    ranks = torch.arange(1, m + 1, dtype=torch.float64)
    below = values[order] <= ranks * alpha / m
    if below.any():
        last = int(below.nonzero().max())
        chosen = torch.zeros(m, dtype=torch.bool)
        chosen[order[: last + 1]] = True
        out[finite] = chosen
    return out.reshape(p.shape)

"""Persistence (DESIGN.md): which patterns keep their attribution lift in every layer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from bertstory.stats.clustered import ratio_stderr


def finite_or_none(value: float) -> float | None:
    """``value``, or None when it is NaN or infinite (JSON has no such numbers)."""
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
        lift[p] = [finite_or_none(v) for v in head_lift.mean(dim=1).tolist()]
        carried[p] = [finite_or_none(v) for v in carried_lift.tolist()]
        persists[p] = all(v is not None and v >= kappa for v in lift[p])
    return {"tau": float(tau), "kappa": float(kappa), "lift": lift, "carried": carried, "persists": persists}



def lift_stderr(attr_states: Mapping[str, Tensor], uniform_states: Mapping[str, Tensor], heads: int
                ) -> dict[str, list[float | None]]:
    """Segment-clustered SE of each layer's lift ``lift[p][l]``, by the delta method: ``{p: [L]}``.

    The uniform mass is the same in every head, so ``lift[p][l] = mean_h A_h / U = sum_k x_k / sum_k y_k``
    with ``x_k = t_k = sum_h a_k^{l,h}`` (the segment's attribution mass on p, summed over the heads)
    and ``y_k = H u_k`` (``u_k = sum_i U_p(i)``): a ratio estimator, whose linearised (delta-method)
    SE is :func:`~bertstory.stats.clustered.ratio_stderr` of the states ``mass_{p}_layer_sq``
    (``sum t_k^2``), ``mass_{p}_layer_x_uniform`` (``sum t_k u_k``) and ``uniform_{p}_layer_sq``
    (``sum (H u_k)^2``). None where it is not finite (fewer than 2 segments, a pattern that never occurs).
    """
    out = {}
    patterns = [name.removeprefix("mass_").removesuffix("_layer_x_uniform") for name in attr_states
                if name.endswith("_layer_x_uniform")]
    for p in patterns:
        x = attr_states[f"mass_{p}"].sum(dim=1)
        y = uniform_states[f"uniform_{p}"].sum(dim=1)  # H * sum_k u_k in every layer
        se = ratio_stderr(x, y, attr_states[f"mass_{p}_layer_sq"], heads * attr_states[f"mass_{p}_layer_x_uniform"],
                          uniform_states[f"uniform_{p}_layer_sq"], attr_states["segments"])
        out[p] = [finite_or_none(v) for v in se.tolist()]
    return out

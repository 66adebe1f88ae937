"""Persistence (DESIGN.md): which patterns keep their attribution lift in every layer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


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


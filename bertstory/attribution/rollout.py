"""``attribution=rollout``: per-head attention rollout (Abnar and Zuidema 2020), no gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from bertstory.attribution.base import Attribution
from bertstory.models.forward import attention_maps


def rollout(A: Tensor) -> Tensor:
    """Per-head rollout of attention ``A`` (L, H, n, n).

    Head (l, h): ``A^{l,h} R^{l-1}`` with ``R^0 = I`` and
    ``R^l = (0.5 mean_h A^{l,h} + 0.5 I) R^{l-1}``. Returns (L, H, n, n).
    """
    L, H, n, _ = A.shape
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    R = eye
    out = []
    for l in range(L):
        out.append(A[l] @ R)
        R = (0.5 * A[l].mean(0) + 0.5 * eye) @ R
    return torch.stack(out)


class Rollout(Attribution):
    """``A^{l,h} R^{l-1}`` from one forward pass (no gradients)."""

    NAME = "rollout"

    def scores(self, model, input_ids, token_type_ids):
        A = attention_maps(model, input_ids, torch.ones_like(input_ids), token_type_ids)[0]
        return rollout(A.double())

"""``grad_sum``: ``s_ij = ||d (sum_c o_i[c]) / d x_j||_2``, one VJP per (layer, head, query), batched with vmap.

The cheap variant common in public Hidden Token Attribution code: it differentiates the
sum of the head output's coordinates instead of the whole output vector.
"""

from __future__ import annotations

from typing import Any

import torch

from bertstory.attribution.base import Attribution
from bertstory.attribution.inputs import input_jacobians
from bertstory.models.forward import embeddings_from_words, head_outputs


class GradSum(Attribution):
    """One VJP per (layer, head, query) of the summed head output, ``chunk_size`` VJPs per vmap call."""

    NAME = "grad_sum"

    def __init__(self, chunk_size: int | None = 256, **common: Any):
        super().__init__(**common)
        self.chunk_size = chunk_size

    def options(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size}

    def scores(self, model, input_ids, token_type_ids):
        mask = torch.ones_like(input_ids)
        with torch.no_grad():
            x, inp, _ = input_jacobians(model, input_ids, token_type_ids, self.wrt)

        def f(z):  # (n, d_in) -> (L, H, n): sum over the head output's coordinates
            xx = (
                z[None]
                if self.wrt == "embeddings"
                else embeddings_from_words(model, z[None], input_ids, token_type_ids)
            )
            return head_outputs(model, xx, mask, self.head_output)[0][0].sum(-1)

        with torch.enable_grad():
            y, vjp = torch.func.vjp(f, inp.detach())
            L, H, n = y.shape
            eye = torch.eye(L * H * n, dtype=y.dtype, device=y.device).view(-1, L, H, n)
            grads = torch.func.vmap(vjp, chunk_size=self.chunk_size)(eye)[0]  # (L*H*n, n, d_in)
        return grads.norm(dim=-1).view(L, H, n, n).double()

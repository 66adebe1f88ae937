"""What the context-mixing methods share: per-head local matrices composed through the layers.

Each method defines, from one forward pass of a segment, per-head local matrices ``C^{l,h}`` and
layer matrices ``M^l`` (n x n, non-negative). The per-head global map is
``normalise_rows(C^{l,h} R^{l-1})`` with ``R^0 = I`` and ``R^l = normalise_rows(M^l) R^{l-1}``
(GlobEnc composes its raw ``M^l``). ``rollout`` is the case ``C = A^{l,h}``,
``M^l = 0.5 mean_h A^{l,h} + 0.5 I``. Option ``scope=local`` keeps ``C^{l,h}`` uncomposed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bertstory.attribution.base import Attribution, normalise_rows
from bertstory.attribution.vectors import LayerVectors, capture
from bertstory.errors import BertstoryError

SCOPES = ("global", "local")


def compose(C: Tensor, M: Tensor, normalise_layers: bool = True) -> Tensor:
    """``C^{l,h} R^{l-1}`` (L, H, n, n) from ``C`` (L, H, n, n) and ``M`` (L, n, n).

    ``R^0 = I``, ``R^l = N(M^l) R^{l-1}`` with ``N`` = :func:`normalise_rows` when ``normalise_layers``
    (else the identity: GlobEnc). The rows of the result are normalised later, by the caller.
    """
    L, _, n, _ = C.shape
    R = torch.eye(n, dtype=C.dtype, device=C.device)
    out = []
    for l in range(L):
        out.append(C[l] @ R)
        layer = normalise_rows(M[l])[0] if normalise_layers else M[l]
        R = layer @ R
    return torch.stack(out)


def work_dtype(model: torch.nn.Module, dtype: torch.dtype) -> torch.dtype:
    """The dtype of the mixing computations: the model's and ``attribution.dtype``'s, at least float32."""
    model_dtype = next(model.parameters()).dtype
    return torch.promote_types(torch.promote_types(model_dtype, dtype), torch.float32)


class ContextMixing(Attribution):
    """Base class of the context-mixing methods: subclasses give :meth:`layer_matrices` of one layer."""

    normalise_layers = True  # False for GlobEnc
    embeddings_only = True  # refuse wrt=word and head_output=projected (rollout has always ignored them)

    def __init__(self, scope: str = "global", **kwargs):
        super().__init__(**kwargs)
        if scope not in SCOPES:
            raise BertstoryError(f"attribution.scope must be 'global' or 'local', not {scope!r}")
        if self.embeddings_only and (self.wrt != "embeddings" or self.head_output != "context"):
            raise BertstoryError(f"attribution={self.name} attributes head h's mixing to the encoder's input vectors: "
                                 "leave attribution.wrt=embeddings and attribution.head_output=context")
        self.scope = scope

    def options(self) -> dict:
        return {"scope": self.scope}

    def layer_matrices(self, vec: LayerVectors) -> tuple[Tensor, Tensor]:
        """``C^{l,h}`` (H, n, n) and ``M^l`` (n, n) of one layer."""
        raise NotImplementedError

    def matrices(self, model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor) -> tuple[Tensor, Tensor]:
        """``C`` (L, H, n, n) and ``M`` (L, n, n) of one segment (1, n), from one hooked forward pass."""
        vectors = capture(model, input_ids, token_type_ids, work_dtype(model, self.tangent_dtype(model)))
        C, M = zip(*(self.layer_matrices(v) for v in vectors), strict=True)
        return torch.stack(C), torch.stack(M)

    @torch.no_grad()
    def scores(self, model, input_ids, token_type_ids):
        C, M = self.matrices(model, input_ids, token_type_ids)
        return C if self.scope == "local" else compose(C, M, self.normalise_layers)

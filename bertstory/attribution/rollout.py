"""``attribution=rollout``: per-head attention rollout (Abnar and Zuidema 2020), no gradients.

The simplest context-mixing method (:mod:`bertstory.attribution.mixing`): ``C^{l,h} = A^{l,h}`` and
``M^l = 0.5 mean_h A^{l,h} + 0.5 I``, so head (l, h) gets ``A^{l,h} R^{l-1}`` with ``R^0 = I`` and
``R^l = M^l R^{l-1}`` (the rows of ``M^l`` already sum to 1).
"""

from __future__ import annotations

import torch

from bertstory.attribution.mixing import ContextMixing


class Rollout(ContextMixing):
    """``A^{l,h} R^{l-1}`` from one forward pass (no gradients)."""

    NAME = "rollout"
    embeddings_only = False  # wrt and head_output have never changed rollout

    def layer_matrices(self, vec):
        A = vec.A.to(torch.float64)
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        return A, 0.5 * A.mean(0) + 0.5 * eye

"""``exact`` and ``grad_x_input``: forward-mode Jacobian norms of every head output, from n * d_in tangents.

- ``exact``:        ``v = E_j e_c`` for every input coordinate c, ``w = 1``: ``s_ij^2 = ||d o_i / d x_j||_F^2``
- ``grad_x_input``: the same tangents, ``w = x_jc^2``: ``s_ij^2 = ||(d o_i / d x_j) diag(x_j)||_F^2``

``E_j = d x_j / d(input_j)`` is the identity for ``wrt=embeddings`` and the embedding block's
per-token Jacobian (LayerNorm, ELECTRA's projection) for ``wrt=word``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bertstory.attribution.forward_mode import ForwardModeAttribution


class Exact(ForwardModeAttribution):
    """``s_ij = ||d o_i / d x_j||_F``: n * d_in one-hot tangents."""

    NAME = "exact"

    def tangents(self, inp, E):
        n, d_in = inp.shape
        rows = torch.arange(n, device=inp.device).repeat_interleave(d_in)
        if E is None:
            vecs = torch.eye(d_in, dtype=inp.dtype, device=inp.device).repeat(n, 1)
        else:
            vecs = E.permute(0, 2, 1).reshape(n * d_in, -1)  # row (j, c) = E_j[:, c]
        return rows, vecs, self.weights(inp)

    def weights(self, inp: Tensor) -> Tensor:
        """``w`` per tangent (j, c): 1."""
        return torch.ones(inp.numel(), dtype=torch.float64, device=inp.device)


class GradXInput(Exact):
    """``s_ij = ||(d o_i / d x_j) diag(x_j)||_F``: the exact tangents, weighted by ``x_jc^2``."""

    NAME = "grad_x_input"

    def weights(self, inp):
        return inp.reshape(-1).double().pow(2)

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


class OneHotRows:
    """The exact method's tangent rows ``v_(j, c) = E_j e_c`` (row ``j * d_in + c``), built one slice at a
    time, so a chunk never needs all ``n * d_in`` rows at once (1.2 GB at 512 tokens of bert-base)."""

    def __init__(self, n: int, d_in: int, E: Tensor | None, dtype: torch.dtype, device: torch.device):
        self.n, self.d_in, self.E, self.dtype, self.device = n, d_in, E, dtype, device

    def __len__(self) -> int:
        return self.n * self.d_in

    def __getitem__(self, s: slice) -> Tensor:
        t = torch.arange(len(self), device=self.device)[s]
        j, c = t // self.d_in, t % self.d_in
        if self.E is None:
            return torch.nn.functional.one_hot(c, self.d_in).to(self.dtype)
        return self.E[j, :, c]  # (T, d): column c of E_j


class Exact(ForwardModeAttribution):
    """``s_ij = ||d o_i / d x_j||_F``: n * d_in one-hot tangents."""

    NAME = "exact"

    def tangents(self, inp, E):
        n, d_in = inp.shape
        rows = torch.arange(n, device=inp.device).repeat_interleave(d_in)
        return rows, OneHotRows(n, d_in, E, inp.dtype, inp.device), self.weights(inp)

    def weights(self, inp: Tensor) -> Tensor:
        """``w`` per tangent (j, c): 1."""
        return torch.ones(inp.numel(), dtype=torch.float64, device=inp.device)


class GradXInput(Exact):
    """``s_ij = ||(d o_i / d x_j) diag(x_j)||_F``: the exact tangents, weighted by ``x_jc^2``."""

    NAME = "grad_x_input"

    def weights(self, inp):
        return inp.reshape(-1).double().pow(2)

"""``sketch`` (and ``quick``): an unbiased estimate of ``s_ij^2 = ||d o_i / d x_j||_F^2`` from random probes.

``s_ij^2 ~= mean_r ||J_ij u_r||^2`` over m seeded Rademacher probes ``u_r`` per input token
(``E[u u^T] = I``): ``n * m`` tangents instead of ``n * d_in``.
"""

from __future__ import annotations

from typing import Any

import torch

from bertstory.attribution.forward_mode import ForwardModeAttribution
from bertstory.errors import BertstoryError


class Sketch(ForwardModeAttribution):
    """Unbiased estimate of ``s_ij^2`` from m seeded Rademacher probes per input token."""

    NAME = "sketch"

    def __init__(self, probes: int = 32, seed: int = 0, **kw: Any):
        super().__init__(**kw)
        if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
            raise BertstoryError(f"attribution.probes must be an integer >= 1, not {probes}")
        self.probes = probes
        self.seed = seed

    def options(self) -> dict[str, Any]:
        return {**super().options(), "probes": self.probes, "seed": self.seed}

    def tangents(self, inp, E):
        n, d_in = inp.shape
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        u = torch.randint(0, 2, (n, self.probes, d_in), generator=gen).to(inp.dtype).mul_(2).sub_(1).to(inp.device)
        vecs = u if E is None else torch.einsum("jdc,jrc->jrd", E, u)
        rows = torch.arange(n, device=inp.device).repeat_interleave(self.probes)
        weights = torch.full((n * self.probes,), 1.0 / self.probes, dtype=torch.float64, device=inp.device)
        return rows, vecs.reshape(n * self.probes, -1), weights

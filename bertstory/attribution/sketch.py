"""``sketch`` (and ``quick``): an unbiased estimate of ``s_ij^2 = ||d o_i / d x_j||_F^2`` from random probes.

``s_ij^2 ~= mean_r ||J_ij u_r||^2`` over m seeded Rademacher probes ``u_r`` per input token
(``E[u u^T] = I``): ``n * m`` tangents instead of ``n * d_in``.

By default (``segment_probes=false``) every segment draws its probes from the same seed, so token
position j gets the same probes in every segment: the estimate's noise is shared by all segments,
and segment-clustered standard errors do not include it (a rerun with another seed differs in
every head beyond them). ``segment_probes=true`` seeds each segment from ``seed`` and its token ids,
so the noise is independent between segments (and still reproducible, whatever the batching).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from bertstory.attribution.forward_mode import ForwardModeAttribution
from bertstory.errors import BertstoryError


class Sketch(ForwardModeAttribution):
    """Unbiased estimate of ``s_ij^2`` from m seeded Rademacher probes per input token."""

    NAME = "sketch"

    def __init__(self, probes: int = 32, seed: int = 0, segment_probes: bool = False, **kw: Any):
        super().__init__(**kw)
        if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
            raise BertstoryError(f"attribution.probes must be an integer >= 1, not {probes}")
        self.probes = probes
        self.seed = seed
        self.segment_probes = bool(segment_probes)
        self._probe_seed = seed

    def options(self) -> dict[str, Any]:
        out = {**super().options(), "probes": self.probes, "seed": self.seed}
        return {**out, "segment_probes": True} if self.segment_probes else out

    def scores(self, model, input_ids, token_type_ids):
        self._probe_seed = segment_seed(self.seed, input_ids) if self.segment_probes else self.seed
        return super().scores(model, input_ids, token_type_ids)

    def tangents(self, inp, E):
        n, d_in = inp.shape
        gen = torch.Generator(device="cpu").manual_seed(self._probe_seed)
        u = torch.randint(0, 2, (n, self.probes, d_in), generator=gen).to(inp.dtype).mul_(2).sub_(1).to(inp.device)
        vecs = u if E is None else torch.einsum("jdc,jrc->jrd", E, u)
        rows = torch.arange(n, device=inp.device).repeat_interleave(self.probes)
        weights = torch.full((n * self.probes,), 1.0 / self.probes, dtype=torch.float64, device=inp.device)
        return rows, vecs.reshape(n * self.probes, -1), weights


def segment_seed(seed: int, input_ids: torch.Tensor) -> int:
    """A 63-bit seed from ``seed`` and a segment's token ids (SHA-256): the same segment always gets the same probes."""
    ids = input_ids.reshape(-1).to(torch.int64).cpu().numpy().tobytes()
    return int.from_bytes(hashlib.sha256(seed.to_bytes(8, "little", signed=True) + ids).digest()[:8], "little") >> 1

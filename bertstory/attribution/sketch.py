"""``sketch`` (and ``quick``): an unbiased estimate of ``s_ij^2 = ||d o_i / d x_j||_F^2`` from random probes.

With ``J = d o_i / d x_j`` (k x d_in) and m probes ``u_r`` per input token j (``n * m`` tangents
instead of ``n * d_in``), ``attribution.probes_kind`` chooses them:

- ``rademacher``: ``u_r`` in {-1, +1}^d_in, ``s_ij^2 ~= (1/m) sum_r ||J u_r||^2`` (``E[u u^T] = I``);
- ``orthogonal``: ``u_r`` the m columns of a seeded Haar-random d_in x m matrix with orthonormal
  columns (a fresh one per token; blocks of d_in columns when m > d_in), scaled by ``sqrt(d_in/m)``:
  ``s_ij^2 ~= (d_in/m) sum_r ||J u_r||^2``. Each ``u_r`` is uniform on the unit sphere, so
  ``E ||J u_r||^2 = ||J||_F^2 / d_in`` (unbiased); the probes of a block are orthogonal, so the
  variance falls to zero as m approaches d_in, and at ``m = d_in`` the sum is exactly ``||J||_F^2``.

The scale enters as the tangent weight ``w_t`` (float64), not the tangent itself.

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
from torch import Tensor

from bertstory.attribution.forward_mode import ForwardModeAttribution
from bertstory.errors import BertstoryError

PROBE_KINDS = ("rademacher", "orthogonal")


def rademacher_probes(n: int, m: int, d: int, gen: torch.Generator) -> tuple[Tensor, float]:
    """``(u, w)``: u (n, m, d) float64 entries +-1, and the weight ``1/m`` of each probe."""
    return torch.randint(0, 2, (n, m, d), generator=gen).double().mul_(2).sub_(1), 1.0 / m


def orthogonal_probes(n: int, m: int, d: int, gen: torch.Generator) -> tuple[Tensor, float]:
    """``(u, w)``: u (n, m, d) float64, per token m orthonormal rows (Haar: QR of a Gaussian with the signs of
    R's diagonal moved into Q; independent blocks of d rows when m > d), and the weight ``d/m`` of each probe."""
    blocks = []
    for start in range(0, m, d):
        k = min(d, m - start)
        G = torch.randn(n, d, k, generator=gen, dtype=torch.float64)
        Q, R = torch.linalg.qr(G)  # Q (n, d, k)
        sign = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
        sign[sign == 0] = 1
        blocks.append((Q * sign[:, None, :]).transpose(1, 2))  # (n, k, d)
    return torch.cat(blocks, 1), d / m


class Sketch(ForwardModeAttribution):
    """Unbiased estimate of ``s_ij^2`` from m seeded probes per input token (Rademacher or orthogonal)."""

    NAME = "sketch"

    def __init__(self, probes: int = 32, seed: int = 0, probes_kind: str = "rademacher",
                 segment_probes: bool = False, **kw: Any):
        super().__init__(**kw)
        if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
            raise BertstoryError(f"attribution.probes must be an integer >= 1, not {probes}")
        if probes_kind not in PROBE_KINDS:
            raise BertstoryError(f"attribution.probes_kind must be 'rademacher' or 'orthogonal', not {probes_kind!r}")
        self.probes = probes
        self.seed = seed
        self.probes_kind = probes_kind
        self.segment_probes = bool(segment_probes)
        self._probe_seed = seed

    def options(self) -> dict[str, Any]:
        out = {**super().options(), "probes": self.probes, "seed": self.seed, "probes_kind": self.probes_kind}
        return {**out, "segment_probes": True} if self.segment_probes else out

    def scores(self, model, input_ids, token_type_ids):
        self._probe_seed = segment_seed(self.seed, input_ids) if self.segment_probes else self.seed
        return super().scores(model, input_ids, token_type_ids)

    def tangents(self, inp, E):
        n, d_in = inp.shape
        gen = torch.Generator(device="cpu").manual_seed(self._probe_seed)
        draw = rademacher_probes if self.probes_kind == "rademacher" else orthogonal_probes
        u, w = draw(n, self.probes, d_in, gen)
        u = u.to(inp.dtype).to(inp.device)
        vecs = u if E is None else torch.einsum("jdc,jrc->jrd", E, u)
        rows = torch.arange(n, device=inp.device).repeat_interleave(self.probes)
        weights = torch.full((n * self.probes,), w, dtype=torch.float64, device=inp.device)
        return rows, vecs.reshape(n * self.probes, -1), weights


def segment_seed(seed: int, input_ids: torch.Tensor) -> int:
    """A 63-bit seed from ``seed`` and a segment's token ids (SHA-256): the same segment always gets the same probes."""
    ids = input_ids.reshape(-1).to(torch.int64).cpu().numpy().tobytes()
    return int.from_bytes(hashlib.sha256(seed.to_bytes(8, "little", signed=True) + ids).digest()[:8], "little") >> 1

"""What ``exact``, ``grad_x_input`` and ``sketch`` share: one-row input tangents pushed in chunks.

All three push tangents ``dx_t = e_{j_t} v_t^T`` through the encoder (the fast engine,
:mod:`bertstory.attribution.engine`, or ``torch.func.jvp`` under ``vmap`` over the Hugging Face modules
with ``engine=jvp``; the generic path is chosen automatically for a family without a fast engine,
``Family.fast = False``: DeBERTa-v2, ModernBERT)
and accumulate ``S2[l, h, i, j] = sum_{t: j_t = j} w_t ||d o^{l,h}_i [dx_t]||^2``; the score is
``s_ij = sqrt(S2_ij)``. They differ only in the tangents ``v_t`` and weights ``w_t``
(:meth:`ForwardModeAttribution.tangents`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from bertstory.attribution.base import Attribution
from bertstory.attribution.engine import Engine
from bertstory.attribution.inputs import input_jacobians
from bertstory.attribution.memory import DEFAULT_MEMORY_MB, MemoryPlan, is_oom, plan_memory
from bertstory.errors import BertstoryError
from bertstory.models.families import family_of
from bertstory.models.forward import head_outputs

log = logging.getLogger(__name__)

ENGINES = ("fast", "jvp")


class ForwardModeAttribution(Attribution):
    """Build one-row tangents, push them in chunks (halving a chunk that runs out of memory), take roots."""

    def __init__(self, chunk_size: int | None = None, memory_mb: int = DEFAULT_MEMORY_MB, engine: str = "fast",
                 **common: Any):
        super().__init__(**common)
        if engine not in ENGINES:
            raise BertstoryError(f"attribution.engine must be 'fast' or 'jvp', not {engine!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise BertstoryError(f"attribution.chunk_size must be a positive integer or null (auto), not {chunk_size}")
        self.chunk_size = chunk_size
        self.memory_mb = memory_mb
        self.engine = engine

    def options(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size, "memory_mb": self.memory_mb, "engine": self.engine}

    def tangents(self, inp: Tensor, E: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """All input tangents of a segment: rows (T,), vecs (T, d) (or an object sliced like it), weights (T,)."""
        raise NotImplementedError

    def scores(self, model, input_ids, token_type_ids):
        dtype = self.tangent_dtype(model)
        with torch.no_grad():
            x, inp, E = input_jacobians(model, input_ids, token_type_ids, self.wrt)
            rows, vecs, weights = self.tangents(inp, E)
        fam = family_of(model)
        n = input_ids.shape[1]
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        S2 = torch.zeros(fam.L, fam.H, n, n, dtype=acc, device=x.device)
        generic = self.engine == "jvp" or not fam.fast  # families without a hand-linearised engine
        push = self._jvp_pusher(model, x, dtype) if generic else self._fast_pusher(model, x, dtype)
        chunk = self.chunk_size or plan_memory(n, fam, dtype, self.memory_mb, x.device).chunk
        start = 0
        while start < len(rows):
            stop = min(start + chunk, len(rows))
            try:
                push(rows[start:stop], vecs[start:stop].to(dtype), weights[start:stop].to(acc), S2)
            except (RuntimeError, torch.OutOfMemoryError) as e:
                if not is_oom(e) or chunk == 1:
                    raise
                chunk = max(1, chunk // 2)  # for the rest of this segment only
                log.warning("out of memory in attribution: chunk size halved to %d, continuing", chunk)
                if x.is_cuda:
                    torch.cuda.empty_cache()
                continue
            start = stop
        return S2.clamp_min(0).sqrt()

    def map_budget(self, plan: MemoryPlan) -> int:
        """Bytes the fast engine may keep in residual maps and shifted values."""
        return plan.held_bytes

    def _fast_pusher(self, model, x, dtype):
        plan = plan_memory(x.shape[1], family_of(model), dtype, self.memory_mb, x.device)
        engine = Engine(model, x, dtype, self.head_output, map_budget=self.map_budget(plan))
        return engine.push

    def _jvp_pusher(self, model, x, dtype):
        """``torch.func.jvp`` under ``vmap`` on the Hugging Face modules, tangents in x-space."""
        mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        n = x.shape[1]
        primal = x[0].to(dtype)

        def f(z):  # (n, d) -> head outputs (L, H, n, d_h or d)
            return head_outputs(model, z[None], mask, self.head_output)[0][0]

        def push(rows, vecs, weights, S2):
            T = rows.shape[0]
            dense = torch.zeros(T, n, vecs.shape[1], dtype=dtype, device=vecs.device)
            dense[torch.arange(T, device=vecs.device), rows] = vecs
            do = torch.func.vmap(lambda t: torch.func.jvp(f, (primal,), (t,))[1])(dense)  # (T, L, H, n, k)
            sq = do.to(S2.dtype).pow(2).sum(-1)
            S2.index_add_(3, rows, (sq * weights[:, None, None, None]).permute(1, 2, 3, 0))

        return push

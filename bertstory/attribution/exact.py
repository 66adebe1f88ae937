"""``exact``, ``grad_x_input`` and ``sketch``: forward-mode Jacobian norms of every head output.

All three push one-row input tangents ``dx_t = e_{j_t} v_t^T`` through the encoder
(:mod:`bertstory.attribution.tangents`) and differ only in the tangents and their weights:

- ``exact``:        ``v = E_j e_c`` for every input coordinate c, ``w = 1``:
                    ``s_ij^2 = ||d o_i / d x_j||_F^2``
- ``grad_x_input``: the same tangents, ``w = x_jc^2``: ``s_ij^2 = ||(d o_i / d x_j) diag(x_j)||_F^2``
- ``sketch``:       ``v = E_j u_r`` for m seeded Rademacher probes u_r, ``w = 1/m``:
                    ``s_ij^2 ~= mean_r ||J_ij u_r||^2`` (unbiased)

``E_j = d x_j / d(input_j)`` is the identity for ``wrt=embeddings`` and the embedding
block's per-token Jacobian (LayerNorm, ELECTRA's projection) for ``wrt=word``.
``engine=jvp`` computes the same with ``torch.func.jvp`` under ``vmap`` directly on the
Hugging Face modules (slower; the reference the fast engine is tested against).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from bertstory.attribution.base import Attribution
from bertstory.attribution.tangents import Engine, chunk_bytes, fold_scores
from bertstory.models import embed, embeddings_from_words, head_outputs

log = logging.getLogger(__name__)

# tangent rows (chunk * n) per chunk on a CPU: measured on MiniLM (2 cores), chunks of 32 to 1024
# tangents at 24 tokens run within a few percent of each other when the machine is idle, while
# small chunks slow down several times when other processes share the cores; this cap keeps the
# memory of a chunk modest (about 250 MB for MiniLM) without losing speed
CPU_ROWS = 12288

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def is_oom(e: BaseException) -> bool:
    """True for an allocation failure on any device."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def available_bytes(device: torch.device) -> int:
    """Free memory of a CUDA device, or the host's available memory (0 when unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def input_jacobians(model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor, wrt: str):
    """Inputs and their per-token Jacobians.

    Returns ``(x, inp, E)``: x (1, n, d) the encoder input vectors, inp (n, d_in) the vectors
    being attributed to (x itself or the word embeddings), and E (n, d, d_in) with
    ``E_j = d x_j / d inp_j`` (None for ``wrt=embeddings``, where it is the identity).
    The embedding block acts on each token separately, so one JVP per input coordinate
    c with tangent e_c at every token gives column c of every E_j.
    """
    x, w = embed(model, input_ids, token_type_ids)
    if wrt == "embeddings":
        return x, x[0], None
    d_in = w.shape[-1]

    def f(words):
        return embeddings_from_words(model, words, input_ids, token_type_ids)

    eye = torch.eye(d_in, dtype=w.dtype, device=w.device)
    tangents = eye[:, None, None, :].expand(d_in, 1, w.shape[1], d_in)
    cols = torch.func.vmap(lambda t: torch.func.jvp(f, (w,), (t,))[1])(tangents)  # (d_in, 1, n, d)
    E = cols[:, 0].permute(1, 2, 0)  # (n, d, d_in)
    return x, w[0], E


class ForwardModeAttribution(Attribution):
    """Shared machinery: build one-row tangents, push them in chunks, take square roots."""

    needs_grad = True

    def __init__(self, chunk_size: int | None = None, memory_mb: int = 1024, engine: str = "fast", **kw):
        if engine not in ("fast", "jvp"):
            raise ValueError(f"attribution.engine must be 'fast' or 'jvp', not {engine!r}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"attribution.chunk_size must be a positive integer or null (auto), not {chunk_size}")
        super().__init__(chunk_size=chunk_size, memory_mb=memory_mb, engine=engine, **kw)
        self.chunk_size = chunk_size
        self.memory_mb = memory_mb
        self.engine = engine
        self.halvings = 0

    # -- what distinguishes the methods
    def tangents(self, inp: Tensor, E: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """All input tangents of a segment: rows (T,), vecs (T, d), weights (T,)."""
        raise NotImplementedError

    # -- shared
    def auto_chunk(self, n: int, config, device: torch.device | str = "cpu") -> int:
        """Tangents per chunk: as many as fit in ``memory_mb``.

        On a CPU the chunk is also capped at about ``CPU_ROWS`` tangent rows (chunk * n): larger
        chunks run no faster there and only take memory.
        """
        d, H, d_ff = config.hidden_size, config.num_attention_heads, config.intermediate_size
        size = DTYPES[self.dtype].itemsize
        per = chunk_bytes(n, d, H, d_ff, size, fold_scores(H, n, d))
        chunk = max(1, int(self.memory_mb * 2**20 // per))
        if torch.device(device).type == "cpu":
            chunk = min(chunk, max(1, CPU_ROWS // n))
        return chunk

    def map_budget(self, device: torch.device) -> int:
        """Bytes the fast engine may hold in per-token residual maps: ``memory_mb`` or a quarter of
        the memory available now, whichever is larger (layers beyond it use the plain rules)."""
        return max(self.memory_mb * 2**20, available_bytes(device) // 4)

    def attribute_segment(self, model, input_ids, token_type_ids):
        dtype = DTYPES[self.dtype]
        with torch.no_grad():
            x, inp, E = input_jacobians(model, input_ids, token_type_ids, self.wrt)
            rows, vecs, weights = self.tangents(inp, E)
        L = model.config.num_hidden_layers
        H = model.config.num_attention_heads
        n = input_ids.shape[1]
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        S2 = torch.zeros(L, H, n, n, dtype=acc, device=x.device)
        if self.engine == "jvp":
            push = self._jvp_pusher(model, x, dtype)
        else:
            push = self._fast_pusher(model, x, dtype)
        chunk = self.chunk_size or self.auto_chunk(n, model.config, x.device)
        start = 0
        while start < len(rows):
            stop = min(start + chunk, len(rows))
            try:
                push(rows[start:stop], vecs[start:stop].to(dtype), weights[start:stop].to(acc), S2)
            except (RuntimeError, torch.OutOfMemoryError) as e:
                if not is_oom(e) or chunk == 1:
                    raise
                chunk = max(1, chunk // 2)
                self.chunk_size = chunk
                self.halvings += 1
                log.warning("out of memory in attribution: chunk size halved to %d, continuing", chunk)
                if x.is_cuda:
                    torch.cuda.empty_cache()
                continue
            start = stop
        return S2.clamp_min(0).sqrt()

    def _fast_pusher(self, model, x, dtype):
        engine = Engine(model, x, dtype, self.head_output, map_budget=self.map_budget(x.device))
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


class Exact(ForwardModeAttribution):
    """``s_ij = ||d o_i / d x_j||_F``: n * d_in one-hot tangents."""

    name = "exact"

    def tangents(self, inp, E):
        n, d_in = inp.shape
        rows = torch.arange(n, device=inp.device).repeat_interleave(d_in)
        if E is None:
            vecs = torch.eye(d_in, dtype=inp.dtype, device=inp.device).repeat(n, 1)
        else:
            vecs = E.permute(0, 2, 1).reshape(n * d_in, -1)  # row (j, c) = E_j[:, c]
        return rows, vecs, self.weights(inp)

    def weights(self, inp: Tensor) -> Tensor:
        return torch.ones(inp.numel(), dtype=torch.float64, device=inp.device)


class GradXInput(Exact):
    """``s_ij = ||(d o_i / d x_j) diag(x_j)||_F``: the exact tangents, weighted by ``x_jc^2``."""

    name = "grad_x_input"

    def weights(self, inp):
        return inp.reshape(-1).double().pow(2)


class Sketch(ForwardModeAttribution):
    """Unbiased estimate of ``s_ij^2`` from m seeded Rademacher probes per input token."""

    name = "sketch"

    def __init__(self, probes: int = 32, seed: int = 0, **kw):
        if probes < 1:
            raise ValueError(f"attribution.probes must be >= 1, not {probes}")
        super().__init__(probes=probes, seed=seed, **kw)
        self.probes = probes
        self.seed = seed

    def tangents(self, inp, E):
        n, d_in = inp.shape
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        u = torch.randint(0, 2, (n, self.probes, d_in), generator=gen).to(inp.dtype).mul_(2).sub_(1).to(inp.device)
        vecs = u if E is None else torch.einsum("jdc,jrc->jrd", E, u)
        rows = torch.arange(n, device=inp.device).repeat_interleave(self.probes)
        weights = torch.full((n * self.probes,), 1.0 / self.probes, dtype=torch.float64, device=inp.device)
        return rows, vecs.reshape(n * self.probes, -1), weights

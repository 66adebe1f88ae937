"""How the forward-mode methods spend ``attribution.memory_mb``, and what to do when memory runs out.

``memory_mb`` bounds the attribution's own memory for one segment (the model's weights are not
counted): the fixed part (score accumulators, the chunk's output buffer, the returned maps, the
engine's per-layer matrices, :func:`fixed_bytes`), then the per-token residual maps and shifted
values the engine keeps (at most half of what is left, :func:`plan_memory`), then the tangent
chunk (the rest; on a CPU no more than ``CPU_ROWS`` tangent rows). The default, 4096 MB, leaves a
16 GB GPU and a 24 GB machine room for the model, the data and a second process at 512 tokens
on a base-size encoder (``benchmarks/README.md``, "Long segments").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bertstory.attribution.engine import fold_scores

DEFAULT_MEMORY_MB = 4096

# tangent rows (chunk * n) per chunk on a CPU: measured on MiniLM (2 cores), chunks of 32 to 1024
# tangents at 24 tokens run within a few percent of each other when the machine is idle, while
# small chunks slow down several times when other processes share the cores; this cap keeps the
# memory of a chunk modest (about 250 MB for MiniLM) without losing speed
CPU_ROWS = 12288


@dataclass
class MemoryPlan:
    """``chunk`` tangents per chunk and ``held_bytes`` for the engine's maps and shifted values."""

    chunk: int
    held_bytes: int


def is_oom(e: BaseException) -> bool:
    """True for an allocation failure on any device."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def chunk_bytes(n: int, d: int, H: int, d_ff: int, itemsize: int, fold: bool) -> int:
    """Peak bytes of the live tangent tensors per tangent of a chunk (a generous estimate)."""
    width = (2 * H * n + d) if fold else 3 * d
    return itemsize * n * (7 * d + width + 3 * H * n + d_ff) + 8 * 3 * H * n


def sizes(family) -> tuple[int, int, int, int]:
    """``(L, H, d, d_ff)`` of a Family adapter (``bertstory.models.families``) or of a BERT-style config."""
    if hasattr(family, "d_ff"):
        return family.L, family.H, family.d, family.d_ff
    c = family
    return c.num_hidden_layers, c.num_attention_heads, c.hidden_size, c.intermediate_size


def fixed_bytes(n: int, config, itemsize: int) -> int:
    """Bytes that do not scale with the chunk: S2, the chunk's output and the returned maps (float32 or
    float64, (L, H, n, n) each, four of them) and the engine's per-layer matrices without residual maps
    or shifted values (attention, score and value weights, W_O, the plain feed-forward rules)."""
    L, H, d, d_ff = sizes(config)
    maps = 4 * L * H * n * n * max(4, itemsize)
    per_layer = H * n * n + d * (H * n + 3 * d) + H * n * d + d * d + 2 * d * d_ff + n * d_ff + 6 * n * d
    first = n * d * (d // H) + 3 * d * d + 3 * n * d
    return maps + itemsize * (L * per_layer + first)


def held_bytes(n: int, config, itemsize: int) -> int:
    """Bytes of all residual maps ((L-1) n d^2) and shifted values (L n^2 d) of a segment."""
    L, _, d, _ = sizes(config)
    return itemsize * ((L - 1) * n * d * d + L * n * n * d)


def plan_memory(n: int, config, dtype: torch.dtype, memory_mb: int, device: torch.device | str = "cpu") -> MemoryPlan:
    """Split ``memory_mb`` for an n-token segment: residual maps and shifted values take at most half of
    what the fixed part leaves, the tangent chunk the rest (at least one tangent; at most
    ``CPU_ROWS // n`` on a CPU, where larger chunks run no faster and only take memory)."""
    _, H, d, d_ff = sizes(config)
    free = max(0, memory_mb * 2**20 - fixed_bytes(n, config, dtype.itemsize))
    held = min(held_bytes(n, config, dtype.itemsize), free // 2)
    per = chunk_bytes(n, d, H, d_ff, dtype.itemsize, fold_scores(H, n, d))
    chunk = max(1, (free - held) // per)
    if torch.device(device).type == "cpu":
        chunk = min(chunk, max(1, CPU_ROWS // n))
    return MemoryPlan(chunk=int(chunk), held_bytes=int(held))


def auto_chunk(n: int, family, dtype: torch.dtype, memory_mb: int, device: torch.device | str = "cpu") -> int:
    """Tangents per chunk under ``memory_mb`` (:func:`plan_memory`)."""
    return plan_memory(n, family, dtype, memory_mb, device).chunk

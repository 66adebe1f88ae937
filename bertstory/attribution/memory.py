"""How many tangents go through the engine at once, and what to do when memory runs out."""

from __future__ import annotations

import torch

from bertstory.attribution.engine import chunk_bytes, fold_scores

# tangent rows (chunk * n) per chunk on a CPU: measured on MiniLM (2 cores), chunks of 32 to 1024
# tangents at 24 tokens run within a few percent of each other when the machine is idle, while
# small chunks slow down several times when other processes share the cores; this cap keeps the
# memory of a chunk modest (about 250 MB for MiniLM) without losing speed
CPU_ROWS = 12288


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


def auto_chunk(n: int, family, dtype: torch.dtype, memory_mb: int, device: torch.device | str = "cpu") -> int:
    """Tangents per chunk: as many as fit in ``memory_mb``; ``family`` a Family adapter (or a BERT config).

    On a CPU the chunk is also capped at about ``CPU_ROWS`` tangent rows (chunk * n): larger
    chunks run no faster there and only take memory.
    """
    if hasattr(family, "d_ff"):  # a Family adapter
        d, H, d_ff = family.d, family.H, family.d_ff
    else:  # a BERT-style transformers config
        d, H, d_ff = family.hidden_size, family.num_attention_heads, family.intermediate_size
    per = chunk_bytes(n, d, H, d_ff, dtype.itemsize, fold_scores(H, n, d))
    chunk = max(1, int(memory_mb * 2**20 // per))
    if torch.device(device).type == "cpu":
        chunk = min(chunk, max(1, CPU_ROWS // n))
    return chunk


def map_budget(memory_mb: int, device: torch.device) -> int:
    """Bytes the fast engine may hold in per-token residual maps: ``memory_mb`` or a quarter of
    the memory available now, whichever is larger (layers beyond it use the plain rules)."""
    return max(memory_mb * 2**20, available_bytes(device) // 4)

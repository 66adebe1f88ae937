"""``attribution.dtype=auto``: the tangent dtype a device runs fast, resolved once per run.

bfloat16 tangents are about 4x faster than float32 where the hardware has bf16 matrix units
(CUDA GPUs with native bf16, Intel CPUs with AMX, CPUs with AVX512-BF16), and tens of times
*slower* where it has not (the CPU emulates them: about 60x on an AMD EPYC with AVX2 only).
``auto`` therefore picks bfloat16 only where the device reports such units, float32 elsewhere,
and float64 for a float64 model (an exactness check asks for it).
"""

from __future__ import annotations

import functools

import torch

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bf16 matrix units


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 matmuls natively (faster than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)
    return False


def resolve_dtype(requested: str, device: torch.device | str, model_dtype: torch.dtype = torch.float32) -> str:
    """The tangent dtype's name for ``attribution.dtype=requested`` on ``device``.

    Anything but ``auto`` is returned as it is. ``auto``: float64 for a float64 model; else
    bfloat16 where :func:`fast_bfloat16` holds, float32 otherwise.
    """
    if requested != "auto":
        return requested
    if model_dtype == torch.float64:
        return "float64"
    return "bfloat16" if fast_bfloat16(device) else "float32"

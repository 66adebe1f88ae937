"""``attribution=value_zeroing`` (Mohebbi et al. 2023), per head and per layer.

``C^{l,h}_ij``: the cosine distance between layer l's output at i with the value vector ``v^h_j``
(bias included) zeroed in head h only, and the unchanged output at i; ``M^l_ij``: the same with
``v_j`` zeroed in every head of layer l. The distance is ``0.5 ||a/|a| - b/|b|||^2`` (equal to
``1 - cos``, without its cancellation in float32).

Only layer l runs again, on its own arguments of the actual pass, for a batch of zeroing
configurations at once: ``(h, j)`` for every head and token, then ``(all heads, j)``, plus one
configuration with nothing zeroed whose output is the unchanged reference (so batched and unbatched
rounding never shows as a distance). A forward hook on the HF value module does the zeroing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bertstory.attribution.mixing import ContextMixing
from bertstory.attribution.vectors import LayerVectors, first, layer_input
from bertstory.errors import BertstoryError


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``0.5 ||a/|a| - b/|b|||^2`` over the last axis (0 for parallel vectors, 2 for opposite ones)."""
    return 0.5 * (a / a.norm(dim=-1, keepdim=True) - b / b.norm(dim=-1, keepdim=True)).pow(2).sum(-1)


def keep_masks(H: int, n: int, dtype: torch.dtype, device) -> Tensor:
    """Multipliers of the values (1 + (H+1) n, n, H): configuration 0 zeroes nothing; ``1 + h n + j`` zeroes
    ``v^h_j``; ``1 + H n + j`` zeroes ``v_j`` in every head."""
    keep = torch.ones(1 + (H + 1) * n, n, H, dtype=dtype, device=device)
    j = torch.arange(n, device=device)
    for h in range(H):
        keep[1 + h * n + j, j, h] = 0
    keep[1 + H * n + j, j, :] = 0
    return keep


def zeroing_hook(keep: Tensor, cols: slice, heads: int):
    """A forward hook for the value module: multiplies the values of configuration b, token j, head h by
    ``keep[b, j, h]`` (the values are the output's columns ``cols``, heads concatenated)."""

    def hook(_module, _args, out: Tensor) -> Tensor:
        out = out.clone()
        v = out[..., cols]
        B, n, width = v.shape
        out[..., cols] = (v.view(B, n, heads, width // heads) * keep[:, :, :, None].to(v.dtype)).view(B, n, width)
        return out

    return hook


@torch.no_grad()
def rerun_layer(vec: LayerVectors, keep: Tensor, heads: int) -> Tensor:
    """Layer l's output (B, n, d) for the value multipliers ``keep`` (B, n, H), on its arguments of the actual pass."""
    args, kwargs = vec.call
    x = layer_input(vec.call)
    xb = x.expand(keep.shape[0], *x.shape[1:])
    args, kwargs = ((xb, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": xb})
    handle = vec.parts.value.register_forward_hook(zeroing_hook(keep, vec.parts.value_cols, heads))
    try:
        return first(vec.parts.layer(*args, **kwargs))
    finally:
        handle.remove()


class ValueZeroing(ContextMixing):
    """Cosine distances of layer l's outputs with values zeroed per head (``C``) and in all heads (``M``)."""

    NAME = "value_zeroing"

    def __init__(self, chunk_size: int = 256, **kwargs):
        super().__init__(**kwargs)
        if chunk_size < 2:
            raise BertstoryError(f"attribution.chunk_size must be at least 2, not {chunk_size}")
        self.chunk_size = chunk_size

    def options(self) -> dict:
        return {**super().options(), "chunk_size": self.chunk_size}

    def layer_matrices(self, vec):
        H, n, _ = vec.A.shape
        x = layer_input(vec.call)
        keep = keep_masks(H, n, x.dtype, x.device)
        dists = []
        step = self.chunk_size - 1
        for a in range(1, keep.shape[0], step):
            chunk = torch.cat([keep[:1], keep[a : a + step]])  # the unchanged configuration first
            out = rerun_layer(vec, chunk, H)[:, :, :].to(vec.x.dtype)  # (1 + m, n, d)
            dists.append(cosine_distance(out[1:], out[:1]))  # (m, n_i)
        D = torch.cat(dists)  # ((H+1) n, n_i): row (h, j), column i
        C = D[: H * n].view(H, n, n).transpose(1, 2)  # (H, n_i, n_j)
        M = D[H * n :].T  # (n_i, n_j)
        return C.contiguous(), M.contiguous()

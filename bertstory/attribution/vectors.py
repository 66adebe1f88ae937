"""The vectors of the context-mixing methods, read from one forward pass of the Hugging Face model with hooks.

For one segment (n tokens, no padding) and every layer l, :func:`capture` records (DESIGN.md
"Context-mixing methods", layer input ``x``):

- ``x`` (n, d): the layer's input (the residual ``[i = j] x_i``);
- ``A`` (H, n, n): the attention probabilities;
- ``f`` (H, n, d): ``f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h``, from the value module's output of the
  actual pass and the output projection's rows; ``b_O`` (d) or None;
- ``ln1``, ``ln2``: each LayerNorm's ``gamma`` and ``1 / s(i)``, the standard deviation (eps included)
  it computed at position i in this pass (None for a pre-norm family);
- ``y`` (n, d): the first LayerNorm's real output (pre-norm: the residual stream after the attention
  block, ``x_i + sum_h o_i W_O^h + b_O``);
- ``call``: the layer's own arguments, to run the layer again (Value Zeroing).

Which modules hold these is :mod:`bertstory.models.parts`' business.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bertstory.models.parts import LayerParts, layer_parts


@dataclass
class Norm:
    """A LayerNorm's linear part at one pass: ``g(z)_i = gamma * (z - mean(z)) * inv_s[i]``."""

    gamma: Tensor  # (d,)
    inv_s: Tensor  # (n,): 1 / sqrt(var(r_i) + eps) of the LayerNorm's actual input r_i

    def centre(self, z: Tensor) -> Tensor:
        """``gamma * (z - mean(z))`` over the last axis (without the per-position ``1/s(i)``)."""
        return self.gamma * (z - z.mean(-1, keepdim=True))


@dataclass
class LayerVectors:
    """What one layer's context mixing is computed from (one segment, work dtype)."""

    x: Tensor  # (n, d)
    A: Tensor  # (H, n, n)
    f: Tensor  # (H, n, d)
    b_O: Tensor | None  # (d,)
    ln1: Norm | None
    ln2: Norm | None
    y: Tensor  # (n, d)
    parts: LayerParts
    call: tuple[tuple, dict] = field(default_factory=lambda: ((), {}))


def model_inputs(model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor | None) -> dict:
    """Keyword arguments of ``model(...)`` for one unpadded segment (token types only where accepted)."""
    kwargs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "output_attentions": True}
    if token_type_ids is not None and "token_type_ids" in inspect.signature(model.forward).parameters:
        kwargs["token_type_ids"] = token_type_ids
    return kwargs


def norm_of(ln: torch.nn.Module, r: Tensor, dtype: torch.dtype) -> Norm:
    """The :class:`Norm` of LayerNorm ``ln`` at its actual input ``r`` (n, d)."""
    r = r.to(dtype)
    var = r.var(-1, unbiased=False)
    gamma = ln.weight.to(dtype) if getattr(ln, "weight", None) is not None else torch.ones_like(r[0])
    return Norm(gamma=gamma, inv_s=torch.rsqrt(var + ln.eps))


def head_values(v: Tensor, W_O: Tensor, heads: int) -> Tensor:
    """``f_h(x_j) = v^h_j W_O^h``: (H, n, d) from values v (n, H*d_h) and ``W_O`` (d, H*d_h) (nn.Linear weight)."""
    n, d = v.shape[0], W_O.shape[0]
    W_h = W_O.view(d, heads, -1).permute(1, 2, 0)  # (H, d_h, d)
    return v.view(n, heads, -1).transpose(0, 1) @ W_h


class Recorder:
    """Forward hooks that append each role's tensor in call order (a shared module fires once per layer)."""

    def __init__(self):
        self.seen: dict[str, list] = {}
        self.handles: list = []
        self.hooked: set[tuple[str, int]] = set()

    def hook(self, role: str, module: torch.nn.Module, *, pre: bool = False, keep=lambda x: x) -> None:
        """Record ``keep(output)`` (or ``keep((args, kwargs))`` with ``pre``) of every call of ``module``."""
        if (role, id(module)) in self.hooked:
            return
        self.hooked.add((role, id(module)))
        store = self.seen.setdefault(role, [])
        if pre:
            h = module.register_forward_pre_hook(lambda _m, args, kwargs: store.append(keep((args, kwargs))),
                                                 with_kwargs=True)
        else:
            h = module.register_forward_hook(lambda _m, _args, out: store.append(keep(out)))
        self.handles.append(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


def first(out):
    """A module's main output (modules return a tensor or a tuple whose first entry is it)."""
    return out[0] if isinstance(out, tuple) else out


def layer_input(call: tuple[tuple, dict]) -> Tensor:
    """The hidden states a layer was called with."""
    args, kwargs = call
    return args[0] if args else kwargs["hidden_states"]


@torch.no_grad()
def capture(model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor | None,
            dtype: torch.dtype) -> list[LayerVectors]:
    """One forward pass of one segment (1, n) with hooks: the :class:`LayerVectors` of every layer, in ``dtype``."""
    parts = layer_parts(model)
    H = model.config.num_attention_heads
    with Recorder() as rec:
        for p in parts:
            rec.hook("call", p.layer, pre=True)
            rec.hook("A", p.attention, keep=lambda out, i=p.attention_index: out[i])
            rec.hook("v", p.value, keep=lambda out, cols=p.value_cols: out[..., cols])
            if p.ln1 is not None:
                rec.hook("ln1_in", p.ln1, pre=True, keep=lambda c: c[0][0])
                rec.hook("ln1_out", p.ln1)
                rec.hook("ln2_in", p.ln2, pre=True, keep=lambda c: c[0][0])
        model(**model_inputs(model, input_ids, token_type_ids))
    seen = rec.seen
    out = []
    for l, p in enumerate(parts):
        x = layer_input(seen["call"][l])[0].to(dtype)
        A = seen["A"][l][0].to(dtype)
        f = head_values(seen["v"][l][0].to(dtype), p.out_proj.weight.to(dtype), H)
        b_O = p.out_proj.bias.to(dtype) if p.out_proj.bias is not None else None
        if p.ln1 is not None:
            ln1 = norm_of(p.ln1, seen["ln1_in"][l][0], dtype)
            ln2 = norm_of(p.ln2, seen["ln2_in"][l][0], dtype)
            y = seen["ln1_out"][l][0].to(dtype)
        else:
            ln1 = ln2 = None
            y = x + torch.einsum("hij,hjd->id", A, f) + (0 if b_O is None else b_O)
        out.append(LayerVectors(x=x, A=A, f=f, b_O=b_O, ln1=ln1, ln2=ln2, y=y, parts=p, call=seen["call"][l]))
    return out

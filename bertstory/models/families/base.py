"""The adapter interface: where a family's pieces live in the Hugging Face modules, and how to run them.

The rest of bertstory talks to a :class:`Family` (built by :func:`bertstory.models.families.family_of`),
never to module names. A family reads the HF modules in place: nothing is forked, every number comes
from the HF modules' own forward.

API (``fam = family_of(model)``; shapes: ``B`` batch, ``n`` tokens, ``L`` layers, ``H`` heads,
``d`` hidden, ``d_h`` head size, ``d_e`` word-embedding size):

- ``fam.name``, ``fam.pre_norm`` (LayerNorms before their blocks, ModernBERT), ``fam.fast`` (the
  hand-linearised engine applies: post-norm, scores ``q.k * scaling`` plus a term constant in x),
  ``fam.L``, ``fam.H``, ``fam.d``, ``fam.d_h``;
- ``fam.embed(input_ids, token_type_ids, attention_mask) -> (x, w)``: ``x`` (B, n, d) the input
  vectors (``hidden_states[0]``), ``w`` (B, n, d_e) the word-embedding lookup;
  ``fam.embeddings_from_words(w, input_ids, token_type_ids, attention_mask) -> x``;
- ``fam.layers()``: the L layer modules in order (ALBERT: the shared module, L times);
- ``fam.parts(l) ->`` :class:`LayerParts`: the attention module, the Q/K/V projections
  (:class:`Projection`: a Linear and the rows of its output that hold them, per-head value vectors
  ``v^h = h_attn W_V^h{}^T + b_V^h`` = :meth:`Projection.heads`), the output projection ``out``
  (``W_O`` = ``out.weight`` (d, H d_h), ``b_O`` = ``out.bias``; its input is the heads' outputs
  concatenated), ``ln1``/``ln2`` and the feed-forward pieces;
- ``fam.segment(x, attention_mask) ->`` :class:`Segment`: what every layer of one forward needs
  besides its input (masks, MPNet's position bias, ModernBERT's rotary tables, DeBERTa's relative
  positions);
- ``fam.run_layer(l, h, seg) ->`` :class:`LayerRun`: layer l run alone on its input ``h`` (B, n, d),
  with the heads' outputs (the input of ``W_O``) and the attention probabilities captured by hooks;
- ``fam.head_outputs(x, attention_mask, head_output) -> (o, A)`` and
  ``fam.attention_maps(input_ids, attention_mask, token_type_ids) -> A`` for the whole encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bertstory.errors import BertstoryError


@dataclass
class Projection:
    """One of Q, K, V: the HF Linear computing it and the rows of its output that hold it (heads concatenated).

    ``rows`` is every output row unless the Linear is fused (ModernBERT's ``Wqkv``).
    """

    module: nn.Linear
    rows: slice
    heads: int

    @property
    def weight(self) -> Tensor:
        """(H d_h, d_in)."""
        return self.module.weight[self.rows]

    @property
    def bias(self) -> Tensor | None:
        """(H d_h,) or None."""
        return None if self.module.bias is None else self.module.bias[self.rows]

    def __call__(self, h: Tensor) -> Tensor:
        """``h W^T + b`` (..., H d_h) for the projection's input ``h`` (..., d_in)."""
        y = h @ self.weight.T
        return y if self.bias is None else y + self.bias

    def split(self, h: Tensor) -> Tensor:
        """Per-head vectors (B, H, n, d_h) of the projection's input ``h`` (B, n, d_in)."""
        B, n, _ = h.shape
        return self(h).view(B, n, self.heads, -1).transpose(1, 2)


@dataclass
class LayerParts:
    """Where one layer's pieces live.

    Post-norm (``pre_norm=False``; BERT and most families):
    ``a = ln1(o W_O^T + b_O + h)``, ``h_out = ln2(ffn(a) + a)``.
    Pre-norm (ModernBERT): ``r = h + (o W_O^T + b_O)`` with the attention run on ``ln1(h)``
    (``ln1`` may be the identity), ``h_out = r + ffn(ln2(r))``.
    ``ffn`` is the whole feed-forward block (no residual); ``ff_in``/``act``/``ff_out`` are its pieces
    where it is ``ff_out(act(ff_in(.)))`` (None for ModernBERT's gated block).
    """

    layer: nn.Module
    attention: nn.Module  # the module whose forward returns the attention probabilities at index 1
    query: Projection
    key: Projection
    value: Projection
    out: nn.Linear  # W_O; its input is the heads' outputs concatenated (B, n, H d_h)
    ln1: nn.Module
    ln2: nn.Module
    ffn: Callable[[Tensor], Tensor]
    ff_in: nn.Linear | None = None
    act: Callable[[Tensor], Tensor] | None = None
    ff_out: nn.Linear | None = None
    pre_norm: bool = False
    scaling: float | None = None  # scores = q . k * scaling (+ a term constant in x) where ``fast``


@dataclass
class Segment:
    """Per-forward inputs of every layer besides its hidden states (family-specific ``extras``)."""

    attention_mask: Tensor  # (B, n) 1 on tokens, 0 on padding
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class LayerRun:
    """One layer run alone: ``out`` (B, n, d) its output, ``context`` (B, n, H d_h) the input of ``W_O``
    (head h's output ``o^h`` is slice ``h d_h:(h+1) d_h``), ``A`` (B, H, n, n) the attention probabilities."""

    out: Tensor
    context: Tensor
    A: Tensor


class Family:
    """Base adapter; subclasses name their HF classes and fill in the module-specific methods."""

    name: ClassVar[str] = "?"
    model_types: ClassVar[tuple[str, ...]] = ()  # ``config.model_type`` values of this family
    pre_norm: ClassVar[bool] = False
    fast: ClassVar[bool] = True
    token_types: ClassVar[bool] = True

    def __init__(self, model: nn.Module):
        self.model = model
        self.config = model.config

    # ------------------------------------------------------------------ sizes
    @property
    def L(self) -> int:
        return self.config.num_hidden_layers

    @property
    def H(self) -> int:
        return self.config.num_attention_heads

    @property
    def d(self) -> int:
        return self.config.hidden_size

    @property
    def d_h(self) -> int:
        return self.d // self.H

    @property
    def d_ff(self) -> int:
        """Width of the feed-forward block's hidden layer (ModernBERT's gated block: both halves)."""
        return self.config.intermediate_size

    # ------------------------------------------------------------------ what each family fills in
    def layers(self) -> list[nn.Module]:
        raise NotImplementedError

    def parts(self, l: int) -> LayerParts:
        raise NotImplementedError

    def embeddings_from_words(self, w: Tensor, input_ids: Tensor, token_type_ids: Tensor | None,
                              attention_mask: Tensor | None = None) -> Tensor:
        """``hidden_states[0]`` (B, n, d) as a function of the word-embedding vectors ``w`` (B, n, d_e)."""
        raise NotImplementedError

    def word_embeddings(self) -> nn.Embedding:
        raise NotImplementedError

    def segment(self, x: Tensor, attention_mask: Tensor) -> Segment:
        """Masks and position terms for one forward over inputs ``x`` (B, n, d)."""
        return Segment(attention_mask, {"mask4": additive_mask(attention_mask, x.dtype)})

    def call_layer(self, l: int, h: Tensor, seg: Segment) -> Tensor:
        """Run the HF layer module ``l`` on ``h`` so that its attention module returns its probabilities."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
              attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x, w)``: x (B, n, d) = ``hidden_states[0]``, w (B, n, d_e) the word-embedding lookup."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        w = self.word_embeddings()(input_ids)
        return self.embeddings_from_words(w, input_ids, token_type_ids, attention_mask), w

    def run_layer(self, l: int, h: Tensor, seg: Segment) -> LayerRun:
        """Layer ``l`` alone on its input ``h`` (B, n, d); heads' outputs and probabilities captured by hooks."""
        parts = self.parts(l)
        captured: dict[str, Tensor] = {}

        def take_context(_m, args):
            captured.setdefault("context", args[0])

        def take_probs(_m, _args, out):
            captured.setdefault("A", out[1])

        hooks = [parts.out.register_forward_pre_hook(take_context), parts.attention.register_forward_hook(take_probs)]
        try:
            out = self.call_layer(l, h, seg)
        finally:
            for hook in hooks:
                hook.remove()
        if captured.get("A") is None:
            raise BertstoryError(
                "the model returned no attention weights: load it with attn_implementation='eager' "
                "(SDPA and flash attention do not expose them)"
            )
        return LayerRun(out=out, context=captured["context"], A=captured["A"])

    def head_outputs(self, x: Tensor, attention_mask: Tensor, head_output: str = "context") -> tuple[Tensor, Tensor]:
        """Per-head outputs of every layer as a function of the input vectors ``x`` (B, n, d).

        ``o^{l,h}_i = sum_j A^{l,h}_ij v^{l,h}_j``. Returns ``(o, A)``: o (B, L, H, n, d_h) for
        ``context`` or (B, L, H, n, d) for ``projected`` (``o_i W_O^h``), A (B, L, H, n, n).
        """
        seg = self.segment(x, attention_mask)
        outs, atts = [], []
        h = x
        for l in range(self.L):
            run = self.run_layer(l, h, seg)
            outs.append(split_heads(run.context, self.H, self.parts(l).out if head_output == "projected" else None))
            atts.append(run.A)
            h = run.out
        return torch.stack(outs, 1), torch.stack(atts, 1)

    @torch.no_grad()
    def attention_maps(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Attention of every head (B, L, H, n, n); padding rows and keys are zero."""
        x, _ = self.embed(input_ids, token_type_ids, attention_mask)
        seg = self.segment(x, attention_mask)
        atts, h = [], x
        for l in range(self.L):
            run = self.run_layer(l, h, seg)
            atts.append(run.A)
            h = run.out
        A = torch.stack(atts, 1)
        m = attention_mask.to(A.dtype)
        return A * m[:, None, None, :, None] * m[:, None, None, None, :]


def additive_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive attention mask (B, 1, 1, n): 0 on tokens, dtype-min on padding keys."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def split_heads(context: Tensor, heads: int, project_with: nn.Linear | None = None) -> Tensor:
    """(B, n, H*d_h) -> (B, H, n, d_h); with ``W_O`` given, each head projected alone: (B, H, n, d)."""
    B, n, _ = context.shape
    o = context.view(B, n, heads, -1).transpose(1, 2)
    if project_with is None:
        return o
    W = project_with.weight  # (d, H*d_h)
    W_h = W.view(W.shape[0], heads, -1).permute(1, 2, 0)  # (H, d_h, d)
    return o @ W_h


def linear_projection(module: nn.Linear, heads: int) -> Projection:
    """A whole (unfused) Linear as a projection."""
    return Projection(module, slice(0, module.out_features), heads)

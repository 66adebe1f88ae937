"""The forward pass of a BERT-layout encoder, piece by piece, on the Hugging Face modules themselves.

Everything here calls ``model.embeddings``, ``layer.attention.self``, ``layer.attention.output``,
``layer.intermediate`` and ``layer.output``; no model code is forked.

Shapes: ``B`` batch, ``n`` tokens, ``L`` layers, ``H`` heads, ``d`` hidden, ``d_h = d / H`` head size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bertstory.errors import BertstoryError


def extended_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive attention mask (B, 1, 1, n): 0 on tokens, dtype-min on padding keys."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def embed(
    model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor | None = None, wrt: str = "embeddings"
) -> tuple[Tensor, Tensor]:
    """Input vectors of the encoder.

    Returns ``(x, w)``: ``x`` (B, n, d) = ``hidden_states[0]`` (the embedding block's
    output, after ELECTRA's projection if any), and ``w`` (B, n, d_e) the word-embedding
    lookup (the input for ``wrt=word``).
    """
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    w = model.embeddings.word_embeddings(input_ids)
    x = embeddings_from_words(model, w, input_ids, token_type_ids)
    return x, w


def embeddings_from_words(
    model: torch.nn.Module, w: Tensor, input_ids: Tensor, token_type_ids: Tensor
) -> Tensor:
    """``hidden_states[0]`` as a function of the word-embedding vectors ``w`` (B, n, d_e)."""
    x = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=w)
    if hasattr(model, "embeddings_project"):
        x = model.embeddings_project(x)
    return x


def self_attention(layer: torch.nn.Module, h: Tensor, mask4: Tensor) -> tuple[Tensor, Tensor]:
    """One layer's self-attention: context (B, n, d) (heads concatenated) and A (B, H, n, n)."""
    context, attn = layer.attention.self(h, attention_mask=mask4)
    if attn is None:
        raise BertstoryError(
            "the model returned no attention weights: load it with attn_implementation='eager' "
            "(SDPA and flash attention do not expose them)"
        )
    return context, attn


def finish_layer(layer: torch.nn.Module, context: Tensor, h: Tensor) -> Tensor:
    """The rest of an encoder layer after self-attention: output projection + LN, feed-forward + LN."""
    a = layer.attention.output(context, h)
    return layer.output(layer.intermediate(a), a)


def head_outputs(
    model: torch.nn.Module, x: Tensor, attention_mask: Tensor, head_output: str = "context"
) -> tuple[Tensor, Tensor]:
    """Per-head outputs of every layer as a function of the input vectors ``x``.

    ``o^{l,h}_i = sum_j A^{l,h}_ij v^{l,h}_j``. Returns ``(o, A)`` with ``o`` of shape
    (B, L, H, n, d_h) for ``head_output="context"`` or (B, L, H, n, d) for ``"projected"``
    (``o_i W_O^h``, the head's additive contribution to the residual stream), and ``A``
    (B, L, H, n, n). The last layer's output projection and feed-forward are skipped.
    """
    layers = model.encoder.layer
    mask4 = extended_mask(attention_mask, x.dtype)
    H = model.config.num_attention_heads
    outs, atts = [], []
    h = x
    for idx, layer in enumerate(layers):
        context, attn = self_attention(layer, h, mask4)
        outs.append(split_heads(context, H, layer if head_output == "projected" else None))
        atts.append(attn)
        if idx + 1 < len(layers):
            h = finish_layer(layer, context, h)
    return torch.stack(outs, 1), torch.stack(atts, 1)


def split_heads(context: Tensor, heads: int, project_with: torch.nn.Module | None = None) -> Tensor:
    """(B, n, H*d_h) -> (B, H, n, d_h); with a layer given, project each head: (B, H, n, d)."""
    B, n, _ = context.shape
    o = context.view(B, n, heads, -1).transpose(1, 2)
    if project_with is None:
        return o
    W = project_with.attention.output.dense.weight  # (d, H*d_h)
    W_h = W.view(W.shape[0], heads, -1).permute(1, 2, 0)  # (H, d_h, d)
    return o @ W_h


@torch.no_grad()
def attention_maps(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
) -> Tensor:
    """Attention of every head, (B, L, H, n, n), rows over keys; padding rows and keys are zero."""
    x, _ = embed(model, input_ids, token_type_ids)
    mask4 = extended_mask(attention_mask, x.dtype)
    atts = []
    h = x
    for idx, layer in enumerate(model.encoder.layer):
        context, attn = self_attention(layer, h, mask4)
        atts.append(attn)
        if idx + 1 < len(model.encoder.layer):
            h = finish_layer(layer, context, h)
    A = torch.stack(atts, 1)
    m = attention_mask.to(A.dtype)
    return A * m[:, None, None, :, None] * m[:, None, None, None, :]

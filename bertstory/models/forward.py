"""The forward pass of an encoder piece by piece, for any supported family (dispatched to its adapter).

Thin model-level entry points over :mod:`bertstory.models.families`; everything runs the Hugging
Face modules themselves, no model code is forked.

Shapes: ``B`` batch, ``n`` tokens, ``L`` layers, ``H`` heads, ``d`` hidden, ``d_h = d / H`` head size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bertstory.models.families import family_of
from bertstory.models.families.base import additive_mask, split_heads


def extended_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive attention mask (B, 1, 1, n): 0 on tokens, dtype-min on padding keys."""
    return additive_mask(attention_mask, dtype)


def embed(
    model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor | None = None, wrt: str = "embeddings",
    attention_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Input vectors of the encoder: ``(x, w)``, x (B, n, d) = ``hidden_states[0]``, w (B, n, d_e) the
    word-embedding lookup (the input for ``wrt=word``)."""
    return family_of(model).embed(input_ids, token_type_ids, attention_mask)


def embeddings_from_words(
    model: torch.nn.Module, w: Tensor, input_ids: Tensor, token_type_ids: Tensor | None
) -> Tensor:
    """``hidden_states[0]`` as a function of the word-embedding vectors ``w`` (B, n, d_e)."""
    return family_of(model).embeddings_from_words(w, input_ids, token_type_ids)


def head_outputs(
    model: torch.nn.Module, x: Tensor, attention_mask: Tensor, head_output: str = "context"
) -> tuple[Tensor, Tensor]:
    """Per-head outputs ``o^{l,h}_i = sum_j A^{l,h}_ij v^{l,h}_j`` of every layer as a function of ``x``.

    Returns ``(o, A)``: o (B, L, H, n, d_h) for ``context`` or (B, L, H, n, d) for ``projected``
    (``o_i W_O^h``), A (B, L, H, n, n).
    """
    return family_of(model).head_outputs(x, attention_mask, head_output)


def attention_maps(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
) -> Tensor:
    """Attention of every head, (B, L, H, n, n), rows over keys; padding rows and keys are zero."""
    return family_of(model).attention_maps(input_ids, attention_mask, token_type_ids)


__all__ = ["attention_maps", "embed", "embeddings_from_words", "extended_mask", "head_outputs", "split_heads"]

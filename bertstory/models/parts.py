"""Where a family keeps the modules that the context-mixing methods read: the one place with module names.

For each encoder layer :class:`LayerParts` names the Hugging Face modules whose inputs and outputs
carry the vectors of DESIGN.md "Context-mixing methods": the layer itself (its first argument is
the layer input ``x``), the module that returns the attention probabilities, the linear map whose
output holds the values ``v = x W_V + b_V`` (heads concatenated), the attention output projection
(``W_O``, ``b_O``) and the two LayerNorms (post-norm) — or none (pre-norm: ``g_1`` is the identity,
``g_2`` is left out). The methods only hook these modules; no model code is forked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bertstory.errors import BertstoryError


@dataclass(frozen=True)
class LayerParts:
    """The modules of one encoder layer (the same objects for every layer of a weight-shared family)."""

    layer: torch.nn.Module  # called once per layer, the layer input ``x`` (B, n, d) first
    attention: torch.nn.Module  # its output[attention_index] is A (B, H, n, n)
    value: torch.nn.Linear  # its output's columns ``value_cols`` are the values (B, n, H*d_h)
    out_proj: torch.nn.Linear  # W_O (weight (d, H*d_h)) and b_O (None without a bias)
    ln1: torch.nn.Module | None  # the LayerNorm after the attention block (post-norm), else None
    ln2: torch.nn.Module | None  # the LayerNorm after the feed-forward block (post-norm), else None
    value_cols: slice = field(default_factory=lambda: slice(None))
    attention_index: int = 1

    @property
    def pre_norm(self) -> bool:
        return self.ln1 is None


def bert_parts(layer: torch.nn.Module) -> LayerParts:
    """BERT, MiniLM, RoBERTa, XLM-R, ELECTRA, CamemBERT."""
    return LayerParts(layer=layer, attention=layer.attention.self, value=layer.attention.self.value,
                      out_proj=layer.attention.output.dense, ln1=layer.attention.output.LayerNorm,
                      ln2=layer.output.LayerNorm)


def layer_parts(model: torch.nn.Module) -> list[LayerParts]:
    """The :class:`LayerParts` of every layer of ``model``, in order."""
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is not None and hasattr(layers[0], "attention") and hasattr(layers[0].attention, "self"):
        return [bert_parts(layer) for layer in layers]
    raise BertstoryError(f"the context-mixing methods do not know where {type(model).__name__} keeps its "
                         "values and LayerNorms: use a BERT-family encoder or another attribution method")

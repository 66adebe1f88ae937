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


def deberta_v2_parts(layer: torch.nn.Module) -> LayerParts:
    """DeBERTa v2/v3: BERT's layout, its value projection named ``value_proj``."""
    return LayerParts(layer=layer, attention=layer.attention.self, value=layer.attention.self.value_proj,
                      out_proj=layer.attention.output.dense, ln1=layer.attention.output.LayerNorm,
                      ln2=layer.output.LayerNorm)


def mpnet_parts(layer: torch.nn.Module) -> LayerParts:
    """MPNet: the output projection ``o`` sits inside the self-attention module."""
    return LayerParts(layer=layer, attention=layer.attention.attn, value=layer.attention.attn.v,
                      out_proj=layer.attention.attn.o, ln1=layer.attention.LayerNorm, ln2=layer.output.LayerNorm)


def distilbert_parts(layer: torch.nn.Module) -> LayerParts:
    return LayerParts(layer=layer, attention=layer.attention, value=layer.attention.v_lin,
                      out_proj=layer.attention.out_lin, ln1=layer.sa_layer_norm, ln2=layer.output_layer_norm)


def albert_parts(layer: torch.nn.Module) -> LayerParts:
    """ALBERT: one AlbertLayer (shared weights) per layer group."""
    return LayerParts(layer=layer, attention=layer.attention, value=layer.attention.value,
                      out_proj=layer.attention.dense, ln1=layer.attention.LayerNorm, ln2=layer.full_layer_layer_norm)


def modernbert_parts(layer: torch.nn.Module, hidden: int) -> LayerParts:
    """ModernBERT: pre-norm (no LayerNorm after the blocks), values the last third of the fused ``Wqkv``."""
    return LayerParts(layer=layer, attention=layer.attn, value=layer.attn.Wqkv, out_proj=layer.attn.Wo,
                      ln1=None, ln2=None, value_cols=slice(2 * hidden, 3 * hidden))


def albert_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The AlbertLayer that runs as each of the L layers (``inner_group_num = 1``)."""
    cfg = model.config
    if cfg.inner_group_num != 1:
        raise BertstoryError(f"ALBERT with inner_group_num={cfg.inner_group_num} is not supported by the "
                             "context-mixing methods (only 1): use another attribution method")
    groups = model.encoder.albert_layer_groups
    L = cfg.num_hidden_layers
    return [groups[int(l / (L / cfg.num_hidden_groups))].albert_layers[0] for l in range(L)]


def layer_parts(model: torch.nn.Module) -> list[LayerParts]:
    """The :class:`LayerParts` of every layer of ``model``, in order."""
    kind = getattr(model.config, "model_type", "")
    if kind == "mpnet":
        return [mpnet_parts(layer) for layer in model.encoder.layer]
    if kind == "distilbert":
        return [distilbert_parts(layer) for layer in model.transformer.layer]
    if kind == "albert":
        return [albert_parts(layer) for layer in albert_layers(model)]
    if kind == "deberta-v2":
        return [deberta_v2_parts(layer) for layer in model.encoder.layer]
    if kind == "modernbert":
        return [modernbert_parts(layer, model.config.hidden_size) for layer in model.layers]
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is not None and hasattr(layers[0], "attention") and hasattr(layers[0].attention, "self"):
        return [bert_parts(layer) for layer in layers]
    raise BertstoryError(f"the context-mixing methods do not know where {type(model).__name__} keeps its "
                         "values and LayerNorms: use a supported encoder family or another attribution method")

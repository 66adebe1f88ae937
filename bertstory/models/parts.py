"""What the context-mixing methods read of a family's layer, from its adapter (:mod:`bertstory.models.families`).

For each encoder layer :class:`LayerParts` names the Hugging Face modules whose inputs and outputs
carry the vectors of DESIGN.md "Context-mixing methods": the layer itself (its first argument is
the layer input ``x``), the module that returns the attention probabilities, the linear map whose
output holds the values ``v = x W_V + b_V`` (heads concatenated, in its output columns
``value_cols``), the attention output projection (``W_O``, ``b_O``) and the two LayerNorms after
their blocks — or none for a pre-norm family (ModernBERT: ``g_1`` is the identity on the attention
block's output, ``g_2`` is left out). The methods only hook these modules; no model code is forked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bertstory.models.families import family_of


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


def layer_parts(model: torch.nn.Module) -> list[LayerParts]:
    """The :class:`LayerParts` of every layer of ``model``, in order (from the family's adapter)."""
    fam = family_of(model)
    out = []
    for l in range(fam.L):
        p = fam.parts(l)
        out.append(LayerParts(layer=p.layer, attention=p.attention, value=p.value.module, out_proj=p.out,
                              ln1=None if p.pre_norm else p.ln1, ln2=None if p.pre_norm else p.ln2,
                              value_cols=p.value.rows))
    return out

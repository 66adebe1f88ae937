"""``mpnet``: MPNetModel (all-mpnet-base-v2).

BERT's layer, but the output projection ``o`` sits inside the self-attention module, and a relative
position bias (one table shared by all layers, a function of the positions only, constant in x) is
added to the scores. No token types.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from bertstory.models.families.base import Family, LayerParts, Segment, additive_mask, linear_projection


class MPNet(Family):
    name = "mpnet"
    model_types = ("mpnet",)
    token_types = False

    def layers(self) -> list[nn.Module]:
        return list(self.model.encoder.layer)

    def word_embeddings(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    def embeddings_from_words(self, w, input_ids, token_type_ids, attention_mask=None) -> Tensor:
        # position ids come from input_ids (padding index 1, as in RoBERTa)
        return self.model.embeddings(input_ids=input_ids, inputs_embeds=w)

    def segment(self, x: Tensor, attention_mask: Tensor) -> Segment:
        """The additive mask and the relative position bias (B, H, n, n) of MPNetEncoder."""
        bias = self.model.encoder.compute_position_bias(x)
        return Segment(attention_mask, {"mask4": additive_mask(attention_mask, x.dtype), "position_bias": bias})

    def parts(self, l: int) -> LayerParts:
        layer = self.model.encoder.layer[l]
        sa = layer.attention.attn
        return LayerParts(
            layer=layer, attention=layer.attention,
            query=linear_projection(sa.q, self.H), key=linear_projection(sa.k, self.H),
            value=linear_projection(sa.v, self.H),
            out=sa.o, ln1=layer.attention.LayerNorm, ln2=layer.output.LayerNorm,
            ffn=lambda a: layer.output.dense(layer.intermediate(a)),
            ff_in=layer.intermediate.dense, act=layer.intermediate.intermediate_act_fn, ff_out=layer.output.dense,
            scaling=1.0 / math.sqrt(sa.attention_head_size),
        )

    def call_layer(self, l: int, h: Tensor, seg: Segment) -> Tensor:
        out = self.model.encoder.layer[l](h, seg.extras["mask4"], seg.extras["position_bias"], output_attentions=True)
        return out[0]

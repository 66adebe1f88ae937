"""``deberta_v2``: DebertaV2Model (DeBERTa v2 and v3).

Disentangled attention: besides content-to-content ``q_i . k_j``, the scores hold content-to-position
(``q_i . k^r_{delta(i,j)}``) and position-to-content (``k_j . q^r_{delta(j,i)}``) terms, which depend on
x through the content queries and keys, so the hand-linearised engine does not apply (``fast = False``):
exact methods use the generic forward-mode path over these modules. Post-norm otherwise; the optional
convolution after layer 0 (``conv_kernel_size > 0``) is part of layer 0's output.
"""

from __future__ import annotations

from torch import Tensor, nn

from bertstory.models.families.base import Family, LayerParts, Segment, linear_projection


class DebertaV2(Family):
    name = "deberta_v2"
    model_types = ("deberta-v2",)
    fast = False

    def layers(self) -> list[nn.Module]:
        return list(self.model.encoder.layer)

    def word_embeddings(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    def embeddings_from_words(self, w, input_ids, token_type_ids, attention_mask=None) -> Tensor:
        return self.model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask,
                                     inputs_embeds=w)

    def segment(self, x: Tensor, attention_mask: Tensor) -> Segment:
        """DebertaV2Encoder's pairwise 0/1 mask (B, 1, n, n), relative positions and relative embeddings."""
        enc = self.model.encoder
        return Segment(attention_mask, {
            "mask": enc.get_attention_mask(attention_mask),
            "relative_pos": enc.get_rel_pos(x),
            "rel_embeddings": enc.get_rel_embedding(),
        })

    def parts(self, l: int) -> LayerParts:
        layer = self.model.encoder.layer[l]
        sa = layer.attention.self
        return LayerParts(
            layer=layer, attention=layer.attention,
            query=linear_projection(sa.query_proj, self.H), key=linear_projection(sa.key_proj, self.H),
            value=linear_projection(sa.value_proj, self.H),
            out=layer.attention.output.dense, ln1=layer.attention.output.LayerNorm, ln2=layer.output.LayerNorm,
            ffn=lambda a: layer.output.dense(layer.intermediate(a)),
            ff_in=layer.intermediate.dense, act=layer.intermediate.intermediate_act_fn, ff_out=layer.output.dense,
        )

    def call_layer(self, l: int, h: Tensor, seg: Segment) -> Tensor:
        e = seg.extras
        out, _ = self.model.encoder.layer[l](h, e["mask"], relative_pos=e["relative_pos"],
                                              rel_embeddings=e["rel_embeddings"], output_attentions=True)
        if l == 0 and self.model.encoder.conv is not None:
            out = self.model.encoder.conv(h, out, seg.attention_mask)
        return out

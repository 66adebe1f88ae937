"""``distilbert``: DistilBertModel. BERT's layer under other module names; no token types."""

from __future__ import annotations

from torch import Tensor, nn

from bertstory.models.families.base import Family, LayerParts, Segment, linear_projection


class DistilBert(Family):
    name = "distilbert"
    model_types = ("distilbert",)
    token_types = False

    @property
    def d_ff(self) -> int:
        return self.config.hidden_dim

    def layers(self) -> list[nn.Module]:
        return list(self.model.transformer.layer)

    def word_embeddings(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    def embeddings_from_words(self, w, input_ids, token_type_ids, attention_mask=None) -> Tensor:
        # DistilBERT's embeddings look input_ids up again when given: pass the vectors alone
        return self.model.embeddings(None, inputs_embeds=w)

    def parts(self, l: int) -> LayerParts:
        layer = self.model.transformer.layer[l]
        sa = layer.attention
        return LayerParts(
            layer=layer, attention=sa,
            query=linear_projection(sa.q_lin, self.H), key=linear_projection(sa.k_lin, self.H),
            value=linear_projection(sa.v_lin, self.H),
            out=sa.out_lin, ln1=layer.sa_layer_norm, ln2=layer.output_layer_norm,
            ffn=layer.ffn.ff_chunk, ff_in=layer.ffn.lin1, act=layer.ffn.activation, ff_out=layer.ffn.lin2,
            scaling=sa.scaling,
        )

    def call_layer(self, l: int, h: Tensor, seg: Segment) -> Tensor:
        return self.model.transformer.layer[l](h, attention_mask=seg.extras["mask4"])

"""``albert``: AlbertModel. One set of layer weights shared by all layers (``num_hidden_groups`` groups of
``inner_group_num`` layers); the embeddings (size ``embedding_size``) are projected to d before layer 0,
and ``x = hidden_states[0]`` is taken after that projection."""

from __future__ import annotations

from torch import Tensor, nn

from bertstory.models.families.base import Family, LayerParts, Segment, linear_projection


class Albert(Family):
    name = "albert"
    model_types = ("albert",)

    def layers(self) -> list[nn.Module]:
        """The L layers in the order they run: group ``int(l / (L / groups))``, its inner layers in turn."""
        cfg = self.config
        out = []
        for l in range(cfg.num_hidden_layers):
            group = self.model.encoder.albert_layer_groups[int(l / (cfg.num_hidden_layers / cfg.num_hidden_groups))]
            out.extend(group.albert_layers)
        return out

    @property
    def L(self) -> int:
        return self.config.num_hidden_layers * self.config.inner_group_num

    def word_embeddings(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    def embeddings_from_words(self, w, input_ids, token_type_ids, attention_mask=None) -> Tensor:
        e = self.model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=w)
        return self.model.encoder.embedding_hidden_mapping_in(e)

    def parts(self, l: int) -> LayerParts:
        layer = self.layers()[l]
        sa = layer.attention
        return LayerParts(
            layer=layer, attention=sa,
            query=linear_projection(sa.query, self.H), key=linear_projection(sa.key, self.H),
            value=linear_projection(sa.value, self.H),
            out=sa.dense, ln1=sa.LayerNorm, ln2=layer.full_layer_layer_norm,
            ffn=layer.ff_chunk, ff_in=layer.ffn, act=layer.activation, ff_out=layer.ffn_output,
            scaling=sa.scaling,
        )

    def call_layer(self, l: int, h: Tensor, seg: Segment) -> Tensor:
        return self.layers()[l](h, seg.extras["mask4"])

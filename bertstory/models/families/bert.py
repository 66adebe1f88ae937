"""``bert``: BertModel (BERT, MiniLM), RobertaModel, XLMRobertaModel, ElectraModel, CamembertModel.

Post-norm; ``hidden_states[0]`` is the embedding block's output (after ELECTRA's projection).
"""

from __future__ import annotations

from torch import Tensor, nn

from bertstory.models.families.base import Family, LayerParts, Segment, linear_projection


class Bert(Family):
    name = "bert"
    model_types = ("bert", "roberta", "xlm-roberta", "electra", "camembert")

    def layers(self) -> list[nn.Module]:
        return list(self.model.encoder.layer)

    def word_embeddings(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    def embeddings_from_words(self, w, input_ids, token_type_ids, attention_mask=None) -> Tensor:
        x = self.model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=w)
        project = getattr(self.model, "embeddings_project", None)  # ELECTRA: embedding size -> hidden size
        return project(x) if project is not None else x

    def parts(self, l: int) -> LayerParts:
        layer = self.model.encoder.layer[l]
        sa = layer.attention.self
        return LayerParts(
            layer=layer, attention=sa,
            query=linear_projection(sa.query, self.H), key=linear_projection(sa.key, self.H),
            value=linear_projection(sa.value, self.H),
            out=layer.attention.output.dense, ln1=layer.attention.output.LayerNorm, ln2=layer.output.LayerNorm,
            ffn=lambda a: layer.output.dense(layer.intermediate(a)),
            ff_in=layer.intermediate.dense, act=layer.intermediate.intermediate_act_fn, ff_out=layer.output.dense,
            scaling=sa.scaling,
        )

    def call_layer(self, l: int, h: Tensor, seg: Segment) -> Tensor:
        return self.model.encoder.layer[l](h, attention_mask=seg.extras["mask4"])

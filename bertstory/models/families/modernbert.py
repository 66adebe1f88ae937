"""``modernbert``: ModernBertModel.

Pre-norm (``attn_norm`` before attention, the identity in layer 0; ``mlp_norm`` before the feed-forward
block; ``final_norm`` after the last layer, outside every head output), rotary positions applied to q and
k, sliding-window attention in some layers (``config.layer_types``) and global attention in the others,
a gated feed-forward block, no biases by default. The engine does not apply (``fast = False``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bertstory.models.families.base import Family, LayerParts, Projection, Segment


class ModernBert(Family):
    name = "modernbert"
    model_types = ("modernbert",)
    pre_norm = True
    fast = False
    token_types = False

    @property
    def d_ff(self) -> int:
        return 2 * self.config.intermediate_size

    def layers(self) -> list[nn.Module]:
        return list(self.model.layers)

    def word_embeddings(self) -> nn.Embedding:
        return self.model.embeddings.tok_embeddings

    def embeddings_from_words(self, w, input_ids, token_type_ids, attention_mask=None) -> Tensor:
        return self.model.embeddings(inputs_embeds=w)

    def segment(self, x: Tensor, attention_mask: Tensor) -> Segment:
        """Per layer type: the mask (global or sliding window) and the rotary (cos, sin) tables, as ModernBertModel."""
        from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

        kw = {"config": self.config, "inputs_embeds": x, "attention_mask": attention_mask}
        masks = {"full_attention": create_bidirectional_mask(**kw),
                 "sliding_attention": create_bidirectional_sliding_window_mask(**kw)}
        positions = torch.arange(x.shape[1], device=x.device)[None]
        rotary = {t: self.model.rotary_emb(x, positions, t) for t in set(self.config.layer_types)}
        return Segment(attention_mask, {"masks": masks, "rotary": rotary})

    def parts(self, l: int) -> LayerParts:
        layer = self.model.layers[l]
        attn = layer.attn
        d = self.d

        def qkv(i: int) -> Projection:
            return Projection(attn.Wqkv, slice(i * d, (i + 1) * d), self.H)

        return LayerParts(
            layer=layer, attention=attn, query=qkv(0), key=qkv(1), value=qkv(2), out=attn.Wo,
            ln1=layer.attn_norm, ln2=layer.mlp_norm, ffn=layer.mlp, pre_norm=True,
            scaling=attn.head_dim**-0.5,
        )

    @torch.no_grad()
    def attention_maps(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """As :meth:`Family.attention_maps`, one segment at a time without its padding: in a sliding-window
        layer a padding query whose window holds only padding keys gets NaN from HF's eager softmax, and the
        NaN reaches every row of the next global layer."""
        B, n = input_ids.shape
        out = None
        for b, k in enumerate(attention_mask.sum(-1).tolist()):
            k = int(k)
            A = super().attention_maps(input_ids[b : b + 1, :k], attention_mask[b : b + 1, :k])
            if out is None:
                out = A.new_zeros(B, *A.shape[1:3], n, n)
            out[b, :, :, :k, :k] = A[0]
        return out

    def call_layer(self, l: int, h: Tensor, seg: Segment) -> Tensor:
        layer = self.model.layers[l]
        kind = layer.attention_type
        return layer(h, attention_mask=seg.extras["masks"][kind], position_embeddings=seg.extras["rotary"][kind])

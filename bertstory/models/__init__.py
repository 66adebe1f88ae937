"""Models: loading encoders (:mod:`.loading`) and their forward pass piece by piece (:mod:`.forward`)."""

from bertstory.models.forward import (
    attention_maps,
    embed,
    embeddings_from_words,
    extended_mask,
    finish_layer,
    head_outputs,
    self_attention,
    split_heads,
)
from bertstory.models.loading import Encoder, check_layout, load_encoder, minilm_path

__all__ = ["Encoder", "attention_maps", "check_layout", "embed", "embeddings_from_words", "extended_mask",
           "finish_layer", "head_outputs", "load_encoder", "minilm_path", "self_attention", "split_heads"]

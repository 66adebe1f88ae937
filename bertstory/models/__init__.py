"""Models: loading encoders (:mod:`.loading`), family adapters (:mod:`.families`) and the forward pass
piece by piece (:mod:`.forward`)."""

from bertstory.models.families import FAMILIES, Family, family_of
from bertstory.models.forward import (
    attention_maps,
    embed,
    embeddings_from_words,
    extended_mask,
    head_outputs,
    split_heads,
)
from bertstory.models.loading import Encoder, check_layout, load_encoder, minilm_path

__all__ = ["FAMILIES", "Encoder", "Family", "attention_maps", "check_layout", "embed", "embeddings_from_words",
           "extended_mask", "family_of", "head_outputs", "load_encoder", "minilm_path", "split_heads"]

"""Encoder families as adapters: one small module per family, detected from ``config.model_type``.

``family_of(model)`` returns the adapter (:class:`~bertstory.models.families.base.Family`) of a loaded
base model; its docstring lists the API. ``check_supported(config)`` refuses any other architecture
with a one-line error that lists the supported ones.
"""

from __future__ import annotations

import weakref

from torch import nn

from bertstory.errors import BertstoryError
from bertstory.models.families.albert import Albert
from bertstory.models.families.base import Family, LayerParts, LayerRun, Projection, Segment, split_heads
from bertstory.models.families.bert import Bert
from bertstory.models.families.deberta_v2 import DebertaV2
from bertstory.models.families.distilbert import DistilBert
from bertstory.models.families.modernbert import ModernBert
from bertstory.models.families.mpnet import MPNet

FAMILIES: dict[str, type[Family]] = {f.name: f for f in (Bert, MPNet, DistilBert, Albert, DebertaV2, ModernBert)}
BY_MODEL_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}
SUPPORTED = ("bert (BERT, MiniLM, RoBERTa, XLM-R, ELECTRA, CamemBERT), mpnet, distilbert, albert, "
             "deberta_v2 (DeBERTa v2/v3), modernbert")

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def family_name(config) -> str:
    """The family of a transformers config, or a one-line BertstoryError listing the supported ones."""
    model_type = getattr(config, "model_type", None)
    family = BY_MODEL_TYPE.get(model_type)
    if family is None:
        arch = ", ".join(getattr(config, "architectures", None) or []) or model_type
        raise BertstoryError(f"model type {model_type!r} ({arch}) is not a supported encoder: bertstory supports "
                             f"{SUPPORTED}")
    return family.name


def check_supported(config) -> None:
    """Raise BertstoryError for an unsupported architecture or a decoder configuration."""
    family_name(config)
    if getattr(config, "is_decoder", False):
        raise BertstoryError(f"the {config.model_type} model is configured as a decoder: use a bidirectional encoder")


def family_of(model: nn.Module) -> Family:
    """The adapter of a loaded base model (one per model, cached)."""
    fam = _cache.get(model)
    if fam is None:
        fam = FAMILIES[family_name(model.config)](model)
        _cache[model] = fam
    return fam


__all__ = ["FAMILIES", "Family", "LayerParts", "LayerRun", "Projection", "Segment", "check_supported",
           "family_name", "family_of", "split_heads"]

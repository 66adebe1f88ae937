"""What the entry points share: environment defaults and one-line user errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from bertstory.errors import BertstoryError


def setup_environment() -> None:
    """Offline-first defaults (can be overridden from the shell) and quiet third-party noise."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if os.environ.get("HF_HUB_OFFLINE") is None and not os.environ.get("BERTSTORY_ONLINE"):
        os.environ["HF_HUB_OFFLINE"] = "1"
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


@contextlib.contextmanager
def user_errors():
    """Turn a BertstoryError into ``error: <message>`` on stderr and exit code 2, without a traceback."""
    try:
        yield
    except BertstoryError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

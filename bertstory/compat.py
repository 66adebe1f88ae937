"""Every use of another library's private API or error text, in one place.

Each function below leans on something a library does not promise to keep. ``tests/test_compat.py``
checks each of them against the installed library, so that an upgrade that changes one fails a
test by name instead of breaking a run silently. No other bertstory module touches a private name.

| what | library | used for |
|---|---|---|
| ``config._attn_implementation`` | transformers | eager attention on a config built before the model |
| ``subprocess_script._hydra_subprocess_cmd`` | Lightning | DDP ranks started as this Hydra job |
| ``Metric._update_count``, ``Metric._computed`` | torchmetrics | merged states count as an update |
| ``WandbLogger._experiment`` | Lightning | whether a W&B run was started |
| "Could not find '...'" / "Could not override '...'" | Hydra | one-line errors for bad overrides |
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

# ---------------------------------------------------------------------------------------- transformers


def use_eager_attention(config) -> None:
    """Ask for the eager attention kernel on ``config`` (SDPA and flash attention return no weights)."""
    config._attn_implementation = "eager"


def attention_implementation(config) -> str | None:
    """The attention kernel a config asks for (``eager``, ``sdpa``, ...)."""
    return getattr(config, "_attn_implementation", None)


# ---------------------------------------------------------------------------------------- Lightning


def _lightning_launcher_module():
    from lightning.pytorch.strategies.launchers import subprocess_script

    return subprocess_script


@contextlib.contextmanager
def hydra_subprocess_command(command: Callable[[int], tuple[list[str], str]]) -> Iterator[bool]:
    """While inside, Lightning's DDP script launcher starts process ``local_rank`` with ``command(local_rank)``
    (a command list and a working directory) whenever Hydra is running; yields whether the hook was installed.

    Lightning's launcher calls the module-level ``_hydra_subprocess_cmd`` of
    ``lightning.pytorch.strategies.launchers.subprocess_script`` when Hydra is initialised.
    """
    module = _lightning_launcher_module()
    if not hasattr(module, "_hydra_subprocess_cmd"):
        yield False
        return
    original = module._hydra_subprocess_cmd
    module._hydra_subprocess_cmd = command
    try:
        yield True
    finally:
        module._hydra_subprocess_cmd = original


def wandb_run_started(logger) -> bool:
    """Whether a Lightning ``WandbLogger`` has started its W&B run (reading ``.experiment`` would start one)."""
    return getattr(logger, "_experiment", None) is not None


# ---------------------------------------------------------------------------------------- torchmetrics


def count_merged_update(metric) -> None:
    """After ``metric.merge_state(...)``: count the merged data as an update (no "compute before update"
    warning) and drop any cached ``compute()`` result."""
    metric._update_count += 1
    metric._computed = None


# ---------------------------------------------------------------------------------------- Hydra

_UNKNOWN_OPTION = re.compile(r"Could not find '([^']+)/([^']+)'")
_UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'")


def hydra_override_error(text: str) -> tuple[str, tuple[str, ...]] | None:
    """What a Hydra composition error says, from its text: ``("option", (group, option))`` for an unknown
    config group option, ``("key", (key,))`` for an unknown key, None for anything else."""
    option = _UNKNOWN_OPTION.search(text)
    if option:
        return "option", option.groups()
    key = _UNKNOWN_KEY.search(text)
    if key:
        return "key", key.groups()
    return None

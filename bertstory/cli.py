"""What the entry points share: environment defaults and one-line user errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

from bertstory.compat import hydra_override_error
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
        fail(e)
    except Exception as e:  # Hydra's instantiate wraps errors raised by a _target_
        cause = e.__cause__
        if isinstance(cause, BertstoryError):
            fail(cause)
        raise


def fail(e: BertstoryError) -> None:
    """Print the one-line error and exit with code 2."""
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def check_overrides(config_dir: str, config_name: str, argv: list[str] | None = None) -> None:
    """Compose the config once before Hydra runs, so an unknown group option or key ends in one line.

    Multirun and Hydra's own flags are left to Hydra.
    """
    from hydra import compose, initialize_config_dir

    argv = sys.argv[1:] if argv is None else argv
    check_output_dirs(argv)
    if any(a.startswith("-") for a in argv):
        return
    overrides = [a for a in argv if not a.lstrip("+~").startswith("hydra")]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
        missing = missing_keys(cfg)
    except Exception as e:
        text = str(e)
        said = hydra_override_error(text)
        if said is not None and said[0] == "option":
            group, option = said[1]
            options = sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml") if not p.stem.startswith("_"))
            msg = f"unknown option {group}={option}: choose one of {', '.join(options)}"
        elif said is not None:
            msg = (f"unknown config option {said[1][0]}: check its spelling against conf/ "
                   f"(python {Path(sys.argv[0]).name} --cfg job shows them all)")
        else:
            msg = "bad override: " + " ".join(line.strip() for line in text.splitlines() if line.strip())[:300]
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    if missing:
        print(f"error: {missing[0]} is required: set it on the command line, e.g. {missing[0]}=VALUE", file=sys.stderr)
        sys.exit(2)


def check_output_dirs(argv: list[str]) -> None:
    """Exit with one line when ``hydra.run.dir=`` / ``hydra.sweep.dir=`` cannot become a writable folder.

    Hydra creates these folders itself, before any bertstory code runs, and would fail with a traceback.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.lstrip("+~") not in ("hydra.run.dir", "hydra.sweep.dir") or "${" in value:
            continue
        problem = unwritable(value.strip("'\""))
        if problem:
            print(f"error: cannot create the output folder {value} ({problem}): choose another with {key}=DIR",
                  file=sys.stderr)
            sys.exit(2)


def unwritable(path: str) -> str | None:
    """Why ``path`` cannot be created or written as a folder, or None when it can (as far as we can tell)."""
    full = Path(path).expanduser().absolute()
    for folder in (full, *full.parents):
        if folder.exists():
            if not folder.is_dir():
                return f"{folder} is a file, not a folder"
            if not os.access(folder, os.W_OK | os.X_OK):
                return f"no write permission in {folder}"
            return None
    return None


def missing_keys(cfg) -> list[str]:
    """Dotted keys whose value is ``???`` (without resolving interpolations)."""
    from omegaconf import OmegaConf

    def walk(node, prefix: str) -> list[str]:
        if isinstance(node, dict):
            return [k for key, value in node.items() for k in walk(value, f"{prefix}{key}.")]
        return [prefix[:-1]] if node == "???" else []

    return sorted(walk(OmegaConf.to_container(cfg, resolve=False), ""))


def check_writable(run_dir: Path) -> None:
    """Fail early, with the fix, when the run directory cannot be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise BertstoryError(f"cannot write to the run directory {run_dir} ({e.strerror}): choose another with "
                             "hydra.run.dir=DIR") from e

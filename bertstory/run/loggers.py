"""The Lightning logger of a run (``logger`` config group), and what a finished analysis sends to it.

Lightning forbids ``self.log`` in predict hooks, so :func:`log_results` sends the config, the
per-layer summaries, the LxH tables and (on W&B) the report's figures after the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from bertstory.compat import wandb_run_started
from bertstory.results.run_metrics import RunMetrics
from bertstory.results.summary import layer_summary
from bertstory.stats.patterns import PATTERNS

MAX_GROUP_LENGTH = 128  # W&B's limit on a group name


def sweep_group() -> str | None:
    """The W&B group shared by all runs of this multirun (its sweep folder), or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return str(hc.sweep.dir)[-MAX_GROUP_LENGTH:]


def build_logger(cfg: DictConfig):
    """The Lightning logger of the ``logger`` group, or None for ``logger=none``.

    The runs of one multirun share a W&B group unless ``logger.group`` is set.
    """
    from hydra.utils import instantiate

    if cfg.get("logger") is None or cfg.logger.get("_target_") is None:
        return None
    extra = {}
    if "group" in cfg.logger and cfg.logger.group is None and sweep_group() is not None:
        extra["group"] = sweep_group()
    return instantiate(cfg.logger, **extra)


def is_wandb(logger) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


def finish_wandb_run(logger) -> None:
    """End the W&B run of a ``WandbLogger`` (on rank 0): otherwise the next job of a multirun, in the same
    process, would log into it instead of starting its own run."""
    if is_wandb(logger) and wandb_run_started(logger):
        logger.experiment.finish()


def log_results(logger, cfg: DictConfig, metrics: RunMetrics, figures: Sequence = ()) -> None:
    """Send the config, per-layer summaries and the LxH tables to the logger (after the epoch); on W&B
    also the report's figures as images and the per-layer summaries as line charts."""
    summary = layer_summary(metrics)
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    for layer, row in enumerate(summary["layers"]):
        logger.log_metrics({f"layer/{k}": v for k, v in row.items() if v is not None}, step=layer)
    if hasattr(logger, "log_table"):
        for name, table in metrics.tables(("attention", "attribution", "discrepancy")).items():
            logger.log_table(key=name, columns=["layer"] + [f"head{h}" for h in range(len(table[0]))],
                             data=[[layer] + row for layer, row in enumerate(table)])
    if is_wandb(logger):
        log_wandb_media(logger, figures, summary)
    logger.finalize("success")


def log_wandb_media(logger, figures: Sequence, summary: dict) -> None:
    """Figures as ``wandb.Image`` and per-layer summaries as line charts, on a Lightning WandbLogger."""
    import wandb

    rows = summary["layers"]
    xs = list(range(len(rows)))

    def col(name: str) -> list[float]:
        return [math.nan if row.get(name) is None else row[name] for row in rows]

    payload = {f"figures/{f.name}": wandb.Image(str(f.png), caption=f.caption) for f in figures}
    blocks = [("att", "attention"), ("attr", "attribution"), ("uniform", "uniform")]
    for p in PATTERNS:
        present = [(b, label) for b, label in blocks if f"{b}_{p}" in rows[0]]
        payload[f"layer_curves/{p}"] = wandb.plot.line_series(
            xs=xs, ys=[col(f"{b}_{p}") for b, _ in present], keys=[label for _, label in present],
            title=f"{p}: mass per layer (head mean)", xname="layer")
    stats = [k for k in ("js", "tv", "top1", "spearman", "self", "self_top1") if k in rows[0]]
    if stats:
        payload["layer_curves/discrepancy"] = wandb.plot.line_series(
            xs=xs, ys=[col(k) for k in stats], keys=stats, title="discrepancy and own share per layer (head mean)",
            xname="layer")
    logger.experiment.log(payload)

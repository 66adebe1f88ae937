"""One fine-tuning run: compose the pieces from the Hydra config, ``Trainer.fit``, save the model folder.

``train.py`` calls :func:`run` with the composed config. The run directory receives
``checkpoints/*.ckpt`` (Lightning), ``model/`` (``save_pretrained`` of the classifier and the
tokenizer: ``analyze.py model=hf model.name_or_path=RUN/model`` analyses it) and ``metrics.json``
(``"kind": "finetune"``: the best checkpoint's validation metrics and the per-epoch history).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from bertstory.cli import check_writable
from bertstory.errors import BertstoryError
from bertstory.files import write_json_atomic
from bertstory.finetune.module import FineTuneModule, build_classifier
from bertstory.run.distributed import end_process_group, relaunch_as_hydra_job
from bertstory.run.loggers import build_logger, finish_wandb_run

log = logging.getLogger(__name__)

SCHEMA = 1
KIND = "finetune"


class History(Callback):
    """Per-epoch training loss and validation metrics (rank 0's view of the synced values)."""

    def __init__(self):
        self.epochs: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch}
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.startswith("val/") or key == "train/loss_epoch":
                row[key.replace("_epoch", "")] = float(value)
        self.epochs.append(row)


def check_checkpoint(path: str, module: FineTuneModule) -> str:
    """``path`` if it is a Lightning checkpoint of this model and task, else a BertstoryError with the fix."""
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        found = sorted(Path(path).glob("checkpoints/*.ckpt")) + sorted(Path(path).glob("*.ckpt"))
        hint = f" such as {found[0]}" if found else " (RUN/checkpoints/*.ckpt)"
        raise BertstoryError(f"resume={path} is a folder: give a .ckpt file written by train.py{hint}")
    if not os.path.isfile(path):
        raise BertstoryError(f"no checkpoint at resume={path}: give a .ckpt file written by train.py")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors: all mean "not a checkpoint we can read"
        raise BertstoryError(f"resume={path} is not a Lightning checkpoint ({type(e).__name__}): give a .ckpt "
                             "file written by train.py (RUN/checkpoints/*.ckpt)") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "epoch" not in ckpt:
        raise BertstoryError(f"resume={path} is not a Lightning checkpoint (no state_dict/epoch): give a .ckpt "
                             "file written by train.py (RUN/checkpoints/*.ckpt)")
    ours, theirs = module.state_dict(), ckpt["state_dict"]
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if a is None or b is None or tuple(a.shape) != tuple(b.shape):
            got = "missing" if b is None else f"shape {tuple(b.shape)}"
            here = "missing" if a is None else f"shape {tuple(a.shape)}"
            raise BertstoryError(f"resume={path} was trained with another model or task ({key}: {got} there, "
                                 f"{here} here): resume with the model and data it was trained on")
    return path


def build_callbacks(cfg: DictConfig, module: FineTuneModule, run_dir: Path, with_logger: bool) -> list[Callback]:
    """Best-checkpoint keeper, optional early stopping, history, and LR monitor when there is a logger."""
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best-epoch{epoch:02d}", auto_insert_metric_name=False,
        monitor=module.monitor, mode=module.monitor_mode, save_top_k=1, save_last=bool(cfg.checkpoint.save_last),
    )
    callbacks: list[Callback] = [checkpoint, History()]
    patience = cfg.early_stopping.patience
    if patience is not None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise BertstoryError(f"early_stopping.patience must be a positive integer or null, got {patience!r}")
        callbacks.append(EarlyStopping(monitor=module.monitor, mode=module.monitor_mode, patience=patience))
    if with_logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return callbacks


def finite(value: float) -> float | None:
    """JSON-safe float (None for nan or inf)."""
    value = float(value)
    return value if math.isfinite(value) else None


def run(cfg: DictConfig, run_dir: str | os.PathLike) -> dict | None:
    """Fine-tune as described by ``cfg`` into ``run_dir``; returns metrics.json's dict on rank 0."""
    run_dir = Path(run_dir)
    check_writable(run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    encoder = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, tokenizer=encoder.tokenizer)
    datamodule.prepare_texts()
    task = datamodule.task
    model = build_classifier(encoder, task.num_labels, task.labels, seed=cfg.seed)
    metric = cfg.checkpoint.monitor or task.metric
    module = FineTuneModule(model, task.num_labels, metric=metric, **OmegaConf.to_container(cfg.optim, resolve=True))
    resume = check_checkpoint(cfg.resume, module) if cfg.resume else None
    logger = build_logger(cfg)
    callbacks = build_callbacks(cfg, module, run_dir, logger is not None)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger if logger else False)
    if logger is not None:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    checkpoint = callbacks[0]
    start = time.perf_counter()
    with relaunch_as_hydra_job(trainer.num_devices):  # DDP: the other processes run this same Hydra job
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        seconds = time.perf_counter() - start
        best = checkpoint.best_model_path or None  # the same path on every rank
        final = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    end_process_group()  # the last collective call: a next run in this process (multirun) starts afresh
    if trainer.global_rank != 0:
        return None
    model_dir = run_dir / "model"
    module.model.save_pretrained(model_dir)
    encoder.tokenizer.save_pretrained(model_dir)
    history = callbacks[1].epochs
    metrics = {
        "schema": SCHEMA,
        "kind": KIND,
        "model": {"name": encoder.name, "base": str(cfg.model.name_or_path), "layers": encoder.layers,
                  "heads": encoder.heads, "hidden": encoder.hidden},
        "task": {"name": task.name, "num_labels": task.num_labels, "labels": list(task.labels),
                 "metric": metric},
        "data": dict(datamodule.stats),
        "validation": {k.removeprefix("val/"): finite(v) for k, v in sorted(final.items())},
        "majority": max(datamodule.stats["validation_label_counts"]) / datamodule.stats["validation"],
        "best": {"monitor": module.monitor, "score": finite(checkpoint.best_model_score)
                 if checkpoint.best_model_score is not None else None,
                 "epoch": best_epoch(history, module.monitor, module.monitor_mode),
                 "checkpoint": os.path.relpath(best, run_dir) if best else None},
        "epochs": len(history),
        "history": [{k: finite(v) if k != "epoch" else v for k, v in row.items()} for row in history],
        "seconds": round(seconds, 2),
        "model_dir": "model",
    }
    write_json_atomic(metrics, run_dir / "metrics.json")
    print(format_history(metrics))
    print(f"fine-tuned {encoder.name} on {task.name} in {seconds:.1f} s; model in {model_dir}; analyse it with\n"
          f"  python analyze.py model=hf model.name_or_path={model_dir}")
    if logger is not None:
        logger.log_metrics({f"final/{k}": v for k, v in metrics["validation"].items() if v is not None},
                           step=int(trainer.global_step))
        logger.save()
        finish_wandb_run(logger)  # the next job of a multirun gets a W&B run of its own
    return metrics


def best_epoch(history: list[dict], monitor: str, mode: str) -> int | None:
    """The first epoch with the best monitored value (the one ModelCheckpoint keeps)."""
    rows = [r for r in history if r.get(monitor) is not None and math.isfinite(r[monitor])]
    if not rows:
        return None
    pick = max if mode == "max" else min
    return pick(rows, key=lambda r: r[monitor])["epoch"]  # max/min return the first of equal values


def format_history(metrics: dict) -> str:
    """A plain-text table: one row per epoch (training loss, validation metrics), then the kept checkpoint."""
    cols = ["train/loss", "val/loss", "val/acc", "val/f1", "val/mcc"]
    lines = ["epoch  " + "  ".join(f"{c:>10}" for c in cols)]
    for row in metrics["history"]:
        cells = [f"{row[c]:10.4f}" if row.get(c) is not None else f"{'-':>10}" for c in cols]
        lines.append(f"{row['epoch']:5d}  " + "  ".join(cells))
    v = metrics["validation"]
    lines.append(f"kept epoch {metrics['best']['epoch']} ({metrics['best']['monitor']}): "
                 + ", ".join(f"{k} {x:.4f}" for k, x in v.items() if x is not None)
                 + f"; majority-class accuracy {metrics['majority']:.4f}")
    return "\n".join(lines)

"""One analysis run: compose the pieces from the Hydra config, predict, write metrics.json, log.

``analyze.py`` calls :func:`run` with the composed config; everything it needs is here.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bertstory.attribution import build_attribution
from bertstory.cli import build_logger, check_writable
from bertstory.distributed import (
    RankWork,
    check_partition,
    end_process_group,
    gather_objects,
    log_rank_work,
    relaunch_as_hydra_job,
)
from bertstory.errors import BertstoryError
from bertstory.module import AnalysisModule
from bertstory.report import build as build_report
from bertstory.report import check_heads, log_wandb_media
from bertstory.resume import data_fingerprint, previous_run, save_record
from bertstory.summary import format_table, layer_summary
from bertstory.sweep import finish_wandb_run
from bertstory.writer import MapWriter, write_json_atomic

log = logging.getLogger(__name__)

SCHEMA = 1


def run(cfg: DictConfig, run_dir: str | os.PathLike) -> dict | None:
    """Run the analysis described by ``cfg`` into ``run_dir``; returns metrics.json's dict on rank 0."""
    run_dir = Path(run_dir)
    check_writable(run_dir)
    previous = previous_run(cfg, run_dir)  # resume=true: what is done; else refuse to overwrite shards
    torch.manual_seed(cfg.seed)
    encoder = instantiate(cfg.model)
    check_heads(report_cfg(cfg).get("heads") or [], encoder.layers, encoder.heads)  # fail before the work
    max_positions = getattr(encoder.config, "max_position_embeddings", None)
    if max_positions is not None and cfg.data.max_length > max_positions:
        raise BertstoryError(f"data.max_length={cfg.data.max_length} is above the model's position limit "
                             f"{max_positions}: lower data.max_length")
    method = build_attribution(**OmegaConf.to_container(cfg.attribution, resolve=True))
    datamodule = instantiate(cfg.data, tokenizer=encoder.tokenizer)
    datamodule.prepare_texts()
    stats = datamodule.stats
    fingerprint = data_fingerprint(datamodule.input_ids, datamodule.token_type_ids)
    previous.check_data(stats, fingerprint)
    datamodule.skip_segments(previous.done)
    module = AnalysisModule(encoder, method, tau=cfg.persistence.tau, kappa=cfg.persistence.kappa,
                            keep_maps=cfg.writer.max_segments)
    writer = MapWriter(run_dir, dtype=cfg.writer.dtype,
                       metadata={"model": encoder.name, "method": method.name, "schema": SCHEMA},
                       first_batch=previous.next_batch)
    logger = build_logger(cfg)
    work = RankWork()
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=[writer, work], logger=logger if logger else False)
    if trainer.global_rank == 0:
        if previous.record is None:
            save_record(run_dir, cfg, stats, fingerprint)
        previous.seed(module.metrics, method)  # rank 0 only: the DDP sum counts the finished batches once
    for rank, (segments, tokens) in enumerate(datamodule.rank_summary(trainer.world_size)):
        if trainer.global_rank == 0:
            log.info("rank %d: %d segments, %d tokens", rank, segments, tokens)
    start = time.perf_counter()
    with relaunch_as_hydra_job(trainer.num_devices):  # DDP: the other processes run this same Hydra job
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    seconds = time.perf_counter() - start
    per_rank = work.gather()  # collective under DDP
    zero_rows = sum(gather_objects(method.zero_rows))  # collective under DDP
    blocks = module.metrics.compute_block()  # collective under DDP: every rank computes
    end_process_group()  # the last collective call: a next run in this process (multirun) starts afresh
    metrics = {
        "schema": SCHEMA,
        "model": encoder.info(),
        "method": method.info(),
        "data": dict(stats),
        **blocks,
    }
    if trainer.global_rank != 0:
        return None
    log_rank_work(per_rank)
    check_partition([w["indices"] for w in per_rank] + [sorted(previous.done)], stats["segments"])
    metrics["method"]["zero_rows"] = zero_rows  # summed over the processes
    write_json_atomic(metrics, run_dir / "metrics.json")
    summary = layer_summary(metrics)
    print(format_table(metrics, summary))
    print(f"analysed {stats['segments']} segments ({stats['tokens']} tokens) in {seconds:.1f} s; "
          f"results in {run_dir}")
    figures = []
    if report_cfg(cfg).get("enabled", True):
        report = build_report(run_dir, metrics, cfg)
        figures = report.figures
        print(f"report: {report.html}")
    if logger is not None:
        log_to_logger(logger, cfg, metrics, summary, figures)
        finish_wandb_run(logger)  # the next job of a multirun gets a W&B run of its own
    return metrics


def report_cfg(cfg: DictConfig) -> dict:
    """The ``report`` block of the config (``{}`` when absent)."""
    block = cfg.get("report")
    return OmegaConf.to_container(block, resolve=True) if block is not None else {}


def log_to_logger(logger, cfg: DictConfig, metrics: dict, summary: dict, figures: list | None = None) -> None:
    """Send the config, per-layer summaries and the LxH tables to the logger (after the epoch); on W&B
    also the report's figures as images and the per-layer summaries as line charts."""
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    for layer, row in enumerate(summary["layers"]):
        logger.log_metrics({f"layer/{k}": v for k, v in row.items() if v is not None}, step=layer)
    if hasattr(logger, "log_table"):
        for name, table in lxh_tables(metrics).items():
            logger.log_table(key=name, columns=["layer"] + [f"head{h}" for h in range(len(table[0]))],
                             data=[[layer] + row for layer, row in enumerate(table)])
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        log_wandb_media(logger, figures or [], metrics)
    logger.finalize("success")


def lxh_tables(metrics: dict) -> dict[str, list[list]]:
    """Every LxH table of metrics.json by a flat name, e.g. ``attention/patterns/cls``."""
    tables = {}
    for block in ("attention", "attribution", "discrepancy"):
        for key, value in metrics.get(block, {}).items():
            if key == "patterns":
                for p, t in value.items():
                    tables[f"{block}/patterns/{p}"] = t
            else:
                tables[f"{block}/{key}"] = value
    return tables

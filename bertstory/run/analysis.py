"""One analysis run: compose the pieces from the Hydra config, predict, write metrics.json, report, log.

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
from omegaconf import DictConfig

from bertstory.attribution import Attribution, build_method
from bertstory.cli import check_writable
from bertstory.errors import BertstoryError
from bertstory.forking import beside
from bertstory.models import Encoder
from bertstory.results.report import draw as draw_report
from bertstory.results.report import write_html as write_report
from bertstory.results.report_options import ReportOptions, check_heads
from bertstory.results.run_metrics import SCHEMA, RunMetrics
from bertstory.results.summary import format_table
from bertstory.run.distributed import (
    RankWork,
    check_partition,
    end_process_group,
    log_rank_work,
    relaunch_as_hydra_job,
)
from bertstory.run.loggers import build_logger, finish_wandb_run, log_results
from bertstory.run.module import AnalysisModule
from bertstory.run.resume import data_fingerprint, previous_run, save_record
from bertstory.run.writer import MapWriter
from bertstory.viewer import ViewerOptions
from bertstory.viewer import build_after_run as build_viewer

log = logging.getLogger(__name__)


def check_model_fits(encoder: Encoder, cfg: DictConfig) -> None:
    """Fail before the work when the report's heads or the data's length do not fit the model."""
    check_heads(ReportOptions.from_config(cfg).heads, encoder.layers, encoder.heads)
    ViewerOptions.from_config(cfg)  # a bad viewer block fails here, not after the work
    max_positions = getattr(encoder.config, "max_position_embeddings", None)
    if max_positions is not None and cfg.data.max_length > max_positions:
        raise BertstoryError(f"data.max_length={cfg.data.max_length} is above the model's position limit "
                             f"{max_positions}: lower data.max_length")


def run(cfg: DictConfig, run_dir: str | os.PathLike) -> dict | None:
    """Run the analysis described by ``cfg`` into ``run_dir``; returns metrics.json's dict on rank 0."""
    run_dir = Path(run_dir)
    check_writable(run_dir)
    previous = previous_run(cfg, run_dir)  # resume=true: what is done; else refuse to overwrite shards
    torch.manual_seed(cfg.seed)
    encoder: Encoder = instantiate(cfg.model)
    check_model_fits(encoder, cfg)
    method: Attribution = build_method(cfg.attribution)
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
        previous.seed(module.metrics)  # rank 0 only: the DDP sum counts the finished batches once
        for rank, (segments, tokens) in enumerate(datamodule.rank_summary(trainer.world_size)):
            log.info("rank %d: %d segments, %d tokens", rank, segments, tokens)
    start = time.perf_counter()
    with relaunch_as_hydra_job(trainer.num_devices):  # DDP: the other processes run this same Hydra job
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    seconds = time.perf_counter() - start
    per_rank = work.gather()  # collective under DDP
    blocks = module.metrics.compute_block()  # collective under DDP: every rank computes
    zero_rows = module.metrics.zero_row_count  # collective under DDP
    end_process_group()  # the last collective call: a next run in this process (multirun) starts afresh
    if trainer.global_rank != 0:
        return None
    log_rank_work(per_rank)
    check_partition([w["indices"] for w in per_rank] + [sorted(previous.done)], stats["segments"])
    method_block = {**method.info(), "zero_rows": zero_rows}
    metrics = RunMetrics({"schema": SCHEMA, "model": encoder.info(), "method": method_block, "data": dict(stats),
                          **blocks})
    metrics.write(run_dir)
    print(format_table(metrics))
    print(f"analysed {stats['segments']} segments ({stats['tokens']} tokens) in {seconds:.1f} s; "
          f"results in {run_dir}")
    finish(cfg, run_dir, metrics, logger)
    return metrics.raw


def finish(cfg: DictConfig, run_dir: Path, metrics: RunMetrics, logger) -> None:
    """After metrics.json: viewer.html (in a forked process, beside the figures), the report (figures, then
    report.html linking the viewer) and the logger."""
    figures, notes, run = [], [], None
    with beside(build_viewer, run_dir, cfg) as viewer:
        if ReportOptions.from_config(cfg).enabled:
            figures, notes, run = draw_report(run_dir, metrics, cfg)
    print(viewer.get())
    if run is not None:
        print(f"report: {write_report(run, figures, notes)}")
    if logger is not None:
        log_results(logger, cfg, metrics, figures)
        finish_wandb_run(logger)  # the next job of a multirun gets a W&B run of its own

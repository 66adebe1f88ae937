"""Sweeps (Hydra multirun): one row per run in ``summary.csv`` and the per-layer discrepancy of all runs
in ``summary.png``, written into the multirun folder when the sweep ends. Each per-layer column
``<stat>_L<l>`` has its segment-clustered standard error in ``<stat>_se_L<l>`` (runs with SEs). When the
runs saved maps of the same segments (e.g. ``-m attribution=exact,alti,rollout``), also their
``agreement.json`` and ``agreement.png`` (:mod:`bertstory.results.agreement`).

``conf/analyze.yaml`` registers :class:`SweepSummary` as a Hydra callback. To summarise a sweep folder
again by hand: ``python -m bertstory.sweep MULTIRUN_DIR``.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bertstory.errors import BertstoryError
from bertstory.results.agreement import AGREEMENT_JSON, write_agreement
from bertstory.results.run_metrics import RunMetrics
from bertstory.results.summary import layer_summary
from bertstory.stats.clustered import Z95
from bertstory.stats.patterns import PATTERNS

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
SUMMARY_PNG = "summary.png"
RUN_COLUMNS = ["job", "overrides", "status"]
FACT_COLUMNS = ["model_name", "method", "layers", "heads", "segments", "tokens"]


def layer_columns(summary: dict) -> list[str]:
    """The per-layer statistics that go into summary.csv: ``js`` (when present), then ``att_<p>``, ``attr_<p>``."""
    names = ["js"] + [f"{kind}_{p}" for p in PATTERNS for kind in ("att", "attr")]
    first = summary["layers"][0] if summary["layers"] else {}
    return [n for n in names if n in first]


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a multirun folder (those with a ``.hydra/`` inside), in job-number order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sorted(dirs, key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))


def job_overrides(job_dir: Path) -> list[str]:
    """The task overrides of one job, as Hydra saved them in ``.hydra/overrides.yaml``."""
    path = job_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []


def override_items(overrides: list[str]) -> dict[str, str]:
    """``{"model": "tiny", "data.limit": "10"}`` from ``["model=tiny", "data.limit=10"]`` (``+``/``~`` dropped)."""
    items = {}
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        items[key] = value
    return items


def summary_row(job_dir: Path) -> dict[str, Any]:
    """One job's row: its overrides (also one column per overridden key), run facts and per-layer means."""
    overrides = job_overrides(job_dir)
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(overrides)}
    row.update(override_items(overrides))
    metrics_path = job_dir / "metrics.json"
    if not metrics_path.is_file():
        row["status"] = "no metrics.json"
        return row
    metrics = RunMetrics.read(metrics_path)
    row["status"] = "ok"
    row.update(model_name=metrics.model_name, method=metrics.method_name, layers=metrics.layers,
               heads=metrics.heads, segments=metrics.data["segments"], tokens=metrics.data["tokens"])
    summary = layer_summary(metrics)
    for name in layer_columns(summary):
        for layer, (values, errors) in enumerate(zip(summary["layers"], summary["stderr"], strict=True)):
            row[f"{name}_L{layer}"] = values[name]
            if metrics.has_stderr:
                row[f"{name}_se_L{layer}"] = errors[name]
    return row


def is_layer_column(column: str) -> bool:
    """Whether a summary column is a per-layer statistic (``js_L0``, ``att_cls_L3``, ...)."""
    return re.fullmatch(r"(js|attr?_[a-z]+)(_se)?_L\d+", column) is not None


def override_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The overridden keys of a sweep's rows, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(c for c in row if c not in RUN_COLUMNS + FACT_COLUMNS and not is_layer_column(c)))
    return list(seen)


def ordered_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Columns in a fixed order: run columns, override keys, facts, then per-layer statistics by layer."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    per_layer = [c for c in seen if is_layer_column(c)]
    fixed = RUN_COLUMNS + override_keys(rows) + [c for c in FACT_COLUMNS if c in seen]

    def layer_key(column: str) -> tuple[int, int]:
        return int(column.rpartition("_L")[2]), per_layer.index(column)

    return fixed + sorted(per_layer, key=layer_key)


def write_summary_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """``summary.csv``: one row per run; an empty cell where a run has no such value (e.g. fewer layers)."""
    columns = ordered_columns(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


def run_labels(rows: list[dict[str, Any]]) -> list[str]:
    """Short legend labels: the overrides whose values differ between the runs (else the job number)."""
    keys = override_keys(rows)
    varying = [k for k in keys if len({row.get(k) for row in rows}) > 1]
    return [" ".join(f"{k}={row[k]}" for k in varying if k in row) or f"job {row['job']}" for row in rows]


def plot_summary(rows: list[dict[str, Any]], path: Path) -> None:
    """``summary.png``: mean JS divergence per layer, one line per run (attention-only runs have none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    plotted = 0
    for row, label in zip(rows, run_labels(rows), strict=True):
        layers = row.get("layers") or 0
        values = [row.get(f"js_L{layer}") for layer in range(layers)]
        if not values or any(v is None for v in values):
            continue
        line = ax.plot(range(layers), values, marker="o", label=label)[0]
        errors = [row.get(f"js_se_L{layer}") for layer in range(layers)]
        if all(e is not None for e in errors):
            ax.fill_between(range(layers), [v - Z95 * e for v, e in zip(values, errors, strict=True)],
                            [v + Z95 * e for v, e in zip(values, errors, strict=True)], color=line.get_color(),
                            alpha=0.2, linewidth=0)
        plotted += 1
    ax.set_xlabel("layer")
    ax.set_ylabel("attention vs attribution, mean JS (bits)")
    ax.set_title(f"per-layer discrepancy across {plotted} run(s)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if plotted:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no run with attribution", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize_sweep(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``summary.csv`` and ``summary.png`` into a multirun folder; returns the rows."""
    sweep_dir = Path(sweep_dir)
    rows = [summary_row(d) for d in job_dirs(sweep_dir)]
    if not rows:
        log.warning("no job folders in %s: no sweep summary written", sweep_dir)
        return rows
    write_summary_csv(rows, sweep_dir / SUMMARY_CSV)
    plot_summary(rows, sweep_dir / SUMMARY_PNG)
    sweep_agreement(sweep_dir, rows)
    failed = [r["job"] for r in rows if r["status"] != "ok"]
    if failed:
        log.warning("jobs without metrics.json (failed or still running): %s", ", ".join(failed))
    log.info("sweep summary of %d runs: %s", len(rows), sweep_dir / SUMMARY_CSV)
    return rows


def sweep_agreement(sweep_dir: Path, rows: list[dict[str, Any]]) -> dict | None:
    """``agreement.json`` and ``agreement.png`` of the sweep's finished runs, when they are over the same segments."""
    done = [sweep_dir / row["job"] for row in rows if row["status"] == "ok"]
    if len(done) < 2:
        return None
    try:
        result = write_agreement(done, sweep_dir)
    except BertstoryError as e:
        log.info("no %s for this sweep: %s", AGREEMENT_JSON, e)
        return None
    log.info("agreement of %d runs: %s", len(done), sweep_dir / AGREEMENT_JSON)
    return result


class SweepSummary(Callback):
    """Hydra callback: after a multirun, summarise its runs into the multirun folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = summarize_sweep(config.hydra.sweep.dir)
        if rows:
            print(f"sweep summary of {len(rows)} runs: {Path(config.hydra.sweep.dir) / SUMMARY_CSV}")


def main(argv: list[str] | None = None) -> None:
    """``python -m bertstory.sweep MULTIRUN_DIR``: write summary.csv and summary.png of a multirun folder again."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        sys.exit("usage: python -m bertstory.sweep MULTIRUN_DIR (a folder written by analyze.py -m)")
    rows = summarize_sweep(argv[0])
    print(f"{len(rows)} runs -> {Path(argv[0]) / SUMMARY_CSV}")

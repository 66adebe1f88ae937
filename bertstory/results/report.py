"""A run's self-contained ``report.html``: its numbers, its figures (inline) and its config.

``python -m bertstory.report RUN_DIR`` rebuilds the figures and the page from ``metrics.json`` and the
saved maps without recomputing anything.
"""

from __future__ import annotations

import base64
import html
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bertstory.files import write_text_atomic
from bertstory.results.figures import FigureFile, make_figures
from bertstory.results.report_options import ReportOptions, check_formats
from bertstory.results.run import Results
from bertstory.results.run_metrics import RunMetrics
from bertstory.results.summary import layer_summary, plus_minus
from bertstory.stats.patterns import PATTERNS


@dataclass
class Report:
    """What :func:`build` wrote."""

    html: Path
    figures: list[FigureFile]


CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 2px 7px; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #444; } pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def table_html(header: Sequence[str], rows: Sequence[Sequence], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns left-aligned."""
    cls = [' class="l"' if i < left else "" for i in range(len(header))]
    out = ["<table><tr>" + "".join(f"<th{c}>{html.escape(h)}</th>" for c, h in zip(cls, header, strict=True)) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{c}>{_fmt(v)}</td>" for c, v in zip(cls, row, strict=True)) + "</tr>")
    return "\n".join(out) + "</table>"


def layer_tables(metrics: RunMetrics) -> str:
    """The per-layer numbers (head means ± segment-clustered SE): discrepancy and entropy, then pattern
    masses, then the lift and which patterns persist (also by the 95% interval test)."""
    summary = layer_summary(metrics)
    rows_, errs = summary["layers"], summary["stderr"]
    with_attr = metrics.has_attribution
    cols = ["att_entropy"]
    if with_attr:
        cols += ["attr_entropy", "js", "tv", "top1", "spearman", "self", "self_top1"]
    note = " ± segment-clustered standard error" if metrics.has_stderr else ""
    parts = [f"<h3>Per layer (head means{note})</h3>",
             table_html(["layer"] + cols, [[layer] + [plus_minus(r[c], e[c]) for c in cols]
                                           for layer, (r, e) in enumerate(zip(rows_, errs, strict=True))])]
    blocks = ["att", "attr", "uniform"] if with_attr else ["att", "uniform"]
    header = ["layer"] + [f"{p} {b}" for p in PATTERNS for b in blocks]
    rows = [[layer] + [plus_minus(r[f"{b}_{p}"], e[f"{b}_{p}"]) for p in PATTERNS for b in blocks]
            for layer, (r, e) in enumerate(zip(rows_, errs, strict=True))]
    parts += [f"<h3>Pattern mass per layer (head means{note}: attention, attribution, uniform baseline)</h3>",
              table_html(header, rows)]
    if metrics.persistence is not None:
        pers = metrics.persistence
        L = metrics.layers
        with_ci = "persists_ci" in pers
        rows = []
        for p in PATTERNS:
            se = pers.get("lift_stderr", {}).get(p) or [None] * L
            row = [p] + [plus_minus(v, s, digits=2) for v, s in zip(pers["lift"][p], se, strict=True)]
            row.append("yes" if pers["persists"][p] else "no")
            if with_ci:
                row.append("yes" if pers["persists_ci"][p] else "no")
            rows.append(row)
        header = ["pattern"] + [f"L{layer}" for layer in range(L)] + ["persists"] + (["persists (95% CI)"]
                                                                                     if with_ci else [])
        parts += [f"<h3>Attribution lift (persists when &ge; {pers['kappa']} in every layer"
                  + ("; by the 95% CI when the lower end of the interval is" if with_ci else "") + ")</h3>",
                  table_html(header, rows)]
    return "\n".join(parts)


def overview_html(metrics: RunMetrics) -> str:
    """Model, method and data counts."""
    rows = [[f"model.{k}", v] for k, v in metrics.model.items()]
    rows += [[f"method.{k}", v] for k, v in metrics.method.items()]
    rows += [[f"data.{k}", v] for k, v in metrics.data.items()]
    return table_html(["field", "value"], rows, left=2)


def figure_html(fig: FigureFile, run_dir: Path) -> str:
    """A <figure> with the PNG embedded as base64 and a relative link to the vector file."""
    data = base64.b64encode(fig.png.read_bytes()).decode("ascii")
    vector = [f'<a href="{html.escape(os.path.relpath(p, run_dir))}">{fmt}</a>'
              for fmt, p in fig.paths.items() if fmt != "png"]
    name = html.escape(fig.name)
    return (f'<figure id="{name}"><img src="data:image/png;base64,{data}" alt="{name}">'
            f"<figcaption><b>{html.escape(fig.name)}</b>: {html.escape(fig.caption)} (vector: {', '.join(vector)})"
            "</figcaption></figure>")


def viewer_link(run_dir: Path) -> str:
    """A relative link to the run's interactive ``viewer.html`` (a note on how to make it when it is absent)."""
    if (run_dir / "viewer.html").is_file():
        return ('<p id="viewer-link"><a href="viewer.html">Open the interactive viewer</a> (viewer.html: any saved '
                "segment, layer and head, attention beside attribution).</p>")
    return (f"<p>No viewer.html here: <code>python -m bertstory.viewer {html.escape(str(run_dir))}</code> "
            "writes it.</p>")


def write_html(run: Results, figures: list[FigureFile], notes: list[str]) -> Path:
    """Write ``report.html``: one file, everything inline, nothing loaded from the network."""
    m = run.metrics
    title = f"bertstory: {m.model_name}, {m.method_name}"
    config = OmegaConf.to_yaml(run.config) if run.config is not None else "(no .hydra/config.yaml)"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>Run directory <code>{html.escape(str(run.run_dir))}</code>. Statistics are token-weighted means "
            "over every non-padding query of every segment (DESIGN.md).</p>",
            viewer_link(run.run_dir),
            "<h2>Run</h2>", overview_html(m),
            "<h2>Numbers</h2>", layer_tables(m),
            "<h2>Figures</h2>"]
    body += [f"<p>{html.escape(n)}</p>" for n in notes]
    body += [figure_html(f, run.run_dir) for f in figures]
    body += ["<h2>Config</h2>", f"<pre>{html.escape(config)}</pre>"]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return write_text_atomic(page, run.run_dir / "report.html")


def build(run_dir: str | os.PathLike, metrics: RunMetrics | None = None, cfg: DictConfig | None = None,
          heads: Sequence[Sequence[int]] | None = None, segments: int | None = None,
          formats: Sequence[str] | None = None) -> Report:
    """Draw the figures and write ``report.html`` for the run in ``run_dir``.

    ``metrics``/``cfg`` default to the run's ``metrics.json`` and ``.hydra/config.yaml``;
    ``heads``/``segments``/``formats`` default to the config's ``report`` block.
    """
    figures, notes, run = draw(run_dir, metrics, cfg, heads, segments, formats)
    return Report(write_html(run, figures, notes), figures)


def draw(run_dir: str | os.PathLike, metrics: RunMetrics | None = None, cfg: DictConfig | None = None,
         heads: Sequence[Sequence[int]] | None = None, segments: int | None = None,
         formats: Sequence[str] | None = None) -> tuple[list[FigureFile], list[str], Results]:
    """The figures of :func:`build` without the page: ``(figures, notes, run)``; :func:`write_html` then writes
    ``report.html`` (an analysis run builds its viewer in between, beside the figures)."""
    run = Results(run_dir, metrics)
    if cfg is not None:
        run.config = cfg
    options = ReportOptions.from_config(run.config)
    figures, notes = make_figures(run, options.heads if heads is None else heads,
                                  options.segments if segments is None else segments,
                                  options.formats if formats is None else check_formats(formats))
    return figures, notes, run


# --------------------------------------------------------------------------- CLI


def parse_head(text: str) -> list[int]:
    """``"5,3"`` -> ``[5, 3]``."""
    try:
        layer, head = (int(v) for v in text.split(","))
    except ValueError as e:
        import argparse

        raise argparse.ArgumentTypeError(f"{text!r} is not LAYER,HEAD (e.g. 5,3)") from e
    return [layer, head]


def main(argv: list[str] | None = None) -> None:
    """``python -m bertstory.report RUN_DIR [--heads L,H ...] [--segments N]``: rebuild figures and report.html."""
    import argparse

    from bertstory.cli import user_errors

    parser = argparse.ArgumentParser(prog="python -m bertstory.report", description=main.__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--heads", nargs="*", type=parse_head, default=None, metavar="L,H",
                        help="extra heads for the segment figures (default: the run's report.heads)")
    parser.add_argument("--segments", type=int, default=None, help="how many segments get figures")
    parser.add_argument("--formats", nargs="+", default=None, metavar="FMT",
                        help="figure files besides png: pdf, svg (default: the run's report.formats)")
    args = parser.parse_args(argv)
    with user_errors():
        report = build(args.run_dir, heads=args.heads, segments=args.segments, formats=args.formats)
    print(f"{len(report.figures)} figures in {report.html.parent / 'figures'}; report: {report.html}")


if __name__ == "__main__":
    sys.exit(main())

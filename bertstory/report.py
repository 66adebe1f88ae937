"""Figures (``figures/*.png`` + ``*.pdf``) and a self-contained ``report.html`` for a finished run.

``python -m bertstory.report RUN_DIR`` rebuilds both from ``metrics.json`` and the saved maps
without recomputing anything. Figures are drawn on plain ``matplotlib.figure.Figure`` objects
(Agg rendering, no pyplot state), so building a report never touches a display.

1. ``layer_patterns``: per layer, each pattern's mass under attention, attribution and the
   uniform baseline (head means, with the range over heads shaded), one panel per pattern.
2. ``heads_js`` and ``heads_patterns``: LxH heatmaps of the JS discrepancy and of each
   pattern's attention and attribution mass.
3. ``segment_{k}``: attention and attribution side by side for chosen heads (highest and
   lowest JS, plus ``report.heads``) on the first saved segments, tokens on both axes.
4. ``own_share``: the own-token share of attribution ``a_ii`` per layer, median and
   quartiles over the tokens (and heads) of the segments whose maps were saved.

With ``attribution=none`` only the attention figures are made.
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

import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from bertstory.errors import BertstoryError
from bertstory.patterns import PATTERNS
from bertstory.results import Results
from bertstory.summary import layer_summary

FORMATS = ("png", "pdf")
DPI = 110
DEFAULT_SEGMENTS = 3


@dataclass
class FigureFile:
    """One written figure: its name (file stem), caption and paths per format."""

    name: str
    caption: str
    paths: dict[str, Path]

    @property
    def png(self) -> Path:
        return self.paths["png"]


@dataclass
class Report:
    """What :func:`build` wrote."""

    html: Path
    figures: list[FigureFile]


# --------------------------------------------------------------------------- helpers


def as_array(table: list[list[float | None]]) -> np.ndarray:
    """An LxH table of metrics.json as a float array, None -> nan."""
    return np.array([[math.nan if v is None else v for v in row] for row in table], dtype=float)


def save(fig: Figure, out_dir: Path, name: str, caption: str) -> FigureFile:
    """Write ``fig`` as ``out_dir/name.{png,pdf}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in FORMATS:
        paths[fmt] = out_dir / f"{name}.{fmt}"
        fig.savefig(paths[fmt], dpi=DPI, bbox_inches="tight")
    return FigureFile(name, caption, paths)


def heatmap(fig: Figure, ax, table: np.ndarray, title: str, cmap: str = "viridis", vmin: float | None = None,
            vmax: float | None = None, annotate: bool | None = None, marks: Sequence[tuple[int, int]] = ()) -> None:
    """One LxH heatmap (layers as rows, heads as columns) with a colour bar; values written in small tables."""
    L, H = table.shape
    im = ax.imshow(table, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("head", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    ax.set_xticks(range(H))
    ax.set_yticks(range(L))
    ax.tick_params(labelsize=6)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
    if annotate if annotate is not None else L * H <= 16 * 12:
        for (layer, head), v in np.ndenumerate(table):
            if math.isfinite(v):
                r, g, b, _ = im.cmap(im.norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(head, layer, f"{v:.2f}", ha="center", va="center", fontsize=5,
                        color="white" if dark else "black")
    for layer, head in marks:
        ax.add_patch(_box(layer, head))


def _box(layer: int, head: int):
    from matplotlib.patches import Rectangle

    return Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5)


def choose_heads(metrics: dict, extra: Sequence[Sequence[int]] = ()) -> list[tuple[str, tuple[int, int]]]:
    """The heads shown in the segment figures: highest- and lowest-JS heads (without attribution:
    highest- and lowest-entropy attention), then ``extra``; duplicates dropped."""
    if "discrepancy" in metrics:
        table, what = as_array(metrics["discrepancy"]["js"]), "JS"
    else:
        table, what = as_array(metrics["attention"]["entropy"]), "attention entropy"
    chosen = []
    if np.isfinite(table).any():
        hi = np.unravel_index(np.nanargmax(table), table.shape)
        lo = np.unravel_index(np.nanargmin(table), table.shape)
        chosen += [(f"highest {what}", (int(hi[0]), int(hi[1]))), (f"lowest {what}", (int(lo[0]), int(lo[1])))]
    chosen += [("chosen", (int(layer), int(head))) for layer, head in extra]
    seen, out = set(), []
    for label, head in chosen:
        if head not in seen:
            seen.add(head)
            out.append((label, head))
    return out


def check_heads(heads: Sequence[Sequence[int]], layers: int, n_heads: int) -> list[tuple[int, int]]:
    """Validate ``report.heads`` (a list of ``[layer, head]``, 0-based) against the model's shape."""
    out = []
    for entry in heads or ():
        if len(entry) != 2 or not all(isinstance(v, int) for v in entry):
            raise BertstoryError(f"report.heads entry {list(entry)} is not [layer, head]: "
                                 "write report.heads=[[5,3],[0,1]] (0-based)")
        layer, head = entry
        if not (0 <= layer < layers and 0 <= head < n_heads):
            raise BertstoryError(f"report.heads entry [{layer},{head}] is outside the model's {layers} layers x "
                                 f"{n_heads} heads: use 0-based indices below those")
        out.append((layer, head))
    return out


# --------------------------------------------------------------------------- figures


def fig_layer_patterns(metrics: dict, out_dir: Path) -> FigureFile:
    """Figure 1: per-layer pattern mass under attention, attribution and uniform, one panel per pattern."""
    L = metrics["model"]["layers"]
    layers = np.arange(L)
    fig = Figure(figsize=(10, 5.2))
    axes = fig.subplots(2, 3, sharex=True).ravel()
    series = [("attention", "attention", "tab:blue"), ("attribution", "attribution", "tab:orange"),
              ("uniform", "uniform baseline", "0.5")]
    for ax, p in zip(axes, PATTERNS, strict=True):
        for block, label, color in series:
            if block not in metrics:
                continue
            table = as_array(metrics[block]["patterns"][p])
            mean = np.nanmean(table, axis=1)
            style = "--" if block == "uniform" else "-"
            ax.plot(layers, mean, style, color=color, marker="o", markersize=3, label=label)
            if block != "uniform":
                ax.fill_between(layers, np.nanmin(table, axis=1), np.nanmax(table, axis=1), color=color, alpha=0.15,
                                linewidth=0)
        ax.set_title(p, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.set_xticks(layers)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[3:]:
        ax.set_xlabel("layer", fontsize=8)
    for ax in axes[::3]:
        ax.set_ylabel("mass on pattern", fontsize=8)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(_title(metrics), fontsize=10)
    fig.tight_layout()
    caption = ("Per layer, each pattern's mass (head mean; the shaded band is the range over heads) under "
               "attention" + (", under attribution" if "attribution" in metrics else "")
               + " and under the uniform baseline |p(i)|/n.")
    return save(fig, out_dir, "layer_patterns", caption)


def fig_heads_js(metrics: dict, out_dir: Path, marks: Sequence[tuple[int, int]]) -> FigureFile:
    """Figure 2a: LxH heatmap of the JS divergence between attention and attribution."""
    L, H = metrics["model"]["layers"], metrics["model"]["heads"]
    fig = Figure(figsize=(max(4.0, 0.5 * H + 1.5), max(2.5, 0.4 * L + 1.2)))
    ax = fig.subplots()
    heatmap(fig, ax, as_array(metrics["discrepancy"]["js"]), f"JS(attention, attribution) in bits\n{_title(metrics)}",
            cmap="magma", vmin=0, marks=marks)
    fig.tight_layout()
    return save(fig, out_dir, "heads_js", "Jensen-Shannon divergence (bits) between each head's attention and "
                                          "attribution rows, token-weighted mean over the corpus. Red boxes: the "
                                          "heads shown in the segment figures.")


def fig_heads_patterns(metrics: dict, out_dir: Path) -> FigureFile:
    """Figure 2b: LxH heatmaps of each pattern's mass, attention above attribution (one scale per pattern)."""
    L, H = metrics["model"]["layers"], metrics["model"]["heads"]
    blocks = [b for b in ("attention", "attribution") if b in metrics]
    cols = 3  # patterns per grid row; each pattern's blocks are stacked in consecutive rows
    rows = math.ceil(len(PATTERNS) / cols) * len(blocks)
    fig = Figure(figsize=(cols * max(2.4, 0.3 * H + 1.0), rows * max(1.8, 0.3 * L + 1.0)))
    axes = np.array(fig.subplots(rows, cols)).reshape(rows, cols)
    for i, p in enumerate(PATTERNS):
        tables = [as_array(metrics[b]["patterns"][p]) for b in blocks]
        vmax = max(float(np.nanmax(t)) if np.isfinite(t).any() else 0.0 for t in tables) or 1.0
        for j, (block, table) in enumerate(zip(blocks, tables, strict=True)):
            ax = axes[(i // cols) * len(blocks) + j, i % cols]
            heatmap(fig, ax, table, f"{p}: {block}", vmin=0, vmax=vmax, annotate=False)
    fig.tight_layout()
    caption = "Each head's mass on each pattern under attention" + (
        ", with its mass under attribution below it; both maps of a pattern share one colour scale."
        if "attribution" in metrics else ".")
    return save(fig, out_dir, "heads_patterns", caption)


def fig_segment(segment, heads: list[tuple[str, tuple[int, int]]], out_dir: Path) -> FigureFile:
    """Figure 3: attention and attribution maps of one segment side by side for the chosen heads."""
    tokens = [str(t) for t in segment.tokens]
    n = len(tokens)
    maps = [("attention", segment.attention)] + ([("attribution", segment.attribution)]
                                                 if segment.attribution is not None else [])
    panel = min(7.0, max(2.8, 0.14 * n + 0.8))
    font = max(3.0, min(7.0, 300.0 / max(n, 1)))
    fig = Figure(figsize=(panel * len(maps) + 0.6, panel * len(heads)))
    axes = np.array(fig.subplots(len(heads), len(maps), squeeze=False))
    for row, (label, (layer, head)) in enumerate(heads):
        data = [m[layer, head].float().numpy() for _, m in maps]
        vmax = max(float(d.max()) for d in data) or 1.0
        for col, ((name, _), d) in enumerate(zip(maps, data, strict=True)):
            ax = axes[row, col]
            ax.imshow(d, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_title(f"layer {layer} head {head} ({label}): {name}", fontsize=8)
            ax.set_xticks(range(n))
            ax.set_yticks(range(n))
            ax.set_xticklabels(tokens, rotation=90, fontsize=font)
            ax.set_xlabel("key / input token", fontsize=7)
            if col == 0:  # the panels of a row share the queries: label them once
                ax.set_yticklabels(tokens, fontsize=font)
                ax.set_ylabel("query", fontsize=7)
            else:
                ax.set_yticklabels([])
    fig.tight_layout()
    caption = (f"Segment {segment.index} ({n} tokens): each row is one head, attention on the left"
               + (", attribution (normalised, w.r.t. input tokens) on the right; both panels of a row share one "
                  "colour scale." if segment.attribution is not None else "."))
    return save(fig, out_dir, f"segment_{segment.index}", caption)


def own_share_samples(segments) -> tuple[torch.Tensor | None, int, int]:
    """Per layer, the own-token shares ``a_ii`` of every head and query of ``segments``: (L, heads*tokens),
    the number of segments and tokens used; None when no segment has attribution."""
    parts, count, tokens = [], 0, 0
    for seg in segments:
        if seg.attribution is None:
            continue
        diag = seg.attribution.to(torch.float64).diagonal(dim1=-2, dim2=-1)  # (L, H, n)
        parts.append(diag.reshape(diag.shape[0], -1))
        count += 1
        tokens += diag.shape[-1]
    if not parts:
        return None, 0, 0
    return torch.cat(parts, dim=1), count, tokens


def own_share_quantiles(samples: torch.Tensor) -> torch.Tensor:
    """(L, 3): the 25th, 50th and 75th percentile per layer (linear interpolation)."""
    return torch.quantile(samples, torch.tensor([0.25, 0.5, 0.75], dtype=samples.dtype), dim=1).T


def fig_own_share(metrics: dict, samples: torch.Tensor, count: int, tokens: int, out_dir: Path) -> FigureFile:
    """Figure 4: the own-token share of attribution per layer, median and quartiles."""
    q = own_share_quantiles(samples).numpy()
    layers = np.arange(q.shape[0])
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    ax.fill_between(layers, q[:, 0], q[:, 2], color="tab:orange", alpha=0.25, linewidth=0,
                    label="quartiles (saved maps)")
    ax.plot(layers, q[:, 1], "-o", color="tab:orange", markersize=3, label="median (saved maps)")
    ax.plot(layers, np.nanmean(as_array(metrics["attribution"]["self"]), axis=1), ":", color="black",
            label="mean, whole corpus")
    ax.plot(layers, np.nanmean(as_array(metrics["uniform"]["patterns"]["self"]), axis=1), "--", color="0.5",
            label="uniform 1/n")
    ax.set_xticks(layers)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("layer", fontsize=8)
    ax.set_ylabel("own-token share a_ii", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(_title(metrics), fontsize=9)
    fig.tight_layout()
    caption = (f"Own-token share of attribution a_ii per layer: median and quartiles over every query token and "
               f"head of the {count} segments whose maps were saved ({tokens} tokens; writer.max_segments caps "
               f"them), not the whole corpus. The dotted line is the whole-corpus mean from metrics.json.")
    return save(fig, out_dir, "own_share", caption)


def _title(metrics: dict) -> str:
    m = metrics["model"]
    return (f"{m['name']} ({m['layers']}x{m['heads']}), {metrics['method']['name']}, "
            f"{metrics['data']['segments']} segments")


def make_figures(run: Results, heads: Sequence[Sequence[int]] = (), segments: int = DEFAULT_SEGMENTS
                 ) -> tuple[list[FigureFile], list[str]]:
    """Draw every figure of ``run`` into ``run_dir/figures``; returns the figures and notes on what was left out."""
    metrics, out_dir = run.metrics, run.run_dir / "figures"
    for old in out_dir.glob("segment_*.*"):
        old.unlink()
    shown = choose_heads(metrics, check_heads(heads, run.layers, run.heads))
    with_attr = "attribution" in metrics
    figures = [fig_layer_patterns(metrics, out_dir)]
    if with_attr:
        figures.append(fig_heads_js(metrics, out_dir, [h for _, h in shown]))
    figures.append(fig_heads_patterns(metrics, out_dir))
    notes = []
    indices = run.indices()
    if not indices:
        notes.append("No maps were saved (writer.max_segments=0): no segment or own-token-share figures.")
    first = sorted(indices)[: max(segments, 0)]
    by_index = {seg.index: seg for seg in run.segments(first)} if first else {}
    figures += [fig_segment(by_index[k], shown, out_dir) for k in first]
    if with_attr and indices:
        samples, count, tokens = own_share_samples(run.segments())
        if samples is not None:
            figures.append(fig_own_share(metrics, samples, count, tokens, out_dir))
    return figures, notes


# --------------------------------------------------------------------------- report.html


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


def layer_tables(metrics: dict) -> str:
    """The per-layer numbers (head means): discrepancy and entropy, then pattern masses."""
    summary = layer_summary(metrics)["layers"]
    with_attr = "attribution" in metrics
    cols = ["att_entropy"]
    if with_attr:
        cols += ["attr_entropy", "js", "tv", "top1", "spearman", "self", "self_top1"]
    parts = ["<h3>Per layer (head means)</h3>",
             table_html(["layer"] + cols, [[layer] + [row[c] for c in cols] for layer, row in enumerate(summary)])]
    blocks = ["att", "attr", "uniform"] if with_attr else ["att", "uniform"]
    header = ["layer"] + [f"{p} {b}" for p in PATTERNS for b in blocks]
    rows = [[layer] + [row[f"{b}_{p}"] for p in PATTERNS for b in blocks] for layer, row in enumerate(summary)]
    parts += ["<h3>Pattern mass per layer (head means: attention, attribution, uniform baseline)</h3>",
              table_html(header, rows)]
    if "persistence" in metrics:
        pers = metrics["persistence"]
        L = metrics["model"]["layers"]
        rows = [[p] + list(pers["lift"][p]) + ["yes" if pers["persists"][p] else "no"] for p in PATTERNS]
        parts += [f"<h3>Attribution lift (persists when &ge; {pers['kappa']} in every layer)</h3>",
                  table_html(["pattern"] + [f"L{layer}" for layer in range(L)] + ["persists"], rows)]
    return "\n".join(parts)


def overview_html(metrics: dict) -> str:
    """Model, method and data counts."""
    rows = [[f"model.{k}", v] for k, v in metrics["model"].items()]
    rows += [[f"method.{k}", v] for k, v in metrics["method"].items()]
    rows += [[f"data.{k}", v] for k, v in metrics["data"].items()]
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


def write_html(run: Results, figures: list[FigureFile], notes: list[str]) -> Path:
    """Write ``report.html``: one file, everything inline, nothing loaded from the network."""
    m = run.metrics
    title = f"bertstory: {m['model']['name']}, {m['method']['name']}"
    config = OmegaConf.to_yaml(run.config) if run.config is not None else "(no .hydra/config.yaml)"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>Run directory <code>{html.escape(str(run.run_dir))}</code>. Statistics are token-weighted means "
            "over every non-padding query of every segment (DESIGN.md).</p>",
            "<h2>Run</h2>", overview_html(m),
            "<h2>Numbers</h2>", layer_tables(m),
            "<h2>Figures</h2>"]
    body += [f"<p>{html.escape(n)}</p>" for n in notes]
    body += [figure_html(f, run.run_dir) for f in figures]
    body += ["<h2>Config</h2>", f"<pre>{html.escape(config)}</pre>"]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = run.run_dir / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def report_options(cfg: DictConfig | None) -> tuple[list, int]:
    """``report.heads`` and ``report.segments`` of a run's config (defaults when absent)."""
    block = (cfg.get("report") if cfg is not None else None) or {}
    heads = OmegaConf.to_container(block["heads"]) if isinstance(block, DictConfig) and "heads" in block else []
    segments = int(block.get("segments", DEFAULT_SEGMENTS)) if block else DEFAULT_SEGMENTS
    return heads or [], segments


def build(run_dir: str | os.PathLike, metrics: dict | None = None, cfg: DictConfig | None = None,
          heads: Sequence[Sequence[int]] | None = None, segments: int | None = None) -> Report:
    """Draw the figures and write ``report.html`` for the run in ``run_dir``.

    ``metrics``/``cfg`` default to the run's ``metrics.json`` and ``.hydra/config.yaml``;
    ``heads``/``segments`` default to the config's ``report`` block.
    """
    run = Results(run_dir, metrics)
    if cfg is not None:
        run.config = cfg
    cfg_heads, cfg_segments = report_options(run.config)
    figures, notes = make_figures(run, cfg_heads if heads is None else heads,
                                  cfg_segments if segments is None else segments)
    return Report(write_html(run, figures, notes), figures)


# --------------------------------------------------------------------------- W&B


def log_wandb_media(logger, figures: list[FigureFile], metrics: dict) -> None:
    """Figures as ``wandb.Image`` and per-layer summaries as line charts, on a Lightning WandbLogger."""
    import wandb

    summary = layer_summary(metrics)["layers"]
    xs = list(range(len(summary)))

    def col(name: str) -> list[float]:
        return [math.nan if row.get(name) is None else row[name] for row in summary]

    payload = {f"figures/{f.name}": wandb.Image(str(f.png), caption=f.caption) for f in figures}
    blocks = [("att", "attention"), ("attr", "attribution"), ("uniform", "uniform")]
    for p in PATTERNS:
        present = [(b, label) for b, label in blocks if f"{b}_{p}" in summary[0]]
        payload[f"layer_curves/{p}"] = wandb.plot.line_series(
            xs=xs, ys=[col(f"{b}_{p}") for b, _ in present], keys=[label for _, label in present],
            title=f"{p}: mass per layer (head mean)", xname="layer")
    stats = [k for k in ("js", "tv", "top1", "spearman", "self", "self_top1") if k in summary[0]]
    if stats:
        payload["layer_curves/discrepancy"] = wandb.plot.line_series(
            xs=xs, ys=[col(k) for k in stats], keys=stats, title="discrepancy and own share per layer (head mean)",
            xname="layer")
    logger.experiment.log(payload)


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
    args = parser.parse_args(argv)
    with user_errors():
        report = build(args.run_dir, heads=args.heads, segments=args.segments)
    print(f"{len(report.figures)} figures in {report.html.parent / 'figures'}; report: {report.html}")


if __name__ == "__main__":
    sys.exit(main())

"""The figures of a run (``figures/*.png``, and ``*.pdf`` with ``report.formats=[png,pdf]``), drawn on plain
``matplotlib.figure.Figure`` objects.

Agg rendering and no pyplot state, so drawing never touches a display. The figures are independent jobs
prepared in this process (every tensor already a numpy array) and drawn in forked worker processes where
the platform can fork (:mod:`bertstory.forking`), so the report costs a fraction of its sequential time.

1. ``layer_patterns``: per layer, each pattern's mass under attention, attribution and the
   uniform baseline (head means, with the range over heads shaded lightly and the 95% interval
   of the head mean across segments darker), one panel per pattern.
2. ``heads_js`` and ``heads_patterns``: LxH heatmaps of the JS discrepancy and of each
   pattern's attention and attribution mass.
3. ``segment_{k}``: attention and attribution side by side for chosen heads (highest and
   lowest JS, plus ``report.heads``) on the first saved segments, tokens on both axes.
4. ``own_share``: the own-token share of attribution ``a_ii`` per layer, median and
   quartiles over the tokens (and heads) of the segments whose maps were saved.

With ``attribution=none`` only the attention figures are made.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from bertstory.forking import run_all
from bertstory.results.report_options import DEFAULT_FORMATS, DEFAULT_SEGMENTS, check_heads
from bertstory.results.run import Results
from bertstory.results.run_metrics import RunMetrics
from bertstory.stats.clustered import Z95
from bertstory.stats.patterns import PATTERNS

DPI = 110


@dataclass
class FigureFile:
    """One written figure: its name (file stem), caption and paths per format."""

    name: str
    caption: str
    paths: dict[str, Path]

    @property
    def png(self) -> Path:
        return self.paths["png"]


def save(fig: Figure, out_dir: Path, name: str, caption: str, formats: Sequence[str] = DEFAULT_FORMATS
         ) -> FigureFile:
    """Write ``fig`` as ``out_dir/name.{fmt}`` for each of ``formats`` (png first: the report shows it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in formats:
        paths[fmt] = out_dir / f"{name}.{fmt}"
        fig.savefig(paths[fmt], dpi=DPI)  # every figure is laid out by tight_layout already
    return FigureFile(name, caption, paths)


def heatmap(fig: Figure, ax, table: np.ndarray, title: str, cmap: str = "viridis", vmin: float | None = None,
            vmax: float | None = None, annotate: bool | None = None, marks: Sequence[tuple[int, int]] = (),
            mark_color: str = "red") -> None:
    """One LxH heatmap (layers as rows, heads as columns) with a colour bar; values written in small tables;
    the heads in ``marks`` outlined in ``mark_color``."""
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
        ax.add_patch(_box(layer, head, mark_color))


def _box(layer: int, head: int, color: str = "red"):
    from matplotlib.patches import Rectangle

    return Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=1.5)


def interval(mean: np.ndarray, stderr: Sequence[float | None] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The 95% interval ``mean ± Z95 SE`` per layer (normal approximation), or None without SEs."""
    if stderr is None:
        return None
    se = np.array([math.nan if v is None else v for v in stderr], dtype=float)
    return mean - Z95 * se, mean + Z95 * se


def choose_heads(metrics: RunMetrics, extra: Sequence[Sequence[int]] = ()) -> list[tuple[str, tuple[int, int]]]:
    """The heads shown in the segment figures: highest- and lowest-JS heads (without attribution:
    highest- and lowest-entropy attention), then ``extra``; duplicates dropped."""
    if metrics.has_attribution:
        table, what = metrics.array("discrepancy/js"), "JS"
    else:
        table, what = metrics.array("attention/entropy"), "attention entropy"
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


# --------------------------------------------------------------------------- figures


def fig_layer_patterns(metrics: RunMetrics, out_dir: Path, formats: Sequence[str] = DEFAULT_FORMATS
                       ) -> FigureFile:
    """Figure 1: per-layer pattern mass under attention, attribution and uniform, one panel per pattern."""
    layers = np.arange(metrics.layers)
    fig = Figure(figsize=(10, 5.2))
    axes = fig.subplots(2, 3, sharex=True).ravel()
    series = [("attention", "attention", "tab:blue"), ("attribution", "attribution", "tab:orange"),
              ("uniform", "uniform baseline", "0.5")]
    for ax, p in zip(axes, PATTERNS, strict=True):
        for block, label, color in series:
            if not metrics.has_table(f"{block}/patterns/{p}"):
                continue
            table = metrics.array(f"{block}/patterns/{p}")
            mean = np.nanmean(table, axis=1)
            style = "--" if block == "uniform" else "-"
            ax.plot(layers, mean, style, color=color, marker="o", markersize=3, label=label)
            if block != "uniform":
                ax.fill_between(layers, np.nanmin(table, axis=1), np.nanmax(table, axis=1), color=color, alpha=0.12,
                                linewidth=0)
                band = interval(mean, metrics.layer_stderr(f"{block}/patterns/{p}"))
                if band is not None:
                    ax.fill_between(layers, *band, color=color, alpha=0.35, linewidth=0)
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
    fig.suptitle(metrics.title(), fontsize=10)
    fig.tight_layout()
    caption = ("Per layer, each pattern's mass (head mean; the light band is the range over heads"
               + ("; the dark band the 95% interval of the head mean across segments, mean ± 1.96 segment-clustered "
                  "standard errors" if metrics.has_stderr else "") + ") under "
               "attention" + (", under attribution" if metrics.has_attribution else "")
               + " and under the uniform baseline |p(i)|/n.")
    return save(fig, out_dir, "layer_patterns", caption, formats)


def fig_heads_js(metrics: RunMetrics, out_dir: Path, marks: Sequence[tuple[int, int]],
                 formats: Sequence[str] = DEFAULT_FORMATS) -> FigureFile:
    """Figure 2a: LxH heatmap of the JS divergence between attention and attribution."""
    L, H = metrics.shape
    fig = Figure(figsize=(max(4.0, 0.5 * H + 1.5), max(2.5, 0.4 * L + 1.2)))
    ax = fig.subplots()
    heatmap(fig, ax, metrics.array("discrepancy/js"), f"JS(attention, attribution) in bits\n{metrics.title()}",
            cmap="magma", vmin=0, marks=marks)
    fig.tight_layout()
    return save(fig, out_dir, "heads_js", "Jensen-Shannon divergence (bits) between each head's attention and "
                                          "attribution rows, token-weighted mean over the corpus. Red boxes: the "
                                          "heads shown in the segment figures.", formats)


def fig_heads_patterns(metrics: RunMetrics, out_dir: Path, formats: Sequence[str] = DEFAULT_FORMATS
                       ) -> FigureFile:
    """Figure 2b: LxH heatmaps of each pattern's mass, attention above attribution (one scale per pattern)."""
    L, H = metrics.shape
    blocks = ["attention", "attribution"] if metrics.has_attribution else ["attention"]
    cols = 3  # patterns per grid row; each pattern's blocks are stacked in consecutive rows
    rows = math.ceil(len(PATTERNS) / cols) * len(blocks)
    fig = Figure(figsize=(cols * max(2.4, 0.3 * H + 1.0), rows * max(1.8, 0.3 * L + 1.0)))
    axes = np.array(fig.subplots(rows, cols)).reshape(rows, cols)
    for i, p in enumerate(PATTERNS):
        tables = [metrics.array(f"{b}/patterns/{p}") for b in blocks]
        vmax = max(float(np.nanmax(t)) if np.isfinite(t).any() else 0.0 for t in tables) or 1.0
        for j, (block, table) in enumerate(zip(blocks, tables, strict=True)):
            ax = axes[(i // cols) * len(blocks) + j, i % cols]
            heatmap(fig, ax, table, f"{p}: {block}", vmin=0, vmax=vmax, annotate=False)
    fig.tight_layout()
    caption = "Each head's mass on each pattern under attention" + (
        ", with its mass under attribution below it; both maps of a pattern share one colour scale."
        if metrics.has_attribution else ".")
    return save(fig, out_dir, "heads_patterns", caption, formats)


def fig_segment(segment, heads: list[tuple[str, tuple[int, int]]], out_dir: Path,
                formats: Sequence[str] = DEFAULT_FORMATS) -> FigureFile:
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
        data = [np.asarray(m[layer, head], dtype=np.float32) for _, m in maps]
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
    return save(fig, out_dir, f"segment_{segment.index}", caption, formats)


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


def fig_own_share(metrics: RunMetrics, quartiles: np.ndarray, count: int, tokens: int, out_dir: Path,
                  formats: Sequence[str] = DEFAULT_FORMATS) -> FigureFile:
    """Figure 4: the own-token share of attribution per layer, median and quartiles ``(L, 3)`` of
    :func:`own_share_quantiles`."""
    q = quartiles  # (L, 3): 25th, 50th, 75th percentile
    layers = np.arange(q.shape[0])
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    ax.fill_between(layers, q[:, 0], q[:, 2], color="tab:orange", alpha=0.25, linewidth=0,
                    label="quartiles (saved maps)")
    ax.plot(layers, q[:, 1], "-o", color="tab:orange", markersize=3, label="median (saved maps)")
    corpus_mean = np.nanmean(metrics.array("attribution/self"), axis=1)
    ax.plot(layers, corpus_mean, ":", color="black", label="mean, whole corpus")
    band = interval(corpus_mean, metrics.layer_stderr("attribution/self"))
    if band is not None:
        ax.fill_between(layers, *band, color="black", alpha=0.15, linewidth=0, label="95% interval of the mean")
    ax.plot(layers, np.nanmean(metrics.array("uniform/patterns/self"), axis=1), "--", color="0.5",
            label="uniform 1/n")
    ax.set_xticks(layers)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("layer", fontsize=8)
    ax.set_ylabel("own-token share a_ii", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(metrics.title(), fontsize=9)
    fig.tight_layout()
    caption = (f"Own-token share of attribution a_ii per layer: median and quartiles over every query token and "
               f"head of the {count} segments whose maps were saved ({tokens} tokens; writer.max_segments caps "
               f"them), not the whole corpus. The dotted line is the whole-corpus mean from metrics.json.")
    return save(fig, out_dir, "own_share", caption, formats)


def as_numpy(segment):
    """``segment`` with its maps as float32 numpy arrays (what a forked worker draws from, no torch there)."""
    attribution = None if segment.attribution is None else segment.attribution.float().numpy()
    return replace(segment, attention=segment.attention.float().numpy(), attribution=attribution)


def make_figures(run: Results, heads: Sequence[Sequence[int]] = (), segments: int = DEFAULT_SEGMENTS,
                 formats: Sequence[str] = DEFAULT_FORMATS, workers: int | None = None
                 ) -> tuple[list[FigureFile], list[str]]:
    """Draw every figure of ``run`` into ``run_dir/figures``, in up to ``workers`` forked processes
    (:func:`bertstory.forking.run_all`); returns the figures and notes on what was left out."""
    metrics, out_dir = run.metrics, run.run_dir / "figures"
    for old in out_dir.glob("segment_*.*"):
        old.unlink()
    shown = choose_heads(metrics, check_heads(heads, run.layers, run.heads))
    with_attr = metrics.has_attribution
    job = functools.partial
    jobs = [job(fig_heads_patterns, metrics, out_dir, formats=formats),  # the largest first
            job(fig_layer_patterns, metrics, out_dir, formats=formats)]
    if with_attr:
        jobs.insert(1, job(fig_heads_js, metrics, out_dir, [h for _, h in shown], formats=formats))
    notes = []
    indices = run.indices()
    if not indices:
        notes.append("No maps were saved (writer.max_segments=0): no segment or own-token-share figures.")
    first = sorted(indices)[: max(segments, 0)]
    by_index = {seg.index: as_numpy(seg) for seg in run.segments(first)} if first else {}
    jobs += [job(fig_segment, by_index[k], shown, out_dir, formats=formats) for k in first]
    if with_attr and indices:
        samples, count, tokens = own_share_samples(run.segments())
        if samples is not None:
            quartiles = own_share_quantiles(samples).numpy()
            jobs.append(job(fig_own_share, metrics, quartiles, count, tokens, out_dir, formats=formats))
    figures = run_all(jobs, workers)
    order = ["layer_patterns", "heads_js", "heads_patterns"]  # the report's order: per layer, per head, segments
    figures.sort(key=lambda f: order.index(f.name) if f.name in order else len(order))
    return figures, notes

"""Agreement between runs over the same segments: ``agreement.json`` and ``agreement.png``.

For every pair of runs (A, B) and every (layer, head), over the queries of the segments whose maps
both runs saved: the token-weighted mean Spearman correlation and Jensen-Shannon divergence (bits)
between A's and B's rows (the attribution rows, or the attention rows of a run with
``attribution=none``), with the same conventions as the run statistics (Spearman over queries of
segments with n >= 3 and rows that are not constant, ties ranked by average). Per layer: the mean
over heads. For each run with attribution, ``with_attention`` holds the same between its
attribution and its own attention. Written by ``python -m bertstory.compare RUN_A RUN_B [RUN_C ...]``
and at the end of a sweep (:mod:`bertstory.results.sweep`).

The rows are read from the shards, in the run's ``writer.dtype`` (float16 by default: ranks of
nearly equal entries may tie there; ``writer.dtype=float32`` avoids it).
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from bertstory.errors import BertstoryError
from bertstory.files import write_json_atomic
from bertstory.results.figures import DPI
from bertstory.results.run import Results, load
from bertstory.results.shards import read_segment, segment_shards
from bertstory.stats.formulas import js_bits, spearman_rows

AGREEMENT_JSON = "agreement.json"
AGREEMENT_PNG = "agreement.png"


@dataclass
class PairSums:
    """Running sums of one pair's per-query agreement, (L, H) float64."""

    js: Tensor
    spearman: Tensor
    spearman_queries: Tensor
    queries: int = 0

    @classmethod
    def zeros(cls, L: int, H: int) -> PairSums:
        z = torch.zeros(L, H, dtype=torch.float64)
        return cls(js=z.clone(), spearman=z.clone(), spearman_queries=z.clone())

    def update(self, p: Tensor, q: Tensor) -> None:
        """Add one segment's rows p, q (L, H, n, n): JS of every query, Spearman of the defined ones (n >= 3)."""
        p, q = p.to(torch.float64)[None], q.to(torch.float64)[None]
        n = p.shape[-1]
        self.js += js_bits(p, q)[0].sum(-1)
        if n >= 3:
            rho, defined = spearman_rows(p, q, torch.ones(1, n))
            self.spearman += (rho * defined)[0].sum(-1)
            self.spearman_queries += defined[0].sum(-1)
        self.queries += n

    def result(self) -> dict:
        """Per-head means, per-layer means over heads, overall means; None where undefined."""
        js = (self.js / max(self.queries, 1)).numpy()
        rho = torch.where(self.spearman_queries > 0, self.spearman / self.spearman_queries.clamp(min=1),
                          torch.nan).numpy()
        return {"spearman": table(rho), "js": table(js),
                "layers": {"spearman": layer_means(rho), "js": layer_means(js)},
                "mean": {"spearman": finite(np.nanmean(rho) if np.isfinite(rho).any() else math.nan),
                         "js": finite(float(js.mean()))}}


def finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def table(arr: np.ndarray) -> list[list[float | None]]:
    return [[finite(v) for v in row] for row in arr]


def layer_means(arr: np.ndarray) -> list[float | None]:
    return [finite(np.nanmean(row)) if np.isfinite(row).any() else None for row in arr]


@dataclass
class RunRows:
    """One run's saved rows: where each segment is, and whether its rows are attribution or attention."""

    run_dir: Path
    results: Results
    label: str
    where: dict[int, Path] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "attribution" if self.results.metrics.has_attribution else "attention"


def labels(runs: list[Results]) -> list[str]:
    """``model/method`` (``:local`` for a local scope), numbered where two runs would share a label."""
    raw = []
    for r in runs:
        method = r.metrics.method
        scope = ":local" if method.get("scope") == "local" else ""
        raw.append(f"{r.metrics.model_name}/{method['name']}{scope}")
    return [f"{name}#{i}" if raw.count(name) > 1 else name for i, name in enumerate(raw)]


def open_runs(run_dirs: list[str | os.PathLike]) -> list[RunRows]:
    """The runs, checked to have the same shape and saved maps of the same segments (one-line errors)."""
    results = [load(d) for d in run_dirs]
    runs = [RunRows(Path(d), r, label) for d, r, label in zip(run_dirs, results, labels(results), strict=True)]
    first = runs[0]
    for run in runs:
        if run.results.metrics.shape != first.results.metrics.shape:
            raise BertstoryError(f"{run.run_dir} has {run.results.layers} layers x {run.results.heads} heads, "
                                 f"{first.run_dir} {first.results.layers} x {first.results.heads}: agreement needs "
                                 "runs of models of the same shape")
        run.where = segment_shards(run.run_dir)
        if not run.where:
            raise BertstoryError(f"{run.run_dir} saved no maps: run it again with writer.max_segments > 0")
        if set(run.where) != set(first.where):
            odd = min(set(run.where) ^ set(first.where))
            raise BertstoryError(f"{run.run_dir} and {first.run_dir} are not over the same segments (segment {odd} "
                                 "is saved in one only): compare runs with the same data.* and writer.max_segments")
    return runs


def agreement(run_dirs: list[str | os.PathLike]) -> dict:
    """The agreement of every pair of runs (and of each run's attribution with its attention); see the module doc."""
    runs = open_runs(run_dirs)
    L, H = runs[0].results.metrics.shape
    pairs = {(a, b): PairSums.zeros(L, H) for a, b in itertools.combinations(range(len(runs)), 2)}
    own = {i: PairSums.zeros(L, H) for i, r in enumerate(runs) if r.kind == "attribution"}
    indices = sorted(runs[0].where)
    for k in indices:
        fields = [read_segment(r.where[k], k) for r in runs]
        for r, f in zip(runs[1:], fields[1:], strict=True):
            if not torch.equal(f["input_ids"], fields[0]["input_ids"]):
                raise BertstoryError(f"segment {k} has other tokens in {r.run_dir} than in {runs[0].run_dir}: "
                                     "compare runs over the same data with the same tokenizer")
        rows = [f.get("attribution", f["attention"]) for f in fields]
        for (a, b), sums in pairs.items():
            sums.update(rows[a], rows[b])
        for i, sums in own.items():
            sums.update(fields[i]["attribution"], fields[i]["attention"])
    return {
        "schema": 1,
        "runs": [{"run": str(r.run_dir), "label": r.label, "model": r.results.metrics.model_name,
                  "method": r.results.metrics.method, "rows": r.kind} for r in runs],
        "segments": len(indices),
        "queries": next(iter(pairs.values())).queries if pairs else 0,
        "pairs": [{"a": runs[a].label, "b": runs[b].label, **s.result()} for (a, b), s in pairs.items()],
        "with_attention": [{"run": runs[i].label, **s.result()} for i, s in own.items()],
    }


def layer_matrix(result: dict, stat: str, layer: int) -> tuple[list[str], np.ndarray]:
    """The runs' labels and the symmetric (R, R) matrix of a statistic's mean in one layer (diagonal: agreement with
    itself, 1 for Spearman and 0 for JS)."""
    names = [r["label"] for r in result["runs"]]
    R = len(names)
    mat = np.full((R, R), 1.0 if stat == "spearman" else 0.0)
    for p in result["pairs"]:
        a, b = names.index(p["a"]), names.index(p["b"])
        v = p["layers"][stat][layer]
        mat[a, b] = mat[b, a] = math.nan if v is None else v
    return names, mat


def draw(result: dict, path: Path) -> None:
    """``agreement.png``: per layer, the runs x runs matrices of mean Spearman (top) and JS divergence (bottom)."""
    L = len(result["pairs"][0]["layers"]["js"]) if result["pairs"] else 0
    R = len(result["runs"])
    size = 0.45 * R + 1.2
    fig = Figure(figsize=(max(4.0, size * max(L, 1)), 2 * size + 0.8))
    axes = fig.subplots(2, max(L, 1), squeeze=False)
    for row, (stat, cmap, vmin, vmax) in enumerate([("spearman", "viridis", -1, 1), ("js", "magma_r", 0, 1)]):
        for layer in range(L):
            names, mat = layer_matrix(result, stat, layer)
            ax = axes[row][layer]
            ax.imshow(mat, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"layer {layer}: {stat}", fontsize=8)
            ax.set_xticks(range(R), [n.split("/")[-1] for n in names], rotation=90, fontsize=6)
            ax.set_yticks(range(R), [n.split("/")[-1] for n in names] if layer == 0 else [], fontsize=6)
            for (a, b), v in np.ndenumerate(mat):
                if math.isfinite(v):
                    ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=5, color="grey")
    fig.suptitle(f"agreement between {R} runs over {result['segments']} segments ({result['queries']} queries)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def write_agreement(run_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict:
    """Compute the agreement of ``run_dirs`` and write ``agreement.json`` and ``agreement.png`` into ``out_dir``."""
    result = agreement(run_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, out / AGREEMENT_JSON)
    draw(result, out / AGREEMENT_PNG)
    return result


def print_table(result: dict) -> None:
    """Per-layer mean Spearman and JS of every pair, and of each run's attribution with its attention."""

    def cells(values: list) -> str:
        return " ".join("  -  " if v is None else f"{v:5.2f}" for v in values)

    for p in result["pairs"]:
        print(f"  {p['a']} vs {p['b']}: Spearman per layer {cells(p['layers']['spearman'])}; "
              f"JS {cells(p['layers']['js'])}")
    for w in result["with_attention"]:
        print(f"  {w['run']} vs its attention: Spearman per layer {cells(w['layers']['spearman'])}; "
              f"JS {cells(w['layers']['js'])}")

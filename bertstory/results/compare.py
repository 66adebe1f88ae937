"""Comparing runs: ``python -m bertstory.compare RUN_A RUN_B [RUN_C ...] --out DIR``.

With exactly two runs, for every LxH table that both runs' ``metrics.json`` hold (pattern masses,
entropies, own-token share, discrepancies) it writes ``DIR/differences.json`` with ``B - A`` per
(layer, head) and a diverging heatmap ``DIR/<table>.png`` (``attention/patterns/cls`` ->
``attention_patterns_cls.png``). When both runs kept per-segment statistics and are over the same
segments, it also tests every difference (:mod:`bertstory.results.paired`): ``DIR/compare.json``
holds each head's difference, paired standard error, p-value and whether it survives
Benjamini-Hochberg at 5%, and the heatmaps outline the heads that do; it prints the headline statistics'
layer means side by side (:func:`side_by_side`, a Markdown table: A, B and B - A ± its paired SE).
Typical uses: a model before and after fine-tuning, two models of the same shape, two methods.
Runs of different shapes (layers x heads) cannot be compared head by head.

``python -m bertstory.compare RUN_A RUN_B [RUN_C ...] --out DIR`` also writes the agreement of every pair
of runs over the same segments (``agreement.json``, :mod:`bertstory.results.agreement`); with more
than two runs only that.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bertstory.errors import BertstoryError
from bertstory.files import write_json_atomic
from bertstory.results.figures import DPI, heatmap
from bertstory.results.paired import paired_comparison, significant_heads, write_compare_json
from bertstory.results.run import load
from bertstory.results.run_metrics import RunMetrics, as_array
from bertstory.results.shards import has_segment_stats


def difference(a: list[list], b: list[list]) -> list[list[float | None]]:
    """``b - a`` per entry; None where either is None."""
    return [[None if x is None or y is None else y - x for x, y in zip(ra, rb, strict=True)]
            for ra, rb in zip(a, b, strict=True)]


def table_summary(diff: list[list[float | None]]) -> dict:
    """Mean, mean absolute and largest absolute difference, and the head where it is."""
    arr = as_array(diff)
    if not np.isfinite(arr).any():
        return {"mean": None, "mean_abs": None, "max_abs": None, "max_abs_head": None}
    layer, head = np.unravel_index(np.nanargmax(np.abs(arr)), arr.shape)
    return {"mean": float(np.nanmean(arr)), "mean_abs": float(np.nanmean(np.abs(arr))),
            "max_abs": float(np.abs(arr[layer, head])), "max_abs_head": [int(layer), int(head)]}


def compare(metrics_a: RunMetrics, metrics_b: RunMetrics) -> dict:
    """The differences ``B - A`` of every LxH table the two runs share (raises on different shapes)."""
    if metrics_a.shape != metrics_b.shape:
        (la, ha), (lb, hb) = metrics_a.shape, metrics_b.shape
        raise BertstoryError(f"the runs have different shapes (A: {la} layers x {ha} heads, B: {lb} x {hb}): "
                             "compare runs of models with the same number of layers and heads")
    ta, tb = metrics_a.tables(), metrics_b.tables()
    common = [name for name in ta if name in tb]
    diffs = {name: difference(ta[name], tb[name]) for name in common}
    return {
        "direction": "B - A",
        "a": {"model": metrics_a.model, "method": metrics_a.method, "data": metrics_a.data},
        "b": {"model": metrics_b.model, "method": metrics_b.method, "data": metrics_b.data},
        "only_in_a": sorted(set(ta) - set(tb)),
        "only_in_b": sorted(set(tb) - set(ta)),
        "summary": {name: table_summary(d) for name, d in diffs.items()},
        "differences": diffs,
    }


def label(facts: dict) -> str:
    """``model/method`` of a run's facts as saved in differences.json."""
    return f"{facts['model']['name']}/{facts['method']['name']}"


def draw(name: str, diff: list[list], title: str, path: Path, marks: list[tuple[int, int]] = ()) -> None:
    """A diverging heatmap of one table's differences, symmetric around zero; ``marks`` outlined."""
    arr = as_array(diff)
    L, H = arr.shape
    bound = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 0.0
    bound = bound if bound > 0 and math.isfinite(bound) else 1e-12
    fig = Figure(figsize=(max(4.0, 0.5 * H + 1.5), max(2.5, 0.4 * L + 1.2)))
    ax = fig.subplots()
    heatmap(fig, ax, arr, f"{name}\n{title}", cmap="RdBu_r", vmin=-bound, vmax=bound, marks=marks,
            mark_color="black")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def write(result: dict, out_dir: str | os.PathLike, run_a: str, run_b: str, paired: dict | None = None
          ) -> list[Path]:
    """``differences.json`` and one heatmap per table into ``out_dir`` (with ``paired``, the result of
    :func:`~bertstory.results.paired.paired_comparison`: significant heads outlined, and ``compare.json``);
    returns the heatmaps' paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"run_a": str(run_a), "run_b": str(run_b), **result}
    write_json_atomic(result, out / "differences.json")
    if paired is not None:
        write_compare_json(paired, out)
    title = f"B - A: {label(result['b'])} minus {label(result['a'])}"
    paths = []
    for name, diff in result["differences"].items():
        path = out / (name.replace("/", "_") + ".png")
        tested = paired is not None and name in paired["tables"]
        marks = significant_heads(paired, name) if tested else []
        draw(name, diff, title + ("\noutlined: significant (BH 5%)" if tested else ""), path, marks)
        paths.append(path)
    return paths


HEADLINE = {"discrepancy/js": "JS (bits)", "discrepancy/tv": "TV", "discrepancy/top1": "top-1",
            "discrepancy/spearman": "Spearman", "attribution/self": "own-token share", "attribution/patterns/cls":
            "attribution to [CLS]"}


def side_by_side(a: RunMetrics, b: RunMetrics, paired: dict, names: dict[str, str] = HEADLINE) -> str:
    """Markdown: per headline table, its layer means (head means) in run A, in run B, and ``B - A ± paired SE``
    from ``compare.json`` (``*``: significant, Benjamini-Hochberg 5% over all layers of all tables)."""
    layers = range(a.layers)
    out = ["| table | run | " + " | ".join(f"L{layer}" for layer in layers) + " |", "|---" * (a.layers + 2) + "|"]
    for name, title in names.items():
        if name not in paired["tables"]:
            continue
        lm = paired["tables"][name]["layer_means"]
        for run, metrics in (("A", a), ("B", b)):
            out.append(f"| {title} | {run} | " + " | ".join(f"{v:.3f}" for v in metrics.layer_means(name)) + " |")
        diffs = [f"{d:+.4f} ± {e:.4f}{'*' if sig else ''}"
                 for d, e, sig in zip(lm["difference"], lm["stderr"], lm["significant"], strict=True)]
        out.append(f"| {title} | B - A | " + " | ".join(diffs) + " |")
    return "\n".join(out)


def pair(run_a: str, run_b: str, out: str) -> None:
    """The two-run part of ``main``: differences, their paired test (when per-segment statistics exist), heatmaps."""
    a, b = load(run_a), load(run_b)
    result = compare(a.metrics, b.metrics)
    paired = None
    if has_segment_stats(a.run_dir) and has_segment_stats(b.run_dir):
        paired = paired_comparison(a, b)
    else:
        print("no paired test: a run has no per-segment statistics (made by an older bertstory; rerun it)")
    paths = write(result, out, run_a, run_b, paired)
    print(f"{len(paths)} tables compared (B - A); differences.json{', compare.json' if paired else ''} and "
          f"heatmaps in {out}")
    biggest = sorted(result["summary"].items(), key=lambda kv: -(kv[1]["max_abs"] or 0))[:5]
    for name, s in biggest:
        if s["max_abs"] is not None:
            print(f"  {name}: mean |diff| {s['mean_abs']:.4f}, max |diff| {s['max_abs']:.4f} at "
                  f"layer {s['max_abs_head'][0]} head {s['max_abs_head'][1]}")
    if paired is not None:
        changed = {n: t["significant_heads"] for n, t in paired["tables"].items() if t["significant_heads"]}
        print(f"heads that differ significantly (paired over {paired['segments']} segments, BH 5%): "
              + (", ".join(f"{n} {c}" for n, c in changed.items()) if changed else "none"))
        print(f"\nlayer means, A = {label(result['a'])}, B = {label(result['b'])} "
              "(B - A ± paired SE; * significant, BH 5%):\n")
        print(side_by_side(a.metrics, b.metrics, paired))


def main(argv: list[str] | None = None) -> None:
    """``python -m bertstory.compare RUN_A RUN_B [RUN_C ...] --out DIR``: for two runs, the per-head differences
    B - A and their paired test (compare.json); for any number of runs over the same segments, the agreement of
    every pair (agreement.json)."""
    import argparse

    from bertstory.cli import user_errors
    from bertstory.results.agreement import print_table, write_agreement

    parser = argparse.ArgumentParser(prog="python -m bertstory.compare", description=main.__doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="two or more run directories")
    parser.add_argument("--out", required=True, help="folder for differences.json, compare.json, agreement.json "
                                                     "and the figures")
    args = parser.parse_args(argv)
    with user_errors():
        if len(args.runs) < 2:
            raise BertstoryError("give at least two run directories to compare")
        if len(args.runs) > 2:
            agreement = write_agreement(args.runs, args.out)
            print(f"agreement of {len(args.runs)} runs over {agreement['segments']} segments: "
                  f"{args.out}/agreement.json")
            print_table(agreement)
            return
        pair(args.runs[0], args.runs[1], args.out)
    try:
        agreement = write_agreement(args.runs, args.out)
    except BertstoryError as e:
        print(f"no agreement.json: {e}", file=sys.stderr)
        return
    print(f"agreement over {agreement['segments']} segments: {args.out}/agreement.json")
    print_table(agreement)


if __name__ == "__main__":
    sys.exit(main())

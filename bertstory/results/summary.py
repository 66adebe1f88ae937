"""Per-layer headline numbers of a run, the table printed after it, and the README's Results tables.

``python -m bertstory.summary RUN_DIR [--markdown]`` prints them for a finished run.
"""

from __future__ import annotations

from bertstory.errors import BertstoryError
from bertstory.results.paired import layer_steps
from bertstory.results.run import Results
from bertstory.results.run_metrics import RunMetrics
from bertstory.stats.patterns import PATTERNS

SHORT = {"attention": "att", "attribution": "attr", "uniform": "uniform"}


def column_name(table: str) -> str:
    """The summary's short name of an LxH table: ``att_<p>``, ``attr_<p>``, ``uniform_<p>`` for pattern masses,
    ``att_entropy``, ``attr_entropy``, ``self``, ``self_top1``, ``js``, ``tv``, ``top1``, ``spearman``."""
    block, _, key = table.partition("/")
    if key.startswith("patterns/"):
        return f"{SHORT[block]}_{key.removeprefix('patterns/')}"
    if block in ("attention", "attribution") and (block == "attention" or key == "entropy"):
        return f"{SHORT[block]}_{key}"
    return key


def layer_summary(metrics: RunMetrics) -> dict:
    """``{"layers": [{name: value} per layer], "stderr": [{name: SE} per layer]}``: head means of the
    headline statistics (names from :func:`column_name`) and their segment-clustered SEs (None where
    the file has none: the uniform baseline, files written before SEs)."""
    columns: dict[str, list] = {}
    errors: dict[str, list] = {}
    for name in metrics.tables():
        columns[column_name(name)] = metrics.layer_means(name)
        errors[column_name(name)] = metrics.layer_stderr(name) or [None] * metrics.layers
    return {"layers": [{k: v[layer] for k, v in columns.items()} for layer in range(metrics.layers)],
            "stderr": [{k: v[layer] for k, v in errors.items()} for layer in range(metrics.layers)]}


def _fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{v:5.3f}"


def _pm(v: float | None, se: float | None) -> str:
    """``0.336±0.004`` (11 characters); the value alone, padded, without a standard error."""
    if v is None:
        return f"{'-':^11}"
    return f"{v:5.3f}±{se:5.3f}" if se is not None else f"{v:5.3f}      "


def persistence_line(metrics: RunMetrics) -> str:
    """Which patterns persist through all layers, and which of them survive the 95% interval test."""
    pers = metrics.persistence
    persists = [p for p, ok in pers["persists"].items() if ok]
    line = (f"persist through all layers (lift >= {pers['kappa']}): "
            f"{', '.join(persists) if persists else 'none'}")
    if "persists_ci" in pers:
        sure = [p for p in persists if pers["persists_ci"].get(p)]
        line += (f"; with the lower end of the 95% interval >= {pers['kappa']} in every layer: "
                 f"{', '.join(sure) if sure else 'none'}")
    return line


def format_table(metrics: RunMetrics, summary: dict | None = None) -> str:
    """A short text table: per layer, each pattern's mass under attention (and attribution), the
    discrepancies and own share, each ``mean±SE`` (segment-clustered) when the run has SEs."""
    summary = summary or layer_summary(metrics)
    with_attr = metrics.has_attribution
    lines = [f"{metrics.model_name}: {metrics.layers} layers x {metrics.heads} heads, method {metrics.method_name}, "
             f"{metrics.data['segments']} segments; head means per layer"
             + (" ± segment-clustered standard error" if metrics.has_stderr else "")]
    blocks = ["att", "attr"] if with_attr else ["att"]
    lines.append("pattern mass" + (": attention (att) and attribution (attr)" if with_attr else " under attention"))
    lines.append("layer      | " + " ".join(f"{p:^11}" for p in PATTERNS) + ("" if with_attr else " |   entropy"))
    for layer, (row, err) in enumerate(zip(summary["layers"], summary["stderr"], strict=True)):
        for i, b in enumerate(blocks):
            cells = " ".join(_pm(row[f"{b}_{p}"], err[f"{b}_{p}"]) for p in PATTERNS)
            extra = "" if with_attr else " | " + _pm(row["att_entropy"], err["att_entropy"])
            lines.append(f"{layer if i == 0 else '':>5} {b:<4} | {cells}{extra}")
    if with_attr:
        names = ["js", "tv", "top1", "spearman", "self"]
        lines.append("discrepancy and own-token share a_ii")
        lines.append("layer      | " + " ".join(f"{n:^11}" for n in names))
        for layer, (row, err) in enumerate(zip(summary["layers"], summary["stderr"], strict=True)):
            lines.append(f"{layer:>5}      | " + " ".join(_pm(row[n], err[n]) for n in names))
        lines.append(persistence_line(metrics))
    return "\n".join(lines)


def plus_minus(v: float | None, se: float | None, digits: int = 3) -> str:
    """``0.336 ± 0.004``, or the value alone without a standard error; ``-`` without a value."""
    if v is None:
        return "-"
    return f"{v:.{digits}f} ± {se:.{digits}f}" if se is not None else f"{v:.{digits}f}"


def markdown_results(metrics: RunMetrics) -> str:
    """The README's Results tables: per layer, mean JS, each pattern's attention vs attribution mass,
    the own-token share, and the patterns that persist through all layers; ``± SE`` where the run has SEs."""
    summary = layer_summary(metrics)
    rows, errs = summary["layers"], summary["stderr"]
    if not metrics.has_attribution:
        raise BertstoryError("this run has no attribution (attribution=none): the Results tables compare attention "
                             "with attribution; print its attention table without --markdown")
    names = ["js", "tv", "top1", "spearman", "self", "self_top1"]
    out = ["| layer | JS (bits) | TV | top-1 | Spearman | own-token share `a_ii` | own token is top-1 |",
           "|---|---|---|---|---|---|---|"]
    for layer, (row, err) in enumerate(zip(rows, errs, strict=True)):
        out.append(f"| {layer} | " + " | ".join(plus_minus(row[n], err[n]) for n in names) + " |")
    out += ["", "Pattern mass, attention / attribution (uniform baseline in the last row):", "",
            "| layer | " + " | ".join(PATTERNS) + " |", "|---" * (len(PATTERNS) + 1) + "|"]
    for layer, (row, err) in enumerate(zip(rows, errs, strict=True)):
        cells = " | ".join(" / ".join(plus_minus(row[f"{b}_{p}"], err[f"{b}_{p}"]) for b in ("att", "attr"))
                           for p in PATTERNS)
        out.append(f"| {layer} | {cells} |")
    uniform = " | ".join(_fmt(metrics.layer_means(f"uniform/patterns/{p}")[0]) for p in PATTERNS)
    out.append(f"| uniform | {uniform} |")
    pers = metrics.persistence
    with_ci = "persists_ci" in pers
    out += ["", f"Attribution lift per layer (`lift[p][l]`, persists when >= {pers['kappa']} in every layer"
            + ("; *persists (CI)*: the lower end of its 95% interval is too" if with_ci else "") + "):", "",
            "| pattern | " + " | ".join(f"L{layer}" for layer in range(len(rows))) + " | persists |"
            + (" persists (CI) |" if with_ci else ""),
            "|---" * (len(rows) + 2 + with_ci) + "|"]
    for p in PATTERNS:
        se = pers.get("lift_stderr", {}).get(p) or [None] * len(rows)
        lifts = " | ".join("-" if v is None else f"{v:.2f}" + (f" ± {s:.2f}" if s is not None else "")
                           for v, s in zip(pers["lift"][p], se, strict=True))
        ci = f" {'yes' if pers['persists_ci'][p] else 'no'} |" if with_ci else ""
        out.append(f"| {p} | {lifts} | {'yes' if pers['persists'][p] else 'no'} |{ci}")
    return "\n".join(out)


STEP_TABLES = ("discrepancy/js", "discrepancy/tv", "discrepancy/spearman", "attribution/self")


def format_layer_steps(run: Results, names: tuple[str, ...] = STEP_TABLES) -> str:
    """Per table, the change of the head mean from each layer to the next, ± its paired SE, marked ``*``
    where it survives Benjamini-Hochberg at 5% over the steps (:func:`bertstory.results.paired.layer_steps`)."""
    stats = run.segment_stats()
    lines = [f"change of the head mean from layer l to l+1 ± paired segment-clustered SE over {len(stats.indices)} "
             "segments; * = significant (Benjamini-Hochberg 5% over the steps)"]
    for name in names:
        if name not in stats.sums:
            continue
        cells = [f"{s['from']}->{s['to']}: {plus_minus(s['difference'], s['stderr'])}{'*' if s['significant'] else ''}"
                 for s in layer_steps(stats, name)]
        lines.append(f"{name}: " + ", ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m bertstory.summary RUN_DIR [--markdown] [--layer-steps]``: print a finished run's per-layer table."""
    import argparse

    from bertstory.cli import user_errors

    parser = argparse.ArgumentParser(prog="python -m bertstory.summary", description=main.__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--markdown", action="store_true", help="the README's Results tables")
    parser.add_argument("--layer-steps", action="store_true",
                        help="also test the change of the headline means from each layer to the next")
    args = parser.parse_args(argv)
    with user_errors():
        metrics = RunMetrics.read(args.run_dir)
        print(markdown_results(metrics) if args.markdown else format_table(metrics))
        if args.layer_steps:
            print(format_layer_steps(Results(args.run_dir, metrics)))

"""Per-layer headline numbers of a run, the table printed after it, and the README's Results tables.

``python -m bertstory.summary RUN_DIR [--markdown]`` prints them for a finished run.
"""

from __future__ import annotations

from bertstory.errors import BertstoryError
from bertstory.results.run_metrics import RunMetrics
from bertstory.stats.patterns import PATTERNS

SHORT = {"attention": "att", "attribution": "attr", "uniform": "uniform"}


def layer_summary(metrics: RunMetrics) -> dict:
    """``{"layers": [ {name: value} per layer ]}`` with head means of the headline statistics.

    Names: ``att_<p>``, ``attr_<p>``, ``uniform_<p>`` for each pattern p, ``att_entropy``,
    ``attr_entropy``, ``js``, ``tv``, ``top1``, ``spearman``, ``self``, ``self_top1``.
    """
    columns: dict[str, list] = {}
    for name in metrics.tables():
        block, _, key = name.partition("/")
        if key.startswith("patterns/"):
            columns[f"{SHORT[block]}_{key.removeprefix('patterns/')}"] = metrics.layer_means(name)
        elif block == "attention" or block == "attribution":
            columns[key if block == "attribution" and key != "entropy" else f"{SHORT[block]}_{key}"] = (
                metrics.layer_means(name))
        else:
            columns[key] = metrics.layer_means(name)
    return {"layers": [{k: v[layer] for k, v in columns.items()} for layer in range(metrics.layers)]}


def _fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{v:5.3f}"


def format_table(metrics: RunMetrics, summary: dict | None = None) -> str:
    """A short text table: per layer, each pattern's mass under attention (and attribution), JS and own share."""
    summary = summary or layer_summary(metrics)
    with_attr = metrics.has_attribution
    lines = [f"{metrics.model_name}: {metrics.layers} layers x {metrics.heads} heads, method {metrics.method_name}, "
             f"{metrics.data['segments']} segments; head means per layer"]
    head = "layer | " + " ".join(f"{p:>5}" for p in PATTERNS) + " | entropy"
    if with_attr:
        lines.append("pattern mass: attention -> attribution")
        head = "layer | " + " ".join(f"{p:^12}" for p in PATTERNS)
        head += " |    JS    TV  top1 spear  self"
    lines.append(head)
    for layer, row in enumerate(summary["layers"]):
        if with_attr:
            cells = " ".join(f"{_fmt(row[f'att_{p}'])}->{_fmt(row[f'attr_{p}'])}" for p in PATTERNS)
            lines.append(f"{layer:5d} | {cells} | {_fmt(row['js'])} {_fmt(row['tv'])} {_fmt(row['top1'])} "
                         f"{_fmt(row['spearman'])} {_fmt(row['self'])}")
        else:
            cells = " ".join(_fmt(row[f"att_{p}"]) for p in PATTERNS)
            lines.append(f"{layer:5d} | {cells} | {_fmt(row['att_entropy'])}")
    if with_attr:
        persists = [p for p, ok in metrics.persistence["persists"].items() if ok]
        lines.append(f"persist through all layers (lift >= {metrics.persistence['kappa']}): "
                     f"{', '.join(persists) if persists else 'none'}")
    return "\n".join(lines)


def markdown_results(metrics: RunMetrics) -> str:
    """The README's Results tables: per layer, mean JS, each pattern's attention vs attribution mass,
    the own-token share, and the patterns that persist through all layers."""
    summary = layer_summary(metrics)["layers"]
    if not metrics.has_attribution:
        raise BertstoryError("this run has no attribution (attribution=none): the Results tables compare attention "
                             "with attribution; print its attention table without --markdown")
    out = ["| layer | JS (bits) | TV | top-1 | Spearman | own-token share `a_ii` | own token is top-1 |",
           "|---|---|---|---|---|---|---|"]
    for layer, row in enumerate(summary):
        out.append(f"| {layer} | {_fmt(row['js'])} | {_fmt(row['tv'])} | {_fmt(row['top1'])} | "
                   f"{_fmt(row['spearman'])} | {_fmt(row['self'])} | {_fmt(row['self_top1'])} |")
    out += ["", "Pattern mass, attention / attribution (uniform baseline in the last row):", "",
            "| layer | " + " | ".join(PATTERNS) + " |", "|---" * (len(PATTERNS) + 1) + "|"]
    for layer, row in enumerate(summary):
        cells = " | ".join(f"{_fmt(row[f'att_{p}'])} / {_fmt(row[f'attr_{p}'])}" for p in PATTERNS)
        out.append(f"| {layer} | {cells} |")
    uniform = " | ".join(_fmt(metrics.layer_means(f"uniform/patterns/{p}")[0]) for p in PATTERNS)
    out.append(f"| uniform | {uniform} |")
    pers = metrics.persistence
    out += ["", f"Attribution lift per layer (`lift[p][l]`, persists when >= {pers['kappa']} in every layer):", "",
            "| pattern | " + " | ".join(f"L{layer}" for layer in range(len(summary))) + " | persists |",
            "|---" * (len(summary) + 2) + "|"]
    for p in PATTERNS:
        lifts = " | ".join("-" if v is None else f"{v:.2f}" for v in pers["lift"][p])
        out.append(f"| {p} | {lifts} | {'yes' if pers['persists'][p] else 'no'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """``python -m bertstory.summary RUN_DIR [--markdown]``: print a finished run's per-layer table."""
    import argparse

    from bertstory.cli import user_errors

    parser = argparse.ArgumentParser(prog="python -m bertstory.summary", description=main.__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--markdown", action="store_true", help="the README's Results tables")
    args = parser.parse_args(argv)
    with user_errors():
        metrics = RunMetrics.read(args.run_dir)
        print(markdown_results(metrics) if args.markdown else format_table(metrics))

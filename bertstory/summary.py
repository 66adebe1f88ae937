"""Per-layer headline numbers from a metrics.json dict, and the table printed after a run."""

from __future__ import annotations

from bertstory.patterns import PATTERNS


def layer_mean(table: list[list[float | None]]) -> list[float | None]:
    """Mean over the heads of each layer of an LxH table (None entries left out; None if all are)."""
    out = []
    for row in table:
        values = [v for v in row if v is not None]
        out.append(sum(values) / len(values) if values else None)
    return out


def layer_summary(metrics: dict) -> dict:
    """``{"layers": [ {name: value} per layer ]}`` with head means of the headline statistics.

    Names: ``att_<p>``, ``attr_<p>``, ``uniform_<p>`` for each pattern p, ``att_entropy``,
    ``attr_entropy``, ``js``, ``tv``, ``top1``, ``spearman``, ``self``, ``self_top1``.
    """
    columns: dict[str, list] = {}
    for p in PATTERNS:
        columns[f"att_{p}"] = layer_mean(metrics["attention"]["patterns"][p])
    columns["att_entropy"] = layer_mean(metrics["attention"]["entropy"])
    if "attribution" in metrics:
        for p in PATTERNS:
            columns[f"attr_{p}"] = layer_mean(metrics["attribution"]["patterns"][p])
        columns["attr_entropy"] = layer_mean(metrics["attribution"]["entropy"])
        columns["self"] = layer_mean(metrics["attribution"]["self"])
        columns["self_top1"] = layer_mean(metrics["attribution"]["self_top1"])
        for k, v in metrics["discrepancy"].items():
            columns[k] = layer_mean(v)
    for p in PATTERNS:
        columns[f"uniform_{p}"] = layer_mean(metrics["uniform"]["patterns"][p])
    layers = metrics["model"]["layers"]
    return {"layers": [{k: v[layer] for k, v in columns.items()} for layer in range(layers)]}


def _fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{v:5.3f}"


def format_table(metrics: dict, summary: dict | None = None) -> str:
    """A short text table: per layer, each pattern's mass under attention (and attribution), JS and own share."""
    summary = summary or layer_summary(metrics)
    with_attr = "attribution" in metrics
    m = metrics["model"]
    lines = [f"{m['name']}: {m['layers']} layers x {m['heads']} heads, method {metrics['method']['name']}, "
             f"{metrics['data']['segments']} segments; head means per layer"]
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
        persists = [p for p, ok in metrics["persistence"]["persists"].items() if ok]
        lines.append(f"persist through all layers (lift >= {metrics['persistence']['kappa']}): "
                     f"{', '.join(persists) if persists else 'none'}")
    return "\n".join(lines)


def markdown_results(metrics: dict) -> str:
    """The README's Results tables: per layer, mean JS, each pattern's attention vs attribution mass,
    the own-token share, and the patterns that persist through all layers."""
    summary = layer_summary(metrics)["layers"]
    if "attribution" not in metrics:
        raise ValueError("this run has no attribution (attribution=none): nothing to compare")
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
    uniform = " | ".join(_fmt(layer_mean(metrics["uniform"]["patterns"][p])[0]) for p in PATTERNS)
    out.append(f"| uniform | {uniform} |")
    pers = metrics["persistence"]
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
    import json
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m bertstory.summary", description=main.__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--markdown", action="store_true", help="the README's Results tables")
    args = parser.parse_args(argv)
    path = Path(args.run_dir) / "metrics.json"
    if not path.is_file():
        print(f"error: no metrics.json in {args.run_dir}: give the directory of a finished analysis run",
              file=sys.stderr)
        sys.exit(2)
    metrics = json.loads(path.read_text())
    print(markdown_results(metrics) if args.markdown else format_table(metrics))


if __name__ == "__main__":
    main()

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

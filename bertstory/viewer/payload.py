"""What the page shows of one run, as JSON-ready data: corpus tables, and per saved segment its tokens,
its maps (:mod:`bertstory.viewer.encode`) and its own statistics (:mod:`bertstory.viewer.segment_stats`)."""

from __future__ import annotations

import math
from typing import Any

from bertstory.errors import BertstoryError
from bertstory.results.run import Results
from bertstory.results.run_metrics import Table
from bertstory.stats.patterns import PATTERNS
from bertstory.viewer.encode import MAX_ERROR, encode_map
from bertstory.viewer.segment_stats import SegmentStatistics, recorded_tables

DIGITS = 6  # significant digits of the statistics on the page


def rounded(table: Table) -> Table:
    """An LxH table with ``DIGITS`` significant digits (None kept; NaN -> None)."""
    return [[None if v is None or not math.isfinite(v) else float(f"{v:.{DIGITS}g}") for v in row] for row in table]


def corpus_tables(run: Results) -> dict[str, Table]:
    """Every LxH table of metrics.json (corpus statistics) by flat name."""
    return {name: rounded(t) for name, t in run.metrics.tables().items()}


def run_payload(run: Results, max_segments: int, dtype: str) -> dict[str, Any]:
    """The page's data of one run: facts, corpus tables and the first ``max_segments`` saved segments."""
    m = run.metrics
    indices = run.indices()[:max_segments]
    recorded = recorded_tables(run, indices)
    # only a run whose shards keep no per-segment records needs them recomputed from its maps
    recompute = SegmentStatistics(m.layers, m.heads, run.tokenizer) if recorded is None else None
    segments = []
    for seg in run.segments(indices):
        tables = recompute.tables(seg) if recompute is not None else recorded[seg.index]
        segments.append({
            "index": seg.index,
            "tokens": [str(t) for t in seg.tokens],
            "ids": seg.input_ids.tolist(),
            "attention": encode_map(seg.attention, dtype),
            "attribution": None if seg.attribution is None else encode_map(seg.attribution, dtype),
            "stats": {name: rounded(t) for name, t in tables.items()},
        })
    segments.sort(key=lambda s: s["index"])
    return {
        "label": m.label(),
        "title": m.title(),
        "run_dir": str(run.run_dir),
        "layers": m.layers,
        "heads": m.heads,
        "has_attribution": m.has_attribution,
        "patterns": list(PATTERNS),
        "dtype": dtype,
        "max_error": MAX_ERROR[dtype],
        "segments_total": m.data.get("segments"),
        "segments_saved": len(run.indices()),
        "corpus": corpus_tables(run),
        "segments": segments,
    }


def check_same_segments(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two runs can share a page only when they hold the same segments (indices and token ids)."""
    ids_a = {s["index"]: s["ids"] for s in a["segments"]}
    ids_b = {s["index"]: s["ids"] for s in b["segments"]}
    if ids_a.keys() != ids_b.keys():
        raise BertstoryError(f"{a['run_dir']} and {b['run_dir']} saved different segments "
                             f"({sorted(ids_a)[:5]}... vs {sorted(ids_b)[:5]}...): compare runs over the same data")
    for k, ids in ids_a.items():
        if ids != ids_b[k]:
            raise BertstoryError(f"segment {k} has other tokens in {b['run_dir']} than in {a['run_dir']}: "
                                 "compare runs over the same data and tokenizer")

"""Paired comparison of two runs over the same segments: which heads really changed (``compare.json``).

For a table ``t`` and head (l, h), run A's mean is ``R_A = sum_k s^A_k / sum_k n^A_k`` over the same K
segments as run B's. The difference ``D = R_B - R_A`` has the paired segment-clustered standard error
``SE(D)^2 = K/(K-1) sum_k (z^B_k - z^A_k)^2`` with the influences ``z_k = (s_k - R n_k) / sum_k n_k``
(:mod:`bertstory.stats.clustered`): a segment's two values move together, so what one segment does
to both runs cancels. The p-value is two-sided (normal), and the Benjamini-Hochberg procedure keeps
the false discovery rate at ``alpha`` (5%) over all heads of all tables together (one family of
tests). Layer means (head means) get the same test on the segments' sums over heads, as a family
of their own.

The difference itself is taken from the two ``metrics.json`` (float64); the standard errors from the
per-segment statistics of the shards (:meth:`bertstory.results.Results.segment_stats`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bertstory.errors import BertstoryError
from bertstory.files import write_json_atomic
from bertstory.results.run import Results
from bertstory.results.run_metrics import as_array
from bertstory.results.shards import SegmentStats
from bertstory.stats.clustered import benjamini_hochberg, influence, influence_stderr, two_sided_p
from bertstory.stats.persistence import finite_or_none

ALPHA = 0.05
TEST = ("paired segment-clustered standard error, two-sided normal p-value, Benjamini-Hochberg at alpha over "
        "all heads of all tables (the layer means: over all layers of all tables)")


def fingerprint(run: Results) -> str | None:
    """The tokenised corpus's SHA-256 recorded when the run started (``maps/resume.json``), if any."""
    path = run.run_dir / "maps" / "resume.json"
    try:
        return json.loads(path.read_text()).get("data_sha256")
    except (OSError, ValueError):
        return None


def check_same_segments(a: Results, b: Results, stats_a: SegmentStats, stats_b: SegmentStats) -> None:
    """Refuse (one line) two runs whose segments are not the same: other indices, lengths or corpus."""
    same = (torch.equal(stats_a.indices, stats_b.indices)
            and torch.equal(stats_a.counts["queries"], stats_b.counts["queries"]))
    fa, fb = fingerprint(a), fingerprint(b)
    if not same or (fa is not None and fb is not None and fa != fb):
        raise BertstoryError(f"the runs are over different segments (A: {len(stats_a.indices)} segments, "
                             f"{int(stats_a.counts['queries'].sum())} tokens; B: {len(stats_b.indices)}, "
                             f"{int(stats_b.counts['queries'].sum())}): a paired comparison needs the same corpus "
                             "and data settings (data.*) in both runs")


def paired_test(sums_a: torch.Tensor, counts_a: torch.Tensor, sums_b: torch.Tensor, counts_b: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(D, SE(D), p)`` of ``D = R_B - R_A`` from per-segment sums and counts (K, ...) of both runs."""
    a, na, b, nb = (t.to(torch.float64) for t in (sums_a, counts_a, sums_b, counts_b))
    difference = b.sum(0) / nb.sum(0) - a.sum(0) / na.sum(0)
    stderr = influence_stderr(influence(b, nb) - influence(a, na))
    return difference, stderr, two_sided_p(difference, stderr)


def nested(values: torch.Tensor) -> list:
    """A tensor as nested lists, NaN as None."""
    if values.ndim == 0:
        return finite_or_none(float(values))
    return [nested(v) for v in values]


def compare_table(name: str, a: Results, b: Results, stats_a: SegmentStats, stats_b: SegmentStats) -> dict[str, Any]:
    """One table's per-head and per-layer paired test (differences from metrics.json), before the
    Benjamini-Hochberg step: tensors ``difference``, ``stderr``, ``p`` (L,H) and the same per layer (L,)."""
    sa, na, sb, nb = stats_a.sums[name], stats_a.count(name), stats_b.sums[name], stats_b.count(name)
    _, head_se, _ = paired_test(sa, na, sb, nb)
    diff = torch.from_numpy(as_array(b.metrics.table(name)) - as_array(a.metrics.table(name)))
    layer_diff, layer_se, layer_p = paired_test(sa.sum(2), na.sum(2), sb.sum(2), nb.sum(2))
    return {"difference": diff, "stderr": head_se, "p": two_sided_p(diff, head_se),
            "layer_means": {"difference": layer_diff, "stderr": layer_se, "p": layer_p}}


def family_bh(tests: dict[str, dict[str, torch.Tensor]], alpha: float) -> dict[str, torch.Tensor]:
    """Benjamini-Hochberg over the p-values of every table together: ``{table: significant (bool)}``."""
    names = list(tests)
    flat = torch.cat([tests[n]["p"].reshape(-1) for n in names]) if names else torch.zeros(0)
    flags = benjamini_hochberg(flat, alpha)
    out, start = {}, 0
    for n in names:
        size = tests[n]["p"].numel()
        out[n] = flags[start : start + size].reshape(tests[n]["p"].shape)
        start += size
    return out


def paired_comparison(a: Results, b: Results, alpha: float = ALPHA) -> dict[str, Any]:
    """``compare.json``: every LxH table both runs hold, tested head by head (B - A)."""
    stats_a, stats_b = a.segment_stats(), b.segment_stats()
    check_same_segments(a, b, stats_a, stats_b)
    names = [n for n in a.metrics.tables() if n in b.metrics.tables() and n in stats_a.sums and n in stats_b.sums]
    tests = {name: compare_table(name, a, b, stats_a, stats_b) for name in names}
    heads = family_bh(tests, alpha)
    layers = family_bh({n: t["layer_means"] for n, t in tests.items()}, alpha)
    tables = {}
    for n, t in tests.items():
        lm = t["layer_means"]
        tables[n] = {"difference": nested(t["difference"]), "stderr": nested(t["stderr"]), "p": nested(t["p"]),
                     "significant": heads[n].tolist(), "significant_heads": int(heads[n].sum()),
                     "layer_means": {"difference": nested(lm["difference"]), "stderr": nested(lm["stderr"]),
                                     "p": nested(lm["p"]), "significant": layers[n].tolist()}}
    return {"direction": "B - A", "run_a": str(a.run_dir), "run_b": str(b.run_dir), "segments": len(stats_a.indices),
            "alpha": alpha, "test": TEST, "tables": tables}


def significant_heads(result: dict[str, Any], name: str) -> list[tuple[int, int]]:
    """The (layer, head) pairs of table ``name`` that differ significantly."""
    flags = result["tables"][name]["significant"]
    return [(layer, head) for layer, row in enumerate(flags) for head, v in enumerate(row) if v]


def write_compare_json(result: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/compare.json``."""
    return write_json_atomic(result, Path(out_dir) / "compare.json")


def layer_steps(stats: SegmentStats, name: str, alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Within one run: does the head mean of table ``name`` change from layer l to layer l+1?

    For each step, ``D = mean_{l+1} - mean_l`` of the pooled layer means (``sum_k t_k / sum_k m_k``, the
    mean of the head means where the heads share a count) with its paired segment-clustered SE and
    p-value (:func:`paired_test`, the layers as the two "runs"), and whether it survives
    Benjamini-Hochberg at ``alpha`` over the L-1 steps. ``[{"from", "to", "difference", "stderr", "p",
    "significant"}]``.
    """
    sums, counts = stats.sums[name].sum(dim=2), stats.count(name).sum(dim=2)  # (K, L)
    diff, se, p = paired_test(sums[:, :-1], counts[:, :-1], sums[:, 1:], counts[:, 1:])
    significant = benjamini_hochberg(p, alpha)
    return [{"from": layer, "to": layer + 1, "difference": finite_or_none(float(diff[layer])),
             "stderr": finite_or_none(float(se[layer])), "p": finite_or_none(float(p[layer])),
             "significant": bool(significant[layer])} for layer in range(len(diff))]

"""All statistics of one analysis run as one module of torchmetrics Metrics, and their states as plain dicts.

:class:`AnalysisMetrics` updates every statistic of DESIGN.md from a batch and assembles the
``attention``, ``attribution``, ``uniform``, ``discrepancy``, ``persistence`` and ``stderr`` blocks
of metrics.json. :func:`metric_state` and :func:`merge_metric_state` move the sum states in and out,
which is how a batch's delta is saved for ``resume=true`` and added to the running sums.
:func:`batch_records` reads each segment's sums ``s_k`` per table (and its counts ``n_k``) of the last
update: the per-segment statistics kept in the shards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from bertstory.compat import count_merged_update
from bertstory.errors import BertstoryError
from bertstory.stats.clustered import Z95
from bertstory.stats.metrics import (
    DISCREPANCIES,
    Discrepancy,
    PatternMass,
    RowEntropy,
    SelfAttribution,
    UniformMass,
    ZeroRows,
)
from bertstory.stats.patterns import PATTERNS
from bertstory.stats.persistence import finite_or_none, lift_stderr, persistence

# metrics.json's LxH tables (flat names, as bertstory.results.RunMetrics.tables names them) -> (child, sum state)
TABLES: dict[str, tuple[str, str]] = {
    **{f"attention/patterns/{p}": ("attention_patterns", f"mass_{p}") for p in PATTERNS},
    "attention/entropy": ("attention_entropy", "entropy"),
    **{f"attribution/patterns/{p}": ("attribution_patterns", f"mass_{p}") for p in PATTERNS},
    "attribution/entropy": ("attribution_entropy", "entropy"),
    "attribution/self": ("attribution_self", "self_mass"),
    "attribution/self_top1": ("attribution_self", "self_top1"),
    **{f"uniform/patterns/{p}": ("uniform_patterns", f"uniform_{p}") for p in PATTERNS},
    **{f"discrepancy/{k}": ("discrepancy", k) for k in DISCREPANCIES},
}
# the query counts n_k the tables are means over: every table but spearman divides by ``queries``
COUNTS: dict[str, tuple[str, str]] = {"queries": ("uniform_patterns", "queries"),
                                      "spearman_queries": ("discrepancy", "spearman_queries")}
STDERR_BLOCKS = ("attention", "attribution", "discrepancy")


def table_count(name: str) -> str:
    """The count (a key of :data:`COUNTS`) that the table ``name`` is a mean over."""
    return "spearman_queries" if name == "discrepancy/spearman" else "queries"


def put(tree: dict, name: str, value: Any) -> None:
    """Set ``tree["a"]["b"]["c"] = value`` for ``name = "a/b/c"``, creating the dicts on the way."""
    *parents, last = name.split("/")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def nested(values: Tensor) -> list[list[float | None]]:
    """(L,H) tensor as ``[layer][head]`` floats; NaN (a head with nothing to average) becomes None."""
    return [[finite_or_none(v) for v in row] for row in values.tolist()]


class AnalysisMetrics(torch.nn.Module):
    """All statistics of one analysis run; ``compute_block()`` gives the metrics.json blocks.

    Each child Metric syncs itself across processes in ``compute()``; ``.to(device)`` moves all states.
    """

    def __init__(self, layers: int, heads: int, with_attribution: bool, tau: float = 0.5, kappa: float = 2.0) -> None:
        super().__init__()
        self.heads = heads
        self.with_attribution = with_attribution
        self.tau = tau
        self.kappa = kappa
        self.attention_patterns = PatternMass(layers, heads)
        self.attention_entropy = RowEntropy(layers, heads)
        self.uniform_patterns = UniformMass(layers, heads)
        if with_attribution:
            self.attribution_patterns = PatternMass(layers, heads, lift=True)
            self.attribution_entropy = RowEntropy(layers, heads)
            self.attribution_self = SelfAttribution(layers, heads)
            self.discrepancy = Discrepancy(layers, heads)
            self.zero_rows = ZeroRows()

    def update(
        self,
        attention: Tensor,
        attribution: Tensor | None,
        attention_mask: Tensor,
        masks: Mapping[str, Tensor],
        zero_rows: int = 0,
    ) -> None:
        """Add one batch: attention and attribution (B,L,H,n,n), attention_mask (B,n), masks {p: (B,n,n)},
        and the batch's count of attribution rows that needed the zero-row rule."""
        if (attribution is not None) != self.with_attribution:
            raise ValueError(f"attribution {'missing' if attribution is None else 'given'} but "
                             f"with_attribution={self.with_attribution}")
        self.attention_patterns.update(attention, attention_mask, masks)
        self.attention_entropy.update(attention, attention_mask)
        self.uniform_patterns.update(attention_mask, masks)
        if attribution is not None:
            self.attribution_patterns.update(attribution, attention_mask, masks)
            self.attribution_entropy.update(attribution, attention_mask)
            self.attribution_self.update(attribution, attention_mask)
            self.discrepancy.update(attention, attribution, attention_mask)
            self.zero_rows.update(zero_rows)

    @property
    def zero_row_count(self) -> int:
        """Attribution rows that became uniform, summed over processes (a collective call under DDP)."""
        return int(self.zero_rows.compute()) if self.with_attribution else 0

    @property
    def queries(self) -> int:
        """Number of non-padding query positions seen, summed over processes under DDP.

        A collective call under DDP: every process must read it.
        """
        with self.uniform_patterns.sync_context():
            return int(self.uniform_patterns.queries.item())

    @property
    def spearman_undefined(self) -> list[list[float | None]]:
        """Per head, the number of queries left out of ``spearman`` (constant rows): ``[layer][head]``."""
        return nested(self.discrepancy.compute()["spearman_undefined"])

    def compute_block(self) -> dict[str, Any]:
        """JSON-ready ``attention``, ``uniform`` and (with attribution) ``attribution``, ``discrepancy``,
        ``persistence`` blocks of metrics.json, ``[layer][head]`` nested lists of floats.

        A mean with nothing to average (no query seen; ``spearman`` of a head without a single
        defined correlation) is NaN in ``compute()`` and None here, so the JSON stays strict.
        A collective call under DDP: every process must call it.
        """
        att_patterns = self.attention_patterns.compute()
        uniform = self.uniform_patterns.compute()
        blocks: dict[str, Any] = {
            "attention": {
                "patterns": {p: nested(v) for p, v in att_patterns.items()},
                "entropy": nested(self.attention_entropy.compute()),
            },
        }
        if self.with_attribution:
            attr_patterns = self.attribution_patterns.compute()
            self_stats = self.attribution_self.compute()
            discrepancy = self.discrepancy.compute()
            blocks["attribution"] = {
                "patterns": {p: nested(v) for p, v in attr_patterns.items()},
                "entropy": nested(self.attribution_entropy.compute()),
                "self": nested(self_stats["self"]),
                "self_top1": nested(self_stats["self_top1"]),
            }
        blocks["uniform"] = {"patterns": {p: nested(v) for p, v in uniform.items()}}
        if self.with_attribution:
            blocks["discrepancy"] = {k: nested(discrepancy[k]) for k in DISCREPANCIES}
            blocks["persistence"] = persistence(att_patterns, attr_patterns, uniform, self.tau, self.kappa)
            lift_se = lift_stderr(synced_states(self.attribution_patterns), synced_states(self.uniform_patterns),
                                  self.heads)
            blocks["persistence"].update(ci_persistence(blocks["persistence"], lift_se))
        blocks["stderr"] = self.stderr_block()
        return blocks

    def stderr_block(self) -> dict[str, Any]:
        """The ``stderr`` block: the segment-clustered SE of every table of ``attention``, ``attribution``
        and ``discrepancy`` (same layout), and under ``layer_means`` the SE of each table's head mean per
        layer (``[L]``). A collective call under DDP."""
        errors = {name: child.standard_errors() for name, child in self.named_children()
                  if isinstance(child, Metric) and hasattr(child, "standard_errors")}
        block: dict[str, Any] = {}
        layers: dict[str, Any] = {}
        for table, (child, state) in TABLES.items():
            if table.split("/")[0] in STDERR_BLOCKS and child in errors:
                head_se, layer_se = errors[child][state]
                put(block, table, nested(head_se))
                put(layers, table, [finite_or_none(v) for v in layer_se.tolist()])
        return {**block, "layer_means": layers}

    def reset(self) -> None:
        """Reset every child Metric."""
        for child in self.children():
            if isinstance(child, Metric):
                child.reset()


def synced_states(metric: Metric) -> dict[str, Tensor]:
    """A copy of ``metric``'s states summed over processes (a collective call under DDP)."""
    with metric.sync_context():
        return {k: v.detach().clone() for k, v in metric.metric_state.items()}


def ci_persistence(block: Mapping[str, Any], lift_se: Mapping[str, list[float | None]]) -> dict[str, Any]:
    """``lift_stderr`` ``{p: [L]}`` and ``persists_ci`` ``{p: bool}``: true when the lower end of the 95%
    interval, ``lift[p][l] - Z95 * lift_stderr[p][l]``, is at least kappa in every layer."""
    kappa = block["kappa"]
    ok = {p: all(v is not None and s is not None and v - Z95 * s >= kappa
                 for v, s in zip(block["lift"][p], lift_se[p], strict=True)) for p in block["lift"]}
    return {"lift_stderr": dict(lift_se), "persists_ci": ok}


def batch_records(metrics: AnalysisMetrics) -> dict[str, Tensor]:
    """The per-segment statistics of the last :meth:`AnalysisMetrics.update`: each segment's sums ``s_k``
    ``{table: (B,L,H)}`` and its counts, ``queries`` (B,) and ``spearman_queries`` (B,L,H), float32."""
    children = dict(metrics.named_children())
    wanted = {**TABLES, **COUNTS}
    return {key: children[child].last_batch[state].to(torch.float32) for key, (child, state) in wanted.items()
            if child in children}


def segment_deltas(scratch: AnalysisMetrics, attention: Tensor, attribution: Tensor | None, attention_mask: Tensor,
                   masks: Mapping[str, Tensor], zero_rows: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A batch's delta metric state and its per-segment records.

    ``scratch`` is reset and updated with the batch; the delta is its state (:func:`metric_state`), the
    records are :func:`batch_records`. Inputs as for :meth:`AnalysisMetrics.update`.
    """
    scratch.reset()
    scratch.update(attention, attribution, attention_mask, masks, zero_rows)
    delta = {key: value.clone() for key, value in metric_state(scratch).items()}
    return delta, batch_records(scratch)


def metric_state(metrics: torch.nn.Module) -> dict[str, Tensor]:
    """Every state of every torchmetrics child of ``metrics``, keyed ``"{child}.{state}"``."""
    return {
        f"{name}.{key}": value
        for name, child in metrics.named_children()
        if isinstance(child, Metric)
        for key, value in child.metric_state.items()
    }


def merge_metric_state(metrics: torch.nn.Module, state: Mapping[str, Tensor]) -> None:
    """Add ``state`` (as from :func:`metric_state`) into the sum states of ``metrics``."""
    for name, child in metrics.named_children():
        if not isinstance(child, Metric):
            continue
        incoming = {}
        for key, value in child.metric_state.items():
            full = f"{name}.{key}"
            if full not in state:
                raise BertstoryError(f"saved metric state lacks {full}: the shards come from another version; "
                                     "rerun without resume=true into a new hydra.run.dir")
            incoming[key] = state[full].to(device=value.device, dtype=value.dtype)
        child.merge_state(incoming)
        count_merged_update(child)

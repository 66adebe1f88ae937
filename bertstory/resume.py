"""Resuming an interrupted analysis: what a run directory's shards say is already done.

Every batch of every process writes one shard ``maps/rank{r}-batch{b:06d}.safetensors``
(:mod:`bertstory.writer`), atomically, after the batch. Besides the maps of its kept segments
it holds the batch's bookkeeping:

- ``__done__`` int64 (B,): the dataset indices of every segment of the batch;
- ``__zero_rows__`` int64 (): attribution rows of the batch that were all zero (uniform rule);
- ``__metric__.{metric}.{state}`` float64: the batch's *delta* metric state, i.e. the states of
  a fresh :class:`~bertstory.metrics.AnalysisMetrics` updated on that batch alone.

Metric states are sums (``dist_reduce_fx="sum"``), so the state after any set of batches is the
sum of their deltas; the running metrics of :class:`~bertstory.module.AnalysisModule` are built
exactly so (``running = running + delta`` after each batch). A shard exists if and only if its
batch is finished; ``maps/resume.json`` (written when the run starts) records the config and a
fingerprint of the tokenised corpus.

``analyze.py ... resume=true`` into the same run directory:

1. :func:`load_previous` checks the config against ``maps/resume.json`` (the keys in
   :data:`IGNORED` may differ) and reads every shard's bookkeeping (not its maps);
2. :meth:`Previous.check_data` checks the corpus is the same (fingerprint of the token ids);
3. the data module skips the finished segments; rank 0's running metrics and ``zero_rows`` start
   from the sums of the saved deltas (:meth:`Previous.seed`; other processes start at zero, so the
   DDP sum-reduction counts them once);
4. new shards are numbered after the highest batch index of their rank (:attr:`Previous.next_batch`).

The resumed ``metrics.json`` equals that of an uninterrupted run up to float round-off.
Without ``resume=true``, a run directory that already holds shards is refused
(:func:`check_fresh`), so an earlier run's maps are never overwritten or mixed in.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from torch import Tensor
from torchmetrics import Metric

from bertstory.errors import BertstoryError

log = logging.getLogger(__name__)

DONE = "__done__"
ZERO_ROWS = "__zero_rows__"
METRIC = "__metric__."
RECORD = "resume.json"
SHARD_NAME = re.compile(r"rank(\d+)-batch(\d+)\.safetensors")

# Config keys that may change between a run and its resumption: they decide how the work is
# run and reported, not what is computed.
IGNORED = (
    "resume",
    "hydra",
    "logger",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.enable_progress_bar",
    "data.num_workers",
)


# --------------------------------------------------------------------------- metric state


def metric_state(metrics: torch.nn.Module) -> dict[str, Tensor]:
    """Every state of every torchmetrics child of ``metrics``, keyed ``"{child}.{state}"``."""
    return {
        f"{name}.{key}": value
        for name, child in metrics.named_children()
        if isinstance(child, Metric)
        for key, value in child.metric_state.items()
    }


def merge_metric_state(metrics: torch.nn.Module, state: dict[str, Tensor]) -> None:
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
        child._update_count += 1  # merged data counts as an update (no "compute before update" warning)
        child._computed = None  # drop any cached result


# --------------------------------------------------------------------------- run record


def comparable_config(cfg: DictConfig) -> dict:
    """The config as plain containers (interpolations unresolved) without the :data:`IGNORED` keys."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    for dotted in IGNORED:
        *parents, last = dotted.split(".")
        node = tree
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return tree


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts, as ``key: old -> new``."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out


def data_fingerprint(input_ids: list[list[int]], token_type_ids: list[bytes] | None = None) -> str:
    """SHA-256 of the tokenised corpus (token ids, segment boundaries and token types)."""
    h = hashlib.sha256()
    for k, ids in enumerate(input_ids):
        h.update(len(ids).to_bytes(4, "little"))
        h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
        if token_type_ids is not None:
            h.update(bytes(token_type_ids[k]))
    return h.hexdigest()


def save_record(run_dir: Path, cfg: DictConfig, stats: dict, fingerprint: str) -> None:
    """Write ``maps/resume.json``: the config and the corpus fingerprint the shards belong to."""
    from bertstory.writer import write_json_atomic

    maps = Path(run_dir) / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"config": comparable_config(cfg), "data": dict(stats), "data_sha256": fingerprint},
                      maps / RECORD)


# --------------------------------------------------------------------------- previous shards


def shard_rank_batch(path: Path) -> tuple[int, int]:
    """``(rank, batch)`` from a shard's file name."""
    m = SHARD_NAME.fullmatch(path.name)
    if m is None:
        raise ValueError(f"not a shard name: {path.name}")
    return int(m.group(1)), int(m.group(2))


@dataclass
class Previous:
    """What the shards of an earlier run in this directory hold (nothing for a fresh run)."""

    run_dir: Path
    record: dict | None = None
    done: set[int] = field(default_factory=set)
    state: dict[str, Tensor] = field(default_factory=dict)
    zero_rows: int = 0
    next_batch: dict[int, int] = field(default_factory=dict)
    shards: int = 0

    def check_data(self, stats: dict, fingerprint: str) -> None:
        """Refuse to resume when the tokenised corpus differs from the one the shards were made from."""
        if self.record is None:
            return
        if self.record.get("data_sha256") != fingerprint:
            raise BertstoryError(
                f"cannot resume {self.run_dir}: the corpus changed since the run started (it had "
                f"{self.record.get('data', {}).get('segments')} segments, now {stats['segments']}): restore the "
                "original corpus, or start a new run in another hydra.run.dir"
            )

    def seed(self, metrics: torch.nn.Module, method) -> None:
        """Start rank 0's running metrics and zero-row count from the finished batches."""
        if self.state:
            merge_metric_state(metrics, self.state)
        method.zero_rows += self.zero_rows


def read_shards(run_dir: Path) -> Previous:
    """Sum the bookkeeping of every shard under ``run_dir/maps`` (the maps themselves are not read)."""
    from bertstory.writer import shard_paths

    prev = Previous(run_dir=run_dir)
    for path in shard_paths(run_dir):
        rank, batch = shard_rank_batch(path)
        prev.next_batch[rank] = max(prev.next_batch.get(rank, 0), batch + 1)
        try:
            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
                if DONE not in keys:
                    raise BertstoryError(f"cannot resume {run_dir}: shard {path.name} has no saved progress "
                                         "(written by an older bertstory): start a new run in another hydra.run.dir")
                done = f.get_tensor(DONE).tolist()
                if ZERO_ROWS in keys:
                    prev.zero_rows += int(f.get_tensor(ZERO_ROWS))
                for key in sorted(k for k in keys if k.startswith(METRIC)):
                    value = f.get_tensor(key).to(torch.float64)
                    name = key[len(METRIC):]
                    prev.state[name] = prev.state[name] + value if name in prev.state else value
        except BertstoryError:
            raise
        except Exception as e:  # a damaged file: safetensors raises its own error types
            raise BertstoryError(f"cannot read shard {path} ({e}): move it away and resume again "
                                 "(its segments will be analysed again)") from e
        twice = prev.done.intersection(done)
        if twice:
            raise BertstoryError(f"cannot resume {run_dir}: segment {min(twice)} is in two shards; "
                                 "start a new run in another hydra.run.dir")
        prev.done.update(done)
        prev.shards += 1
    return prev


def load_previous(run_dir: str | os.PathLike, cfg: DictConfig) -> Previous:
    """Check the config against the run's record and read its shards (``resume=true``)."""
    run_dir = Path(run_dir)
    record_path = run_dir / "maps" / RECORD
    record = None
    if record_path.is_file():
        import json

        record = json.loads(record_path.read_text())
        diffs = config_differences(record["config"], comparable_config(cfg))
        if diffs:
            shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
            raise BertstoryError(f"cannot resume {run_dir} with a different config ({shown}): resume with the "
                                 "original settings, or start a new run in another hydra.run.dir")
    prev = read_shards(run_dir)
    if prev.shards and record is None:
        raise BertstoryError(f"cannot resume {run_dir}: maps/{RECORD} is missing, so the run's config is "
                             "unknown: start a new run in another hydra.run.dir")
    prev.record = record
    if prev.shards:
        log.info("resuming %s: %d segments already analysed in %d shards", run_dir, len(prev.done), prev.shards)
    else:
        log.info("resume=true but %s holds no finished batch: starting from the beginning", run_dir)
    return prev


def previous_run(cfg: DictConfig, run_dir: str | os.PathLike) -> Previous:
    """The earlier run to continue with ``resume=true`` (:func:`load_previous`), else :func:`check_fresh`."""
    return load_previous(run_dir, cfg) if cfg.get("resume", False) else check_fresh(run_dir)


def check_fresh(run_dir: str | os.PathLike) -> Previous:
    """A new run: refuse a directory that already holds shards (never overwrite an earlier run's work)."""
    from bertstory.writer import shard_paths

    run_dir = Path(run_dir)
    if shard_paths(run_dir):
        raise BertstoryError(f"{run_dir} already holds the shards of an earlier run: continue it with "
                             "resume=true, or choose another hydra.run.dir")
    return Previous(run_dir=run_dir)

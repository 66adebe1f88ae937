"""Resuming an interrupted analysis: checking that a run directory's shards belong to this config and corpus.

Every finished batch is a shard that records its segments and its metric deltas
(:mod:`bertstory.results.shards`); ``maps/resume.json`` (written when the run starts) records the
config and a fingerprint of the tokenised corpus.

``analyze.py ... resume=true`` into the same run directory:

1. :func:`load_previous` checks the config against ``maps/resume.json`` (the keys in
   :data:`IGNORED` may differ) and reads every shard's progress (not its maps);
2. :meth:`Previous.check_data` checks the corpus is the same (fingerprint of the token ids);
3. the data module skips the finished segments; rank 0's running metrics start from the sums of
   the saved deltas (:meth:`Previous.seed`; other processes start at zero, so the DDP
   sum-reduction counts them once);
4. new shards are numbered after the highest batch index of their rank (``Previous.progress.next_batch``).

The resumed ``metrics.json`` equals that of an uninterrupted run up to float round-off.
Without ``resume=true``, a run directory that already holds shards is refused
(:func:`check_fresh`), so an earlier run's maps are never overwritten or mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bertstory.errors import BertstoryError
from bertstory.files import write_json_atomic
from bertstory.results.shards import Progress, maps_dir, read_progress, shard_paths
from bertstory.stats.collection import merge_metric_state

log = logging.getLogger(__name__)

RECORD = "resume.json"

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
    "viewer",
)


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
    maps = maps_dir(run_dir)
    maps.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"config": comparable_config(cfg), "data": dict(stats), "data_sha256": fingerprint},
                      maps / RECORD)


# --------------------------------------------------------------------------- previous shards


@dataclass
class Previous:
    """What the shards of an earlier run in this directory hold (nothing for a fresh run)."""

    run_dir: Path
    record: dict | None = None
    progress: Progress = field(default_factory=Progress)

    @property
    def done(self) -> set[int]:
        return self.progress.done

    @property
    def next_batch(self) -> dict[int, int]:
        return self.progress.next_batch

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

    def seed(self, metrics: torch.nn.Module) -> None:
        """Start rank 0's running metrics from the finished batches."""
        if self.progress.state:
            merge_metric_state(metrics, self.progress.state)


def load_previous(run_dir: str | os.PathLike, cfg: DictConfig) -> Previous:
    """Check the config against the run's record and read its shards (``resume=true``)."""
    run_dir = Path(run_dir)
    record_path = run_dir / "maps" / RECORD
    record = None
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        diffs = config_differences(record["config"], comparable_config(cfg))
        if diffs:
            shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
            raise BertstoryError(f"cannot resume {run_dir} with a different config ({shown}): resume with the "
                                 "original settings, or start a new run in another hydra.run.dir")
    prev = Previous(run_dir=run_dir, progress=read_progress(run_dir))
    if prev.progress.shards and record is None:
        raise BertstoryError(f"cannot resume {run_dir}: maps/{RECORD} is missing, so the run's config is "
                             "unknown: start a new run in another hydra.run.dir")
    prev.record = record
    if prev.progress.shards:
        log.info("resuming %s: %d segments already analysed in %d shards", run_dir, len(prev.done),
                 prev.progress.shards)
    else:
        log.info("resume=true but %s holds no finished batch: starting from the beginning", run_dir)
    return prev


def previous_run(cfg: DictConfig, run_dir: str | os.PathLike) -> Previous:
    """The earlier run to continue with ``resume=true`` (:func:`load_previous`), else :func:`check_fresh`."""
    return load_previous(run_dir, cfg) if cfg.get("resume", False) else check_fresh(run_dir)


def check_fresh(run_dir: str | os.PathLike) -> Previous:
    """A new run: refuse a directory that already holds shards (never overwrite an earlier run's work)."""
    run_dir = Path(run_dir)
    if shard_paths(run_dir):
        raise BertstoryError(f"{run_dir} already holds the shards of an earlier run: continue it with "
                             "resume=true, or choose another hydra.run.dir")
    return Previous(run_dir=run_dir)

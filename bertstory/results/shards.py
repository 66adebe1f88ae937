"""The shard store: every file under a run's ``maps/`` folder is written (by the run's writer) and read here.

Shard ``maps/rank{r}-batch{b:06d}.safetensors`` (one per batch and process, DESIGN.md) holds,
for each kept segment with dataset index k: ``"{k}.input_ids"`` int64 (n), ``"{k}.attention"``
(L, H, n, n) and, with an attribution method, ``"{k}.attribution"`` (L, H, n, n, rows
normalised), padding stripped. Every batch writes a shard, also when none of its segments keeps
maps: it records the batch's progress for ``resume=true`` in keys that start with ``__``:

- ``__done__`` int64 (B,): the dataset indices of every segment of the batch;
- ``__metric__.{metric}.{state}`` float64: the batch's *delta* metric state, i.e. the states of
  a fresh :class:`~bertstory.stats.collection.AnalysisMetrics` updated on that batch alone;
- ``__segment__.{table}`` float32 (B,L,H): each segment's sum ``s_k`` over its queries of every
  LxH table of metrics.json (``attention/patterns/cls``, ..., ``discrepancy/spearman``), and its
  counts ``__segment__.queries`` (B,) and ``__segment__.spearman_queries`` (B,L,H), rows in
  ``__done__``'s order: the per-segment statistics (:func:`read_segment_stats`).

Metric states are sums, so the state after any set of batches is the sum of their deltas. A shard
is written to a temporary name and renamed, so it exists if and only if its batch is finished.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bertstory.errors import BertstoryError
from bertstory.stats.collection import table_count

DONE = "__done__"
METRIC = "__metric__."
SEGMENT = "__segment__."
SHARD_NAME = re.compile(r"rank(\d+)-batch(\d+)\.safetensors")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def maps_dir(run_dir: str | os.PathLike) -> Path:
    """The folder of a run's shards."""
    return Path(run_dir) / "maps"


def shard_path(run_dir: str | os.PathLike, rank: int, batch: int) -> Path:
    """Where batch ``batch`` of process ``rank`` is stored."""
    return maps_dir(run_dir) / f"rank{rank}-batch{batch:06d}.safetensors"


def shard_rank_batch(path: Path) -> tuple[int, int]:
    """``(rank, batch)`` from a shard's file name."""
    m = SHARD_NAME.fullmatch(path.name)
    if m is None:
        raise ValueError(f"not a shard name: {path.name}")
    return int(m.group(1)), int(m.group(2))


def shard_paths(run_dir: str | os.PathLike) -> list[Path]:
    """The run's shard files, in (rank, batch) order."""
    return sorted(maps_dir(run_dir).glob("rank*-batch*.safetensors"))


# --------------------------------------------------------------------------- writing


def shard_tensors(prediction: dict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The shard's tensors for one batch's prediction, padding stripped, with the batch's progress."""
    tensors = progress_tensors(prediction)
    lengths = prediction["attention_mask"].sum(-1).tolist()
    for row, (k, n) in enumerate(zip(prediction["index"].tolist(), lengths, strict=True)):
        n = int(n)
        tensors[f"{k}.input_ids"] = prediction["input_ids"][row, :n].to(torch.int64).cpu().contiguous()
        tensors[f"{k}.attention"] = prediction["attention"][row, :, :, :n, :n].to(dtype).cpu().contiguous()
        if prediction.get("attribution") is not None:
            tensors[f"{k}.attribution"] = prediction["attribution"][row, :, :, :n, :n].to(dtype).cpu().contiguous()
    return tensors


def progress_tensors(prediction: dict) -> dict[str, torch.Tensor]:
    """``__done__`` and ``__metric__.*`` of a prediction (empty when it has none)."""
    if "done" not in prediction:
        return {}
    tensors = {DONE: prediction["done"].to(torch.int64).cpu().contiguous()}
    for name, value in prediction.get("metric_state", {}).items():
        tensors[METRIC + name] = value.detach().to(torch.float64).cpu().contiguous()
    for name, value in prediction.get("segment_stats", {}).items():
        tensors[SEGMENT + name] = value.detach().to(torch.float32).cpu().contiguous()
    return tensors


def save_shard(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Save to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def remove_partial_shards(run_dir: str | os.PathLike, rank: int) -> None:
    """Remove the temporary files a killed run of process ``rank`` left (never a finished shard)."""
    for tmp in maps_dir(run_dir).glob(f"rank{rank}-batch*.safetensors.tmp"):
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- reading maps


def iter_maps(run_dir: str | os.PathLike) -> Iterator[tuple[int, dict[str, torch.Tensor], dict[str, str]]]:
    """Lazily yield ``(k, {"input_ids", "attention", "attribution"?}, metadata)`` for every saved segment,
    sorted by dataset index k within each shard, one shard open at a time."""
    for path in shard_paths(run_dir):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = [key for key in f.keys() if not key.startswith("__")]
            for k in sorted({int(key.split(".")[0]) for key in keys}):
                fields = {name.split(".", 1)[1]: f.get_tensor(name) for name in keys if name.split(".")[0] == str(k)}
                yield k, fields, meta


def segment_shards(run_dir: str | os.PathLike) -> dict[int, Path]:
    """The shard that holds each saved segment's maps, by dataset index (reads only the shard headers)."""
    where: dict[int, Path] = {}
    for path in shard_paths(run_dir):
        with safe_open(str(path), framework="pt") as f:
            where.update({int(key.split(".")[0]): path for key in f.keys() if key.split(".")[0].isdigit()})
    return where


def read_segment(path: Path, k: int) -> dict[str, torch.Tensor]:
    """Segment k's tensors (``input_ids``, ``attention``, ``attribution``?) from the shard at ``path``."""
    with safe_open(str(path), framework="pt") as f:
        prefix = f"{k}."
        return {key[len(prefix):]: f.get_tensor(key) for key in f.keys() if key.startswith(prefix)}


def saved_indices(run_dir: str | os.PathLike) -> list[int]:
    """Sorted dataset indices of the segments whose maps were saved (reads only the shard headers)."""
    return sorted(segment_shards(run_dir))


# --------------------------------------------------------------------------- reading progress


@dataclass
class Progress:
    """What the shards of a run directory say is done: the finished segments, the summed metric deltas,
    the next batch number per rank, and how many shards there are."""

    done: set[int] = field(default_factory=set)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    next_batch: dict[int, int] = field(default_factory=dict)
    shards: int = 0


def read_progress(run_dir: str | os.PathLike) -> Progress:
    """Sum the bookkeeping of every shard under ``run_dir/maps`` (the maps themselves are not read)."""
    progress = Progress()
    for path in shard_paths(run_dir):
        rank, batch = shard_rank_batch(path)
        progress.next_batch[rank] = max(progress.next_batch.get(rank, 0), batch + 1)
        done = read_shard_progress(path, progress.state)
        twice = progress.done.intersection(done)
        if twice:
            raise BertstoryError(f"cannot resume {run_dir}: segment {min(twice)} is in two shards; "
                                 "start a new run in another hydra.run.dir")
        progress.done.update(done)
        progress.shards += 1
    return progress


def read_shard_progress(path: Path, state: dict[str, torch.Tensor]) -> list[int]:
    """One shard's finished dataset indices; its metric deltas are added into ``state``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if DONE not in keys:
                raise BertstoryError(f"cannot resume {path.parent.parent}: shard {path.name} has no saved progress "
                                     "(written by an older bertstory): start a new run in another hydra.run.dir")
            for key in sorted(k for k in keys if k.startswith(METRIC)):
                value = f.get_tensor(key).to(torch.float64)
                name = key[len(METRIC):]
                state[name] = state[name] + value if name in state else value
            return f.get_tensor(DONE).tolist()
    except BertstoryError:
        raise
    except Exception as e:  # a damaged file: safetensors raises its own error types
        raise BertstoryError(f"cannot read shard {path} ({e}): move it away and resume again "
                             "(its segments will be analysed again)") from e


# --------------------------------------------------------------------------- reading per-segment statistics


@dataclass
class SegmentStats:
    """Every segment's sums and counts, sorted by dataset index: ``indices`` (K,) int64; ``sums``
    ``{table: (K,L,H)}`` (``s_k``, float32 as stored); ``counts`` ``{"queries": (K,), "spearman_queries":
    (K,L,H)}``. A table's corpus mean is ``sums[t].sum(0) / count(t).sum(0)``."""

    indices: torch.Tensor
    sums: dict[str, torch.Tensor]
    counts: dict[str, torch.Tensor]

    def count(self, table: str) -> torch.Tensor:
        """The counts ``n_k`` the table is a mean over, as (K,L,H)."""
        n = self.counts[table_count(table)]
        return n[:, None, None].expand_as(self.sums[table]) if n.ndim == 1 else n

    def means(self, table: str) -> torch.Tensor:
        """Each segment's own value of the table, ``s_k / n_k`` (K,L,H) float64 (NaN where ``n_k = 0``)."""
        return self.sums[table].double() / self.count(table).double()


def has_segment_stats(run_dir: str | os.PathLike) -> bool:
    """Whether the run's shards keep per-segment statistics (reads one shard header)."""
    paths = shard_paths(run_dir)
    if not paths:
        return False
    with safe_open(str(paths[0]), framework="pt") as f:
        return any(k.startswith(SEGMENT) for k in f.keys())


def read_segment_stats(run_dir: str | os.PathLike, saved: Iterable[int] | None = None) -> SegmentStats:
    """Gather the per-segment statistics of every shard of ``run_dir``, or of only the shards that hold the
    maps of the ``saved`` segments (every segment of those shards comes back). Raises BertstoryError when a
    shard has none: a run made before they were kept."""
    indices: list[torch.Tensor] = []
    parts: dict[str, list[torch.Tensor]] = {}
    if saved is None:
        paths = shard_paths(run_dir)
    else:
        where = segment_shards(run_dir)
        paths = sorted({where[k] for k in saved})
    if not paths:
        raise BertstoryError(f"{run_dir} holds no shards (maps/rank*-batch*.safetensors): give the directory of a "
                             "finished analysis run")
    for path in paths:
        with safe_open(str(path), framework="pt") as f:
            keys = [k for k in f.keys() if k.startswith(SEGMENT)]
            if not keys:
                raise BertstoryError(f"{path} has no per-segment statistics (made by an older bertstory): rerun the "
                                     "analysis to get standard errors and paired comparisons")
            indices.append(f.get_tensor(DONE))
            for key in keys:
                parts.setdefault(key[len(SEGMENT):], []).append(f.get_tensor(key))
    index = torch.cat(indices)
    order = index.argsort()
    values = {name: torch.cat(chunks)[order] for name, chunks in parts.items()}
    counts = {name: values.pop(name) for name in ("queries", "spearman_queries") if name in values}
    return SegmentStats(indices=index[order], sums=values, counts=counts)

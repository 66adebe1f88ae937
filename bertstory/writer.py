"""The prediction writer (safetensors shards under ``maps/``) and the run-directory loader.

Shard ``maps/rank{r}-batch{b:06d}.safetensors`` holds, for each kept segment with dataset
index k: ``"{k}.input_ids"`` int64 (n), ``"{k}.attention"`` (L, H, n, n) and, with an
attribution method, ``"{k}.attribution"`` (L, H, n, n, rows normalised), in ``dtype``.
Padding is stripped: n is the segment's own length. Shards are written to a temporary
name and renamed, so a killed run never leaves half a file.

Every batch writes a shard, also when none of its segments keeps maps: it records the batch's
progress for ``resume=true`` in keys that start with ``__`` (``__done__``, ``__zero_rows__``,
``__metric__.*``; see :mod:`bertstory.resume`), a few KB per batch. :func:`iter_maps` skips them.
A resumed run numbers its new shards after the highest batch index of each rank (``first_batch``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from safetensors import safe_open
from safetensors.torch import save_file

from bertstory.errors import BertstoryError
from bertstory.resume import DONE, METRIC, ZERO_ROWS

WRITER_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class MapWriter(BasePredictionWriter):
    """Writes each batch's maps to one safetensors shard per batch and process."""

    def __init__(self, output_dir: str | os.PathLike, dtype: str = "float16", metadata: dict | None = None,
                 first_batch: dict[int, int] | None = None):
        super().__init__(write_interval="batch")
        if dtype not in WRITER_DTYPES:
            raise BertstoryError(f"writer.dtype must be one of {', '.join(WRITER_DTYPES)}, not {dtype!r}")
        self.dir = Path(output_dir) / "maps"
        self.dtype = WRITER_DTYPES[dtype]
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}
        self.first_batch = dict(first_batch or {})
        self.segments_written = 0

    def on_predict_start(self, trainer, pl_module) -> None:
        """Remove this rank's temporary files left by a killed run (never a finished shard)."""
        for tmp in self.dir.glob(f"rank{trainer.global_rank}-batch*.safetensors.tmp"):
            tmp.unlink(missing_ok=True)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        if prediction is None:
            return
        tensors = shard_tensors(prediction, self.dtype)
        self.dir.mkdir(parents=True, exist_ok=True)
        number = self.first_batch.get(trainer.global_rank, 0) + batch_idx
        path = self.dir / f"rank{trainer.global_rank}-batch{number:06d}.safetensors"
        atomic_save(tensors, path, self.metadata)
        self.segments_written += len(prediction["index"])


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
    """``__done__``, ``__zero_rows__`` and ``__metric__.*`` of a prediction (empty when it has none)."""
    if "done" not in prediction:
        return {}
    tensors = {
        DONE: prediction["done"].to(torch.int64).cpu().contiguous(),
        ZERO_ROWS: torch.tensor(int(prediction.get("zero_rows", 0)), dtype=torch.int64),
    }
    for name, value in prediction.get("metric_state", {}).items():
        tensors[METRIC + name] = value.detach().to(torch.float64).cpu().contiguous()
    return tensors


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Save to ``path`` through a temporary file and an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def write_json_atomic(obj: dict, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def shard_paths(run_dir: str | os.PathLike) -> list[Path]:
    """The run's shard files, in (rank, batch) order."""
    return sorted((Path(run_dir) / "maps").glob("rank*-batch*.safetensors"))


def iter_maps(run_dir: str | os.PathLike) -> Iterator[tuple[int, dict[str, torch.Tensor], dict[str, str]]]:
    """Lazily yield ``(k, {"input_ids", "attention", "attribution"?}, metadata)`` for every saved segment,
    sorted by dataset index k within each shard, one shard open at a time."""
    for path in shard_paths(run_dir):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = [key for key in f.keys() if not key.startswith("__")]
            indices = sorted({int(key.split(".")[0]) for key in keys})
            for k in indices:
                fields = {name.split(".", 1)[1]: f.get_tensor(name) for name in keys if name.split(".")[0] == str(k)}
                yield k, fields, meta

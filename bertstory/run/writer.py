"""The prediction writer: a Lightning ``BasePredictionWriter`` that stores each batch as one shard.

What a shard holds and how it is named is :mod:`bertstory.results.shards`. A resumed run numbers its
new shards after the highest batch index of each rank (``first_batch``).
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from bertstory.errors import BertstoryError
from bertstory.results.shards import DTYPES, remove_partial_shards, save_shard, shard_path, shard_tensors


class MapWriter(BasePredictionWriter):
    """Writes each batch's maps and progress to one safetensors shard per batch and process."""

    def __init__(self, run_dir: str | os.PathLike, dtype: str = "float16", metadata: dict | None = None,
                 first_batch: dict[int, int] | None = None):
        super().__init__(write_interval="batch")
        if dtype not in DTYPES:
            raise BertstoryError(f"writer.dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        self.run_dir = Path(run_dir)
        self.dtype = DTYPES[dtype]
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}
        self.first_batch = dict(first_batch or {})
        self.segments_written = 0

    def on_predict_start(self, trainer, pl_module) -> None:
        remove_partial_shards(self.run_dir, trainer.global_rank)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        if prediction is None:
            return
        number = self.first_batch.get(trainer.global_rank, 0) + batch_idx
        save_shard(shard_tensors(prediction, self.dtype), shard_path(self.run_dir, trainer.global_rank, number),
                   self.metadata)
        self.segments_written += len(prediction["index"])

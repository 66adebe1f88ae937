"""The prediction writer: a Lightning ``BasePredictionWriter`` that stores each batch as one shard.

What a shard holds and how it is named is :mod:`bertstory.results.shards`. A resumed run numbers its
new shards after the highest batch index of each rank (``first_batch``). Shards are converted and
written on one background thread, so the next batch's attribution runs meanwhile; at most
``MAX_PENDING`` batches wait, and the epoch ends only when every shard is on disk (a write error
stops the run there). A shard is renamed into place when complete, so ``resume=true`` still sees
exactly the finished batches.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from bertstory.errors import BertstoryError
from bertstory.results.shards import DTYPES, remove_partial_shards, save_shard, shard_path, shard_tensors

MAX_PENDING = 2  # batches whose shards may wait for the writer thread (bounds the memory they hold)


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
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def on_predict_start(self, trainer, pl_module) -> None:
        remove_partial_shards(self.run_dir, trainer.global_rank)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertstory-shards")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        if prediction is None:
            return
        number = self.first_batch.get(trainer.global_rank, 0) + batch_idx
        path = shard_path(self.run_dir, trainer.global_rank, number)
        if self._pool is None:  # used outside a predict loop: write now
            self._write(prediction, path)
            return
        while len(self._pending) >= MAX_PENDING:
            self._pending.pop(0).result()  # re-raises a failed write
        self._pending.append(self._pool.submit(self._write, prediction, path))

    def _write(self, prediction: dict, path: Path) -> None:
        save_shard(shard_tensors(prediction, self.dtype), path, self.metadata)
        self.segments_written += len(prediction["index"])

    def on_predict_end(self, trainer, pl_module) -> None:
        self.flush()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.flush(raise_errors=False)

    def flush(self, raise_errors: bool = True) -> None:
        """Wait for every pending shard; stop the writer thread."""
        pending, self._pending = self._pending, []
        errors = []
        for f in pending:
            try:
                f.result()
            except Exception as e:  # noqa: BLE001 - re-raised below
                errors.append(e)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if errors and raise_errors:
            raise errors[0]

"""One analysis over several processes (Lightning DDP): starting the other ranks as the same Hydra job,
and accounting for the work each rank did.

Lightning's DDP launcher starts the other processes of a node by running the entry script again. Under
Hydra it re-runs ``sys.argv``, which inside a multirun (``-m model=a,b``) would start the whole sweep
again, and inside a submitit job would re-run submitit's own module. :func:`relaunch_as_hydra_job`
makes it start ``<entry script> <this job's overrides> hydra.run.dir=<this job's run dir>`` instead,
for single runs, multiruns and launcher plugins alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from bertstory.compat import hydra_subprocess_command
from bertstory.errors import BertstoryError

log = logging.getLogger(__name__)


def quote_override_value(value: str) -> str:
    """``value`` as a Hydra override value that is taken literally (commas, spaces and ``=`` included)."""
    return "'" + value.replace("'", "\\'") + "'"


def entry_script(hydra_cfg) -> str:
    """The Hydra entry script of this job.

    The ``__main__`` script when Python ran one (``python analyze.py``); otherwise (a job started by
    a launcher plugin such as submitit) ``<primary config dir>/../<config name>.py``, the layout of
    ``analyze.py`` and ``conf/``.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is None and path and path.endswith(".py"):
        return os.path.abspath(path)
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "main" and source.schema == "file":
            script = Path(source.path).parent / f"{hydra_cfg.job.config_name}.py"
            if script.is_file():
                return str(script)
    raise BertstoryError("cannot find the entry script that starts the other DDP processes of this job: run "
                         "analyze.py itself (python analyze.py trainer=ddp ...)")


def hydra_job_command(local_rank: int, num_processes: int) -> tuple[list[str], str]:
    """Command and working directory that start process ``local_rank`` of this node as this Hydra job.

    The job's own overrides (one sweep point in a multirun), the same run directory, no second
    ``.hydra/`` folder, and a log file of its own: ``<job name>_rank<global rank>.log``.
    """
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    rank = int(os.environ.get("NODE_RANK", "0")) * num_processes + local_rank
    command = [
        sys.executable,
        entry_script(hc),
        *hc.overrides.task,
        f"hydra.run.dir={quote_override_value(str(hc.runtime.output_dir))}",
        f"hydra.job.name={hc.job.name}_rank{rank}",
        "hydra.output_subdir=null",
    ]
    return command, hc.runtime.cwd


# What Lightning's launcher sets in the launching process; a later run in the same process (the next job
# of a multirun) must start from a clean slate, or it takes itself for a child and starts no processes.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")


@contextlib.contextmanager
def relaunch_as_hydra_job(num_processes: int) -> Iterator[None]:
    """Around ``trainer.predict``: Lightning's DDP script launcher starts the other processes with
    :func:`hydra_job_command`; afterwards the launch variables and the thread count are restored.

    The command is unchanged when Hydra is not running; no process is started when they are created
    externally (SLURM's ``srun``, ``torchrun``). Pair with :func:`end_process_group` after the last
    collective call.
    """
    from hydra.core.hydra_config import HydraConfig

    env = {k: os.environ.get(k) for k in LAUNCH_ENV}
    threads = torch.get_num_threads()
    hook = hydra_subprocess_command(lambda local_rank: hydra_job_command(local_rank, num_processes))
    patch = HydraConfig.initialized()
    try:
        with hook if patch else contextlib.nullcontext():
            yield
    finally:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)


def end_process_group() -> None:
    """Close the DDP process group after the last collective call, so the next run in this process
    (the next job of a multirun) starts its own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class RankWork(Callback):
    """Records the dataset indices and tokens this process analysed, and how long its predict loop took."""

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.tokens = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_predict_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.indices.extend(int(k) for k in batch["index"].tolist())
        self.tokens += int(batch["attention_mask"].sum())

    def on_predict_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self._start

    def gather(self) -> list[dict]:
        """Every rank's ``{"indices", "tokens", "seconds"}``, in rank order (a collective call under DDP)."""
        return gather_objects({"indices": self.indices, "tokens": self.tokens, "seconds": self.seconds})


def gather_objects(obj):
    """``[obj of rank 0, obj of rank 1, ...]``: a collective call under DDP, ``[obj]`` in one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    out: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def check_partition(per_rank: Sequence[Sequence[int]], segments: int) -> None:
    """Raise unless the ranks' dataset indices together are ``0..segments-1``, each exactly once."""
    seen = [0] * segments
    for indices in per_rank:
        for k in indices:
            if not 0 <= k < segments:
                raise RuntimeError(f"segment index {k} is outside the corpus of {segments} segments")
            seen[k] += 1
    missing = [k for k, c in enumerate(seen) if c == 0]
    twice = [k for k, c in enumerate(seen) if c > 1]
    if missing or twice:
        raise RuntimeError(f"the processes did not analyse every segment exactly once: {len(missing)} missing "
                           f"(first {missing[:5]}), {len(twice)} more than once (first {twice[:5]})")


def log_rank_work(per_rank: Sequence[dict]) -> None:
    """Log what each rank analysed: segments, tokens, seconds."""
    for rank, work in enumerate(per_rank):
        log.info("rank %d analysed %d segments, %d tokens in %.1f s", rank, len(work["indices"]), work["tokens"],
                 work["seconds"])

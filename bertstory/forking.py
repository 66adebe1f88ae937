"""Work in forked processes, so that what a run does after its kernel (figures, the viewer) uses every core.

Fork, not spawn: a child inherits the imported modules and the data already in memory, so a job starts in
milliseconds. A child sets torch to one thread first (as DataLoader workers do: OpenMP's thread pool does not
survive a fork). Elsewhere than on Linux, or with one core, the jobs run in this process, one after another.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

MAX_WORKERS = 4

_JOBS: list[Callable[[], Any]] = []  # what a forked worker of run_all inherits


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def can_fork() -> bool:
    """Linux with two cores or more (macOS can fork, but system libraries there are not safe after a fork)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods() and cores() > 1


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _child_setup() -> None:
    """A forked worker: one torch thread, and the default signal handlers back (a parent's handlers, such as
    submitit's for SIGTERM, would keep the worker alive when its pool shuts down). The stop signals were
    blocked across the fork (see :func:`_fork_pool`); one that came meanwhile is delivered, and ends the
    worker, when they are unblocked here."""
    import torch

    torch.set_num_threads(1)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _fork_pool(workers: int) -> multiprocessing.pool.Pool:
    """Fork the workers with SIGTERM and SIGINT blocked, so that a ``terminate()`` that comes before a
    worker has run :func:`_child_setup` waits for it instead of meeting the parent's handler (which may
    ignore it, and then the pool's join hangs). This process gets a signal that came meanwhile on unblocking."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return multiprocessing.get_context("fork").Pool(workers, initializer=_child_setup)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@contextmanager
def _pool(workers: int) -> Iterator[multiprocessing.pool.Pool]:
    """A pool of forked workers that ends by letting them finish (close and join); terminated on an error."""
    pool = _fork_pool(workers)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        raise
    pool.close()
    pool.join()


def _run_job(k: int) -> Any:
    return _JOBS[k]()


def run_all(jobs: Sequence[Callable[[], Any]], workers: int | None = None) -> list[Any]:
    """The results of ``jobs`` (calls without arguments), in order: computed in up to ``workers`` forked
    processes (default: the cores, at most MAX_WORKERS), or one after the other here where that is one
    worker or the platform cannot fork. A job's error is raised here."""
    global _JOBS
    workers = min(len(jobs), workers or min(cores(), MAX_WORKERS))
    if workers <= 1 or not can_fork():
        return [job() for job in jobs]
    _JOBS = list(jobs)
    try:
        with _pool(workers) as pool:
            return pool.map(_run_job, range(len(jobs)), chunksize=1)
    finally:
        _JOBS = []


class Pending:
    """The result of a call that :func:`beside` started: ``get()`` waits for it (and raises its error)."""

    def __init__(self, call: Callable[[], Any] | None = None, async_result=None):
        self._call, self._async = call, async_result
        self._done, self._value = False, None

    def get(self) -> Any:
        if not self._done:
            self._value = self._call() if self._async is None else self._async.get()
            self._done = True
        return self._value


@contextmanager
def beside(fn: Callable[..., Any], *args: Any) -> Iterator[Pending]:
    """Run ``fn(*args)`` in a forked process while the body of the ``with`` runs; yields a :class:`Pending`.
    Leaving the block waits for the call. Where the platform cannot fork, the call runs here on ``get()`` or
    at the end of the block."""
    if not can_fork():
        pending = Pending(call=lambda: fn(*args))
        yield pending
        pending.get()
        return
    with _pool(1) as pool:
        pending = Pending(async_result=pool.apply_async(fn, args))
        yield pending
        pending.get()  # before the pool is closed

"""bertstory.forking: jobs in forked processes give what they give in this process, in order, errors raised."""

import multiprocessing
import os
import signal
import time
from contextlib import contextmanager

import pytest
import torch

from bertstory import forking
from bertstory.errors import BertstoryError

needs_fork = pytest.mark.skipif(not forking.can_fork(), reason="needs fork and two cores")


def pid_and_square(k: int) -> tuple[int, int, int]:
    return os.getpid(), k * k, torch.get_num_threads()


def fail(message: str):
    raise BertstoryError(message)


@needs_fork
def test_run_all_keeps_the_order_and_runs_in_other_processes():
    jobs = [lambda k=k: pid_and_square(k) for k in range(7)]
    results = forking.run_all(jobs, workers=2)
    assert [r[1] for r in results] == [k * k for k in range(7)]
    assert {r[0] for r in results} - {os.getpid()} == {r[0] for r in results}  # none ran here
    assert {r[2] for r in results} == {1}  # one torch thread in a forked worker


def test_run_all_with_one_worker_runs_here():
    results = forking.run_all([lambda k=k: pid_and_square(k) for k in range(3)], workers=1)
    assert [r[:2] for r in results] == [(os.getpid(), k * k) for k in range(3)]


@needs_fork
def test_run_all_raises_a_jobs_error():
    with pytest.raises(BertstoryError, match="job 2 broke"):
        forking.run_all([lambda: 1, lambda: 2, lambda: fail("job 2 broke")], workers=2)


@needs_fork
def test_beside_runs_the_call_while_the_body_runs():
    with forking.beside(pid_and_square, 5) as pending:
        here = pid_and_square(3)
    pid, value, threads = pending.get()
    assert pid != os.getpid() and value == 25 and threads == 1 and here[1] == 9


@needs_fork
def test_beside_raises_the_calls_error():
    with pytest.raises(BertstoryError, match="viewer broke"):
        with forking.beside(fail, "viewer broke"):
            pass


def test_without_fork_everything_runs_here(monkeypatch):
    monkeypatch.setattr(forking, "can_fork", lambda: False)
    assert [r[:2] for r in forking.run_all([lambda: pid_and_square(4)] * 2, workers=2)] == [(os.getpid(), 16)] * 2
    with forking.beside(pid_and_square, 6) as pending:
        pass
    assert pending.get()[:2] == (os.getpid(), 36)


class PoolHung(Exception):
    """Not an OSError (as TimeoutError is): multiprocessing's join swallows OSErrors while it waits."""


@contextmanager
def parent_ignoring_sigterm(backstop_s: int):
    """What a submitit job does (SIGTERM handled in Python), with an alarm that ends a hung pool's join."""

    def too_long(*_):
        raise PoolHung("a forked pool did not end")

    previous = signal.signal(signal.SIGTERM, lambda *_: None), signal.signal(signal.SIGALRM, too_long)
    signal.alarm(backstop_s)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGALRM, previous[1])


@needs_fork
def test_pools_end_although_the_parent_ignores_sigterm():
    """submitit's jobs install a SIGTERM handler; a forked worker that kept it would never die on terminate()."""
    start = time.perf_counter()
    with parent_ignoring_sigterm(backstop_s=45):
        results = forking.run_all([lambda k=k: pid_and_square(k) for k in range(3)], workers=2)
        assert [r[1] for r in results] == [0, 1, 4]
        with pytest.raises(BertstoryError, match="body broke"):  # the error path terminates the worker
            with forking.beside(pid_and_square, 2):
                fail("body broke")
        with forking.beside(pid_and_square, 2) as pending:
            pass
        assert pending.get()[1] == 4
    assert time.perf_counter() - start < 30
    assert multiprocessing.active_children() == []


@needs_fork
def test_a_worker_terminated_before_its_setup_still_ends(monkeypatch):
    """The race that hung CI on a loaded machine: terminate() reached a worker before it had restored the
    default SIGTERM handler, so the parent's ignoring handler swallowed it and the pool's join never returned.
    A slow setup makes the race certain."""
    setup = forking._child_setup

    def slow_setup():
        time.sleep(1.0)
        setup()

    monkeypatch.setattr(forking, "_child_setup", slow_setup)
    start = time.perf_counter()
    with parent_ignoring_sigterm(backstop_s=20):
        with pytest.raises(BertstoryError, match="body broke"):
            with forking.beside(pid_and_square, 2):
                fail("body broke")
    assert time.perf_counter() - start < 10
    assert multiprocessing.active_children() == []
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == set()  # this process's mask is as it was

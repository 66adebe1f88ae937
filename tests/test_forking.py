"""bertstory.forking: jobs in forked processes give what they give in this process, in order, errors raised."""

import os
import time

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


@needs_fork
def test_pools_end_although_the_parent_ignores_sigterm():
    """submitit's jobs install a SIGTERM handler; a forked worker that kept it would never die on terminate()."""
    import signal

    def too_long(*_):
        raise TimeoutError("a forked pool did not end")

    previous = signal.signal(signal.SIGTERM, lambda *_: None), signal.signal(signal.SIGALRM, too_long)
    signal.alarm(45)  # a backstop: a hung pool may swallow the alarm's error, the elapsed time below still fails
    start = time.perf_counter()
    try:
        results = forking.run_all([lambda k=k: pid_and_square(k) for k in range(3)], workers=2)
        assert [r[1] for r in results] == [0, 1, 4]
        with pytest.raises(BertstoryError, match="body broke"):  # the error path terminates the worker
            with forking.beside(pid_and_square, 2):
                fail("body broke")
        with forking.beside(pid_and_square, 2) as pending:
            pass
        assert pending.get()[1] == 4
        assert time.perf_counter() - start < 30
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGALRM, previous[1])

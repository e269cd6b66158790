"""Tests for rxdata._parallel: results, errors, progress, interrupts, no orphan workers."""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import pid_alive
from rxdata._parallel import Interrupted, map_tasks
from rxdata.errors import WorkerError

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}


def _wait_for(condition, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "pool"])
@pytest.mark.parametrize("chunksize", [1, 3])
def test_ordered_results_match_the_builtin_map(workers, chunksize) -> None:
    tasks = [-5, 3, -1, 0, 7, -2, 11]
    got = list(map_tasks(abs, tasks, workers=workers, progress=False, chunksize=chunksize))
    assert got == [abs(t) for t in tasks]


def test_as_completed_results_are_the_same_multiset() -> None:
    tasks = list(range(-6, 6))
    got = list(map_tasks(abs, tasks, workers=2, progress=False, ordered=False))
    assert sorted(got) == sorted(abs(t) for t in tasks)


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "pool"])
def test_first_exception_reaches_the_caller(workers) -> None:
    with pytest.raises(ValueError, match="math domain error"):
        list(map_tasks(math.sqrt, [4.0, -1.0, 9.0], workers=workers, progress=False))


def test_a_dead_worker_is_an_error_naming_the_task() -> None:
    with pytest.raises(WorkerError, match="worker process died") as info:
        # os._exit kills the worker without a Python exception
        list(map_tasks(os._exit, [3, 4], workers=2, progress=False))
    assert info.value.task in (3, 4)  # type: ignore[attr-defined]


def test_log_lines_when_not_on_a_terminal(caplog) -> None:
    log = logging.getLogger("rxdata.test_parallel")
    with caplog.at_level(logging.INFO, logger="rxdata.test_parallel"):
        list(map_tasks(abs, [1, 2, 3], workers=1, unit="item", logger=log))
    assert any("3/3 items (100.0%)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rxdata.test_parallel"):
        list(map_tasks(abs, [1, 2, 3], workers=1, progress=False, logger=log))
    assert not caplog.records


def test_weights_count_units(capsys) -> None:
    list(map_tasks(abs, [1, 2], workers=1, progress=True, desc="w", unit="px", weight=abs))
    assert "3/3" in capsys.readouterr().err


def test_sigterm_inline_is_an_interrupt() -> None:
    def send_sigterm(task: int) -> int:
        if task == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises during the sleep
        return task

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM"):
        list(map_tasks(send_sigterm, [0, 1, 2], workers=1, progress=False))
    assert signal.getsignal(signal.SIGTERM) is previous  # restored


_POOL_SCRIPT = """
import sys
from helpers import record_pid_and_sleep
from rxdata._parallel import Interrupted, map_tasks
paths = sys.argv[1:]
try:
    list(map_tasks(record_pid_and_sleep, paths, workers=len(paths), progress=False))
except Interrupted as err:
    print("INTERRUPTED:", err, flush=True)
    sys.exit(130)
"""


def _start_pool(tmp_path: Path, n: int) -> tuple[subprocess.Popen[str], list[int]]:
    paths = [str(tmp_path / f"task{i}.pid") for i in range(n)]
    parent = subprocess.Popen(
        [sys.executable, "-c", _POOL_SCRIPT, *paths],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: all(os.path.exists(p) for p in paths), "every worker to start")
    pids = [int(Path(p).read_text()) for p in paths]
    assert len(set(pids)) == n and parent.pid not in pids
    assert all(pid_alive(p) for p in pids)
    return parent, pids


@pytest.mark.subprocess
def test_workers_die_with_a_killed_parent(tmp_path) -> None:
    parent, workers = _start_pool(tmp_path, 3)
    parent.kill()  # SIGKILL: the parent runs no clean-up at all
    parent.wait()
    _wait_for(lambda: not any(pid_alive(p) for p in workers), "the orphaned workers to exit", 20)


@pytest.mark.subprocess
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_stop_the_workers(tmp_path, sig) -> None:
    parent, workers = _start_pool(tmp_path, 2)
    parent.send_signal(sig)
    out, err = parent.communicate(timeout=60)
    assert parent.returncode == 130, err
    assert "INTERRUPTED" in out
    _wait_for(lambda: not any(pid_alive(p) for p in workers), "the workers to exit", 20)


def test_abandoning_the_iterator_cancels_the_rest() -> None:
    it = map_tasks(abs, list(range(-20, 0)), workers=2, progress=False)
    assert next(it) == 20
    it.close()  # no hang, no stray workers
    import multiprocessing

    _wait_for(lambda: not multiprocessing.active_children(), "the pool to shut down", 30)


def test_partial_functions_are_picklable_tasks() -> None:
    got = list(map_tasks(functools.partial(pow, 2), [1, 2, 3], workers=2, progress=False))
    assert got == [2, 4, 8]

"""Run a function over many tasks in worker processes, with progress: the one way rxdata does it.

:func:`map_tasks` serves conversion, :func:`rxdata.stats.compute_pixel_stats` and
:func:`rxdata.synthetic.generate`. Its contract:

* **Spawned workers.** Worker processes are started with ``spawn``: forking a process
  whose TensorFlow (or any) threads are running can deadlock the children. ``fn`` and the
  tasks must therefore be picklable (module-level functions, plain values).
* **Progress.** ``progress=None``: a tqdm bar when stderr is a terminal, otherwise a log
  line every 30 s (and at the end) with the rate and the ETA; ``True``: always a bar;
  ``False``: neither.
* **First error wins.** The first task that raises stops the run: pending tasks are
  cancelled, running ones finish, and the task's exception reaches the caller. A worker
  that dies (killed, out of memory) raises :class:`~rxdata.errors.WorkerError` naming the
  task.
* **Interrupts.** Ctrl-C (``KeyboardInterrupt``) and ``SIGTERM`` are handled the same way:
  the workers are terminated at once and the caller gets :class:`Interrupted` (a
  ``KeyboardInterrupt``). Workers ignore SIGINT themselves; their parent decides.
* **No orphans.** Workers die with their parent, even after ``kill -9``: on Linux through
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, everywhere through a watchdog thread in each worker
  that exits when its parent process changes.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from rxdata.errors import UnguardedMainError, WorkerError
from rxdata.tflog import is_quiet

T = TypeVar("T")
R = TypeVar("R")

_LOG_EVERY_S = 30.0
_WATCH_EVERY_S = 0.5
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by Ctrl-C or SIGTERM; its workers were terminated."""


class Progress:
    """A tqdm bar (units, units/s, ETA), or a log line every 30 s when not on a terminal.

    Example:
        >>> p = Progress(10, False, desc="demo", unit="item")
        >>> p.update(10); p.close(); p.done
        10
    """

    def __init__(
        self,
        total: int,
        enabled: bool | None,
        *,
        desc: str,
        unit: str,
        logger: logging.Logger | None = None,
    ) -> None:
        self.total, self.done, self.start, self.last = total, 0, time.monotonic(), 0.0
        self.unit, self.log = unit, logger or log
        bar = enabled is True or (enabled is None and sys.stderr.isatty())
        self.bar: Any = None
        self.log_lines = enabled is None and not bar
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=desc, smoothing=0.1)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        now = time.monotonic()
        if self.log_lines and (now - self.last >= _LOG_EVERY_S or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.log.info(
                "%d/%d %ss (%.1f%%), %.1f %ss/s, ETA %.0f s",
                self.done,
                self.total,
                self.unit,
                100 * self.done / max(self.total, 1),
                rate,
                self.unit,
                eta,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(_WATCH_EVERY_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def _init_worker(parent_pid: int, quiet_tf: bool = False) -> None:
    """Worker start-up: leave Ctrl-C to the parent, and die with it; no TensorFlow C++
    start-up lines when the parent silenced them (:mod:`rxdata.tflog`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if quiet_tf:
        from rxdata.tflog import quiet_tensorflow_startup

        quiet_tensorflow_startup()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), daemon=True, name="rxdata-parent-watch"
    ).start()


def _run_chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(task) for task in chunk]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`Interrupted` like Ctrl-C.

    Example:
        >>> with sigterm_as_interrupt():
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While active, Ctrl-C and SIGTERM (main thread) both raise :class:`Interrupted`.

    The one place a run's interrupts are translated: the local pool and the Dask runner
    both run under it, so either way the caller catches :class:`Interrupted`.

    Example:
        >>> with interruptible():
        ...     pass
    """
    try:
        with sigterm_as_interrupt():
            yield
    except Interrupted:
        raise
    except KeyboardInterrupt as err:
        raise Interrupted("interrupted (Ctrl-C)") from err


def map_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    workers: int,
    progress: bool | None = None,
    desc: str = "",
    unit: str = "task",
    weight: Callable[[T], int] | None = None,
    ordered: bool = True,
    chunksize: int = 1,
    logger: logging.Logger | None = None,
) -> Iterator[R]:
    """Yield ``fn(task)`` for every task, computed in ``workers`` spawned processes.

    With ``workers <= 1`` (or a single chunk) the tasks run in this process, with the same
    progress and interrupt handling. Close the iterator early (``break``, an exception in
    the caller) and the pending tasks are cancelled.

    Args:
        fn: A picklable (module-level) function of one task.
        tasks: Picklable tasks.
        workers: Number of worker processes.
        progress: ``None``: a bar on a terminal, log lines otherwise; ``True``: a bar;
            ``False``: no progress output.
        desc: Label of the bar.
        unit: What the progress counts (``weight`` units per task).
        weight: Progress units of a task (default 1).
        ordered: Yield in task order (True) or as tasks complete (False).
        chunksize: Tasks sent to a worker at a time (many small tasks: 16-64).
        logger: Where the periodic log lines go (default ``rxdata._parallel``).

    Raises:
        Interrupted: Ctrl-C or SIGTERM; the workers were terminated.
        WorkerError: A worker process died; ``err.task`` is the task it was running.

    Example:
        >>> list(map_tasks(abs, [-1, 2, -3], workers=1, progress=False))
        [1, 2, 3]
    """
    if chunksize < 1:
        raise ValueError(f"chunksize={chunksize!r} must be >= 1")
    weigh = weight or (lambda _task: 1)
    bar = Progress(sum(weigh(t) for t in tasks), progress, desc=desc, unit=unit, logger=logger)
    chunks = [tasks[i : i + chunksize] for i in range(0, len(tasks), chunksize)]
    try:
        with interruptible():
            if workers <= 1 or len(chunks) <= 1:
                for task in tasks:
                    result = fn(task)
                    bar.update(weigh(task))
                    yield result
                return
            yield from _pooled(fn, chunks, min(workers, len(chunks)), bar, weigh, ordered)
    finally:
        bar.close()


def _guard_line(main: Any, frame: Any) -> int | None:
    """The line of ``__main__``'s top-level statement running in ``frame``, when that
    statement is not an ``if __name__ == "__main__":`` block; else ``None``."""
    import ast

    try:
        with open(main.__file__, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for stmt in tree.body:
        end = getattr(stmt, "end_lineno", stmt.lineno)
        if not stmt.lineno <= line <= end:
            continue
        test = stmt.test if isinstance(stmt, ast.If) else None
        guarded = (
            isinstance(test, ast.Compare)
            and any(
                isinstance(n, ast.Name) and n.id == "__name__"
                for n in (test.left, *test.comparators)
            )
            and any(
                isinstance(n, ast.Constant) and n.value == "__main__"
                for n in (test.left, *test.comparators)
            )
        )
        return None if guarded else line
    return None


def check_spawn_safe() -> None:
    """Refuse to start spawned workers from a script's unguarded top level.

    Spawned workers import the main script again (as ``__mp_main__``). A call made at
    the script's top level, outside ``if __name__ == "__main__":``, would run again in
    every worker: a conversion would find its own folder locked and each worker would
    die. Caught here, in the parent, before any worker starts (and in a worker that is
    re-running such a script).

    Raises:
        UnguardedMainError: the call comes from the main script's top level, unguarded.

    Example:
        >>> check_spawn_safe()  # from a function or an interactive session: fine
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return  # an interactive session, python -c, a notebook: workers do not re-run it
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            line = _guard_line(main, frame)
            if line is not None:
                raise UnguardedMainError(
                    f"rxdata: {path} line {line} starts worker processes from the script's "
                    "top level; they re-run the script, so put the call under "
                    '`if __name__ == "__main__":`'
                )
            return
        frame = frame.f_back  # type: ignore[assignment]


def _pooled(
    fn: Callable[[T], R],
    chunks: Sequence[Sequence[T]],
    workers: int,
    bar: Progress,
    weigh: Callable[[T], int],
    ordered: bool,
) -> Iterator[R]:
    check_spawn_safe()
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(), is_quiet()),
    )
    graceful = False
    try:
        index: dict[Future[list[R]], int] = {
            pool.submit(_run_chunk, fn, chunk): i for i, chunk in enumerate(chunks)
        }
        pending: set[Future[list[R]]] = set(index)
        done_results: dict[int, list[R]] = {}
        next_out = 0
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=index.__getitem__):
                i = index[fut]
                try:
                    results = fut.result()
                except BrokenProcessPool as err:
                    task = chunks[i][0]
                    error = WorkerError(
                        f"a worker process died (killed, or out of memory) while running "
                        f"{str(task)[:200]}"
                    )
                    error.task = task  # type: ignore[attr-defined]
                    graceful = True
                    raise error from err
                except BaseException:
                    graceful = True
                    raise
                bar.update(sum(weigh(t) for t in chunks[i]))
                if ordered:
                    done_results[i] = results
                else:
                    yield from results
            while ordered and next_out in done_results:
                yield from done_results.pop(next_out)
                next_out += 1
        graceful = True
    except GeneratorExit:
        graceful = True
        raise
    finally:
        if graceful:
            pool.shutdown(wait=True, cancel_futures=True)
        else:  # Ctrl-C, SIGTERM or another BaseException: stop the workers now
            workers_now = set(multiprocessing.active_children()) - before
            for proc in workers_now:
                with contextlib.suppress(Exception):
                    proc.terminate()
            for proc in workers_now:
                proc.join(timeout=10)
            pool.shutdown(wait=False, cancel_futures=True)

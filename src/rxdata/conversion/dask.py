"""Dask runner for a conversion's shard plan (optional extra ``rxdata[dask]``).

The shard tasks go to a ``dask.distributed`` cluster the Dask way: a
:class:`distributed.Client` (on an existing scheduler, ``dask_address=...``, or on a
:class:`distributed.LocalCluster` of ``workers`` processes started for the run),
:meth:`Client.map <distributed.Client.map>` of
:func:`rxdata.conversion.shard.write_shard_task` over the tasks, and
:func:`distributed.as_completed` to follow them. Each task is the very function the local
process pool and the Beam pipeline call, so a Dask run writes the same bytes, shard for
shard, and leaves the same progress records; the caller writes the manifest with
:func:`rxdata.conversion.manifest.finalize`, as for a local run.

**Lost workers.** A shard is written under a temporary name and renamed only when
complete, so a worker that dies mid-shard (killed, out of memory, its SLURM job ended)
leaves no partial shard. Dask re-runs the tasks of a lost worker on another worker up to
``distributed.scheduler.allowed-failures`` times (3 by default); that is safe because a
shard task is idempotent (the retry rewrites the whole shard, to the same bytes). A task
that has killed more workers than that fails the run with a
:class:`~rxdata.errors.ConvertError` naming the shard; complete shards are kept, and
re-running the same conversion resumes (a dead worker's temporary file is removed then).

**Interrupts.** Ctrl-C and SIGTERM end the run with
:class:`~rxdata._parallel.Interrupted` (exit code 130 from the command): the pending tasks
are cancelled and a ``LocalCluster`` is stopped. Its worker processes also exit when this
process is killed outright (Dask's nanny watches its parent). On an existing cluster a
shard already being written finishes (or not) on its own; either way no partial shard
appears, and the next run resumes.

**Bounded waits.** Before a ``Client`` is made on ``dask_address``,
:func:`probe_scheduler` connects and waits for the scheduler's handshake under a deadline
of ``ConvertOptions.dask_timeout`` seconds (30 by default); the ``Client`` gets the same
timeout. A scheduler that does not answer in that time (nothing listens, a host that
drops packets, a listener that never speaks) fails the run with a
:class:`~rxdata.errors.ConvertError` naming the address and the option, instead of the
endless wait distributed's handshake would give.

``dask.distributed`` is imported only when a Dask run starts. On a real cluster every
worker must reach the images and the output directory at the same paths (a shared file
system, or ``gs://``) and have rxdata installed; see ``docs/convert.md``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from rxdata._parallel import Progress, interruptible
from rxdata.conversion.options import ConvertOptions
from rxdata.conversion.shard import ShardRecord, ShardTask, write_shard_task
from rxdata.errors import ConvertError, Option, OptionsError, RxDataError

log = logging.getLogger(__name__)

_EXTRA_HINT = "pip install 'rxdata[dask]'"


def _import_distributed() -> Any:
    """``distributed``, or an :class:`OptionsError` naming the extra to install."""
    try:
        import distributed
    except ImportError as err:
        raise OptionsError(
            f"runner='dask' needs dask.distributed, which is not installed: {_EXTRA_HINT} "
            f"(it failed with: {err})"
        ) from err
    return distributed


def _unreachable(address: str, timeout: float, err: BaseException) -> ConvertError:
    """The error for a scheduler that did not answer: the address, the wait, the fixes."""
    longer = Option("dask_timeout", placeholder="SECONDS")
    return ConvertError(
        f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
        f"({type(err).__name__}: {str(err) or 'no answer'}); check the address (the scheduler "
        "prints it; with dask-jobqueue it is cluster.scheduler_address) and that this "
        f"machine can reach it, or wait longer with {longer}",
        options=[longer],
    )


def probe_scheduler(address: str, timeout: float) -> None:
    """Fail, naming ``address``, unless a Dask scheduler there answers within ``timeout`` s.

    ``distributed.Client(address, timeout=...)`` retries a refused address until its
    timeout, but then waits for the scheduler's handshake without a deadline: a listener
    that never answers (a wrong port, a stopped process, a firewall that drops packets
    after the connect) would hang the conversion forever (distributed 2026.8). So the
    probe runs distributed's own connect, handshake included, under
    :func:`asyncio.wait_for`, in a thread of its own (the caller may already run an event
    loop, as Jupyter does). ``inproc://`` addresses, which live in this process, are not
    probed.

    Raises:
        ConvertError: Nothing answered like a Dask scheduler within ``timeout`` seconds.

    Example:
        >>> probe_scheduler("inproc://192.168.0.1/1/1", 1.0)  # in this process: no probe
    """
    if address.startswith("inproc://"):
        return
    distributed = _import_distributed()

    async def handshake() -> None:
        # TLS settings as a Client would take them from dask's config. The connect gets
        # most of the time, so that its own error (e.g. "Connection refused") comes first.
        args = distributed.security.Security().get_connection_args("client")
        comm = await distributed.comm.connect(address, timeout=0.9 * timeout, **args)
        await comm.close()

    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(handshake(), timeout))
        except Exception as err:  # reported below, in the caller's thread
            failures.append(err)

    thread = threading.Thread(target=run, name="rxdata-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)  # wait_for ends the probe at `timeout`; 5 s to wind down
    if thread.is_alive():
        failures.append(TimeoutError(f"the probe did not end after {timeout:g} s"))
    if failures:
        raise _unreachable(address, timeout, failures[0]) from failures[0]


@contextmanager
def _client(distributed: Any, options: ConvertOptions) -> Iterator[Any]:
    """A ``Client`` on ``options.dask_address``, or on a ``LocalCluster`` started here."""
    address, workers, timeout = options.dask_address, options.n_workers, options.dask_timeout
    with ExitStack() as stack:
        if address is None:
            # One thread per worker process: a shard task is CPU-bound Python and TensorFlow
            # code, and workers are spawned, so none inherits this process's threads.
            cluster = stack.enter_context(
                distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
            )
            client = stack.enter_context(distributed.Client(cluster))
            where = f"a LocalCluster of {workers} worker process(es)"
        else:
            probe_scheduler(address, timeout)
            try:
                client = stack.enter_context(distributed.Client(address, timeout=timeout))
            except (OSError, TimeoutError, ValueError) as err:
                raise _unreachable(address, timeout, err) from err
            where = f"the Dask scheduler at {address}"
        n_workers = len(client.scheduler_info().get("workers", {}))
        log.info(
            "submitting to %s (%d worker(s) now; dashboard: %s)",
            where,
            n_workers,
            client.dashboard_link,
        )
        if n_workers == 0:
            log.warning("%s has no workers yet: the shards wait until workers join", where)
        yield client


def _failure(task: ShardTask, err: BaseException, distributed: Any) -> ConvertError:
    """The error that tells the user which shard failed, and why."""
    shard = task.spec.path
    resume = "complete shards are kept: re-run the same command to resume"
    if isinstance(err, distributed.KilledWorker):
        return ConvertError(
            f"Dask workers died while writing {shard} (killed, out of memory, or their job "
            f"ended) more often than distributed.scheduler.allowed-failures allows; {resume}. "
            f"({err})"
        )
    if isinstance(err, RxDataError):  # a bad site or a failed write: it names the file
        return ConvertError(str(err), options=err.options)
    hint = ""
    if isinstance(err, ImportError):
        hint = " (every Dask worker needs rxdata installed, in the same version)"
    return ConvertError(
        f"writing {shard} failed on a Dask worker: {type(err).__name__}: {err}{hint}; {resume}"
    )


def _cancel_reason(future: Any) -> str:
    """What Dask says about a cancelled future (its ``result()`` raises with the reason)."""
    try:
        future.result(timeout=1)
    except BaseException as err:  # CancelledError carries the reason as its message
        return str(err) or type(err).__name__
    return "no reason given"


def run_dask(tasks: Sequence[ShardTask], options: ConvertOptions) -> list[ShardRecord]:
    """Write every shard with :func:`~rxdata.conversion.shard.write_shard_task` on Dask.

    A :class:`~rxdata.conversion.runners.Runner`. From ``options``: ``dask_address``, an
    existing scheduler (e.g. ``"tcp://10.0.0.5:8786"``), or ``None`` to start a
    ``LocalCluster`` of ``workers`` processes for this run (and stop it); ``dask_timeout``,
    the seconds to wait for the scheduler; ``progress`` (``None``: a bar on a terminal,
    log lines otherwise).

    Args:
        tasks: The planned shards.
        options: The conversion's options.

    Returns:
        The records in completion order.

    Raises:
        OptionsError: ``dask.distributed`` is not installed (the message names the extra).
        ConvertError: The scheduler cannot be reached within ``dask_timeout`` seconds (the
            message names the address), or a shard failed (the message names it and the
            cause); complete shards are kept.
        rxdata._parallel.Interrupted: Ctrl-C or SIGTERM; the pending tasks were cancelled
            (the run is resumable).

    Example:
        >>> run_dask([], ConvertOptions(runner="dask", dask_address="tcp://nowhere:1"))
        []
    """
    if not tasks:
        return []
    distributed = _import_distributed()
    bar = Progress(
        sum(len(t.spec.site_ids) for t in tasks),
        options.progress,
        desc="rxdata-convert",
        unit="site",
        logger=log,
    )
    records: list[ShardRecord] = []
    try:
        with interruptible(), _client(distributed, options) as client:
            # pure=False: every run submits fresh tasks, never a result another client left
            # on a long-lived scheduler.
            futures = client.map(write_shard_task, tasks, key="rxdata-write-shard", pure=False)
            task_of = dict(zip(futures, tasks, strict=True))
            try:
                for future in distributed.as_completed(futures):
                    task = task_of[future]
                    if future.status == "cancelled":  # e.g. the scheduler went away
                        raise ConvertError(
                            f"the Dask task writing {task.spec.path} was cancelled "
                            f"({_cancel_reason(future)}): the scheduler closed, lost this "
                            "client, or another client cancelled it; complete shards are "
                            "kept: re-run the same command to resume"
                        )
                    if future.status != "finished":
                        err = future.exception()
                        raise _failure(task, err, distributed) from err
                    records.append(future.result())
                    bar.update(len(task.spec.site_ids))
            except BaseException:
                # Stop what has not started; a running task finishes or dies without
                # leaving a partial shard.
                client.cancel(futures)
                raise
    finally:
        bar.close()
    return records

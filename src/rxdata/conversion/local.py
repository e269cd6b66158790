"""The local runner: the shard tasks in a pool of worker processes on this machine.

Example:
    >>> run_local([], ConvertOptions(workers=1))  # nothing to write: no process started
    []
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rxdata._parallel import map_tasks
from rxdata.conversion.options import ConvertOptions
from rxdata.conversion.shard import ShardRecord, ShardTask, write_shard_task
from rxdata.errors import ConvertError, WorkerError

log = logging.getLogger(__name__)


def run_local(tasks: Sequence[ShardTask], options: ConvertOptions) -> list[ShardRecord]:
    """Write every shard with :func:`~rxdata.conversion.shard.write_shard_task` here.

    A :class:`~rxdata.conversion.runners.Runner`: ``options.workers`` processes (1: in
    this process) and ``options.progress`` (``None``: a bar on a terminal, log lines
    otherwise).

    Args:
        tasks: The planned shards.
        options: The conversion's options.

    Returns:
        The records in completion order.

    Raises:
        ConvertError: A shard failed, or a worker process died (completed shards are kept).
        rxdata._parallel.Interrupted: Ctrl-C or SIGTERM (the run is resumable).
    """
    try:
        return list(
            map_tasks(
                write_shard_task,
                tasks,
                workers=options.n_workers,
                progress=options.progress,
                desc="rxdata-convert",
                unit="site",
                weight=lambda t: len(t.spec.site_ids),
                ordered=False,
                logger=log,
            )
        )
    except WorkerError as err:
        task = getattr(err, "task", None)
        shard = task.spec.path if isinstance(task, ShardTask) else "a shard"
        raise ConvertError(
            f"a worker process died while writing {shard} (killed, or out of memory); "
            "completed shards are kept: re-run the same command to resume"
        ) from err

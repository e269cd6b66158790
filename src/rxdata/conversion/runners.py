"""The runner protocol, and the table that picks a runner by name.

A runner decides *where* the shards of a conversion are written, never *what* is written:

* it takes the planned :class:`~rxdata.conversion.shard.ShardTask` s and the
  :class:`~rxdata.conversion.options.ConvertOptions` (its own knobs are fields there:
  ``workers``, ``progress``, ``beam_options``, ``dask_address``, ``dask_timeout``);
* it calls :func:`~rxdata.conversion.shard.write_shard_task` exactly once per task,
  somewhere (this process, a process pool, Beam workers, Dask workers);
* it returns the :class:`~rxdata.conversion.shard.ShardRecord` of every task, in any
  order, to the caller, and writes nothing else into the output.

:func:`rxdata.conversion.convert` alone plans, prepares the output, checks that a record
came back for every planned shard and writes the manifest from them, so the resume rules,
the output lock and :func:`~rxdata.conversion.verify` hold for every runner alike.

The three runners are peers in :data:`RUNNER_TABLE`, which maps each name to a loader:
a runner's module is imported only when that runner is chosen (and its engine, Apache
Beam or ``dask.distributed``, only when it runs), so ``import rxdata.conversion`` loads
neither. The loaders import with plain ``from ... import`` statements, edges that
``tests/test_architecture.py`` sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol

from rxdata.conversion.options import RUNNERS, ConvertOptions
from rxdata.conversion.shard import ShardRecord, ShardTask
from rxdata.errors import Option, OptionsError

__all__ = ["RUNNER_TABLE", "Runner", "runner"]


class Runner(Protocol):
    """What every runner is: tasks and options in, one shard record per task out."""

    def __call__(self, tasks: Sequence[ShardTask], options: ConvertOptions) -> list[ShardRecord]:
        """Write every task's shard with ``write_shard_task``; return their records.

        Args:
            tasks: The planned shards (empty: return ``[]`` without starting anything).
            options: The conversion's options; the runner reads its own fields there.

        Returns:
            One record per task, in any order (the caller puts them in plan order).

        Raises:
            ConvertError: A shard failed (the message names it and the cause); complete
                shards are kept, and re-running the same conversion resumes.
            OptionsError: The runner's engine is not installed (the message names the
                extra to install).
            rxdata._parallel.Interrupted: Ctrl-C or SIGTERM (the run is resumable).
        """
        ...


def _local() -> Runner:
    from rxdata.conversion.local import run_local

    return run_local


def _beam() -> Runner:
    from rxdata.conversion.beam import run_beam

    return run_beam


def _dask() -> Runner:
    from rxdata.conversion.dask import run_dask

    return run_dask


RUNNER_TABLE: Mapping[str, Callable[[], Runner]] = MappingProxyType(
    {"local": _local, "beam": _beam, "dask": _dask}
)
"""Every runner's loader by its ``ConvertOptions.runner`` name (the names are
:data:`~rxdata.conversion.options.RUNNERS`); :func:`runner` calls it."""


def runner(name: str) -> Runner:
    """The runner called ``name`` in :data:`RUNNER_TABLE`.

    Example:
        >>> runner("local").__name__
        'run_local'
        >>> runner("spark")
        Traceback (most recent call last):
        ...
        rxdata.errors.OptionsError: runner='spark' is not one of ['local', 'beam', 'dask']
    """
    if name not in RUNNER_TABLE:
        given = Option("runner", name)
        raise OptionsError(f"{given} is not one of {list(RUNNERS)}", options=[given])
    return RUNNER_TABLE[name]()

"""Convert RxRx1 channel PNGs to TFRecord shards: plan, write, resume, verify.

A small package whose modules follow the job's seams:

* :mod:`~rxdata.conversion.options`: :class:`ConvertOptions` and the output file names.
* :mod:`~rxdata.conversion.plan`: site selection and :func:`plan_shards` (pure).
* :mod:`~rxdata.conversion.shard`: :func:`write_shard_task`, the one function every runner
  calls to write a shard, and the picklable :class:`ShardTask` it takes.
* :mod:`~rxdata.conversion.manifest`: the manifest, resuming, the skipped-sites report.
* :mod:`~rxdata.conversion.verification`: :func:`verify`.
* :mod:`~rxdata.conversion.local`, :mod:`~rxdata.conversion.beam` and
  :mod:`~rxdata.conversion.dask`: the runners (Beam and Dask are imported only when
  ``runner="beam"`` or ``runner="dask"``).
* :mod:`~rxdata.conversion.job`: :func:`convert`, which ties them together.

See :mod:`rxdata.conversion.job` for the contract and ``docs/convert.md`` for the format.
"""

from __future__ import annotations

from rxdata.conversion.job import ConvertResult, convert
from rxdata.conversion.options import (
    COMPRESSIONS,
    ENCODINGS,
    ON_ERROR,
    REPORT_COLUMNS,
    REPORT_NAME,
    RUNNERS,
    STRATEGIES,
    ConvertOptions,
)
from rxdata.conversion.plan import ShardSpec, plan_shards
from rxdata.conversion.shard import (
    ShardContext,
    ShardRecord,
    ShardTask,
    SkippedSite,
    write_shard_task,
)
from rxdata.conversion.verification import VerifyReport, verify
from rxdata.records import (  # the output folder's format is read (and owned) there
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PROGRESS_DIR,
)

__all__ = [
    "COMPRESSIONS",
    "ENCODINGS",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "ON_ERROR",
    "PROGRESS_DIR",
    "REPORT_COLUMNS",
    "REPORT_NAME",
    "RUNNERS",
    "STRATEGIES",
    "ConvertOptions",
    "ConvertResult",
    "ShardContext",
    "ShardRecord",
    "ShardSpec",
    "ShardTask",
    "SkippedSite",
    "VerifyReport",
    "convert",
    "plan_shards",
    "verify",
    "write_shard_task",
]

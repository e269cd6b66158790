"""Apache Beam runner for a conversion's shard plan (optional extra ``rxdata[beam]``).

The pipeline is the local runner's work spread over Beam workers:
``Create(shard numbers) -> Reshuffle -> ParDo(write one shard) -> ToList -> finalize``.
The shard tasks themselves (each site's metadata row) wait in a job file on the output
storage, read once per worker, which keeps the job graph small.
Each shard is written by :func:`rxdata.conversion.shard.write_shard_task`, the very
function the local process pool calls, so a Beam run writes the same bytes as a local run, shard for
shard, and leaves the same progress records: a failed or cancelled Beam job resumes like a
local one (complete shards are kept after a checksum check). The last step writes the
manifest and the skipped-sites report with :func:`rxdata.conversion.manifest.finalize`.

``apache_beam`` is imported only when a Beam run starts. On a distributed runner (Dataflow,
Flink, Spark) the images and the output must be on storage every worker reaches
(``gs://...``), and the workers need rxdata installed (``--beam-option
extra_package=dist/rxdata-....whl`` or ``--beam-option sdk_container_image=...``); see
the worked Dataflow example in ``docs/convert.md``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from rxdata import _io
from rxdata.conversion.manifest import finalize, write_run_summary
from rxdata.conversion.options import ConvertOptions
from rxdata.conversion.shard import ShardRecord, ShardTask, SkippedSite, write_shard_task
from rxdata.errors import ConvertError, OptionsError
from rxdata.records import PROGRESS_DIR


def _import_beam() -> Any:
    try:
        import apache_beam as beam
    except ImportError as err:  # pragma: no cover - the extra is installed in CI
        raise OptionsError("runner='beam' needs Apache Beam: pip install 'rxdata[beam]'") from err
    return beam


def pipeline_options(opts: ConvertOptions) -> Any:
    """Beam ``PipelineOptions`` from ``opts.beam_options`` (``runner`` defaults to Direct).

    For the DirectRunner, ``workers`` becomes ``direct_num_workers`` (multi-processing
    mode when above 1) unless the options say otherwise.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    flags: dict[str, Any] = dict(opts.beam_options)
    flags.setdefault("runner", "DirectRunner")
    if flags["runner"] in ("DirectRunner", "direct") and opts.n_workers > 1:
        flags.setdefault("direct_num_workers", opts.n_workers)
        flags.setdefault("direct_running_mode", "multi_processing")
    args = [f"--{key}={value}" for key, value in flags.items()]
    return PipelineOptions(args)


def job_path(output_dir: str) -> str:
    """Where the driver leaves the shard tasks for the workers (shared storage)."""
    return _io.join(output_dir, PROGRESS_DIR, "beam-job.json")


def _write_job(path: str, tasks: Sequence[ShardTask], orphans: Sequence[SkippedSite]) -> None:
    # The tasks (every site's metadata row) go to a file rather than into the pipeline
    # graph: Dataflow refuses job graphs over 10 MB, and 125,510 rows are about 40 MB.
    body = {
        "tasks": [t.to_json() for t in tasks],
        "orphans": [dataclasses.asdict(o) for o in orphans],
    }
    _io.write_bytes_atomic(path, json.dumps(body).encode())


_JOBS: dict[str, tuple[list[ShardTask], list[SkippedSite]]] = {}


def _load_job(path: str) -> tuple[list[ShardTask], list[SkippedSite]]:
    """The job file's tasks, read once per worker process."""
    if path not in _JOBS:
        body = json.loads(_io.read_bytes(path))
        tasks = [ShardTask.from_json(t) for t in body["tasks"]]
        _JOBS.clear()  # one conversion at a time per process
        _JOBS[path] = (tasks, [SkippedSite(**o) for o in body["orphans"]])
    return _JOBS[path]


class _WriteShard:
    """Map body: write shard number ``i`` of the job (picklable; small)."""

    def __init__(self, job: str) -> None:
        self.job = job

    def __call__(self, i: int) -> ShardRecord:
        tasks, _ = _load_job(self.job)
        return write_shard_task(tasks[i])


class _Finalize:
    """Last step: write the manifest and report from every shard's record."""

    def __init__(self, opts: ConvertOptions, shape: tuple[int, int], layout: str, job: str):
        self.opts, self.shape, self.layout, self.job = opts, shape, layout, job

    def __call__(self, records: list[ShardRecord], output_dir: str) -> int:
        tasks, orphans = _load_job(self.job)
        plan = [t.spec for t in tasks]
        finalize(output_dir, self.opts, self.shape, plan, self.layout, records, orphans)
        write_run_summary(run_summary_path(output_dir), records)
        return len(records)


def run_summary_path(output_dir: str) -> str:
    """Where the Beam pipeline's last step lists the shards it re-used."""
    return _io.join(output_dir, PROGRESS_DIR, "beam-reused.json")


def run_beam(
    tasks: Sequence[ShardTask],
    opts: ConvertOptions,
    shape: tuple[int, int],
    layout: str,
    orphans: Sequence[SkippedSite],
) -> None:
    """Run the shard tasks as a Beam pipeline and wait for it to finish."""
    beam = _import_beam()
    options = pipeline_options(opts)
    if not tasks:
        raise ConvertError("the Beam runner got no shard tasks")
    output_dir = tasks[0].context.output_dir
    job = job_path(output_dir)
    _io.makedirs(_io.dirname(job))
    _write_job(job, tasks, orphans)
    try:
        with beam.Pipeline(options=options) as p:
            _ = (
                p
                | "ShardNumbers" >> beam.Create(list(range(len(tasks))), reshuffle=False)
                | "Distribute" >> beam.Reshuffle()
                | "WriteShard" >> beam.Map(_WriteShard(job))
                | "Collect" >> beam.combiners.ToList()
                | "Finalize" >> beam.Map(_Finalize(opts, shape, layout, job), output_dir)
            )
    except ConvertError:
        raise
    except Exception as err:
        # Runners wrap a worker's exception; keep our message (it names the site and file).
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConvertError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ConvertError):
            raise ConvertError(str(cause)) from err
        message = str(err)
        for marker in ("ConvertError: ", "OutputExistsError: "):
            if marker in message:
                detail = message.split(marker, 1)[1].splitlines()[0]
                raise ConvertError(detail) from err
        raise ConvertError(
            f"the Beam pipeline failed ({type(err).__name__}: {message[:2000]}); complete "
            "shards are kept: re-run the same command to resume"
        ) from err
    finally:
        _JOBS.clear()
        if _io.exists(job):
            _io.remove(job)

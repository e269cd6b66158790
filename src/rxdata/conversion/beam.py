"""Apache Beam runner for a conversion's shard plan (optional extra ``rxdata[beam]``).

The pipeline is the local runner's work spread over Beam workers:
``Create(shard numbers) -> Reshuffle -> ParDo(write one shard) -> ToList -> results file``.
The shard tasks themselves (each site's metadata row) wait in a job file on the output
storage, read once per worker, which keeps the job graph small.
Each shard is written by :func:`rxdata.conversion.shard.write_shard_task`, the very
function the local process pool calls, so a Beam run writes the same bytes as a local run, shard for
shard, and leaves the same progress records: a failed or cancelled Beam job resumes like a
local one (complete shards are kept after a checksum check).

**How the records come back.** :func:`run_beam` is a
:class:`~rxdata.conversion.runners.Runner` like the others: it returns every shard's
record and :func:`rxdata.conversion.convert` writes the manifest. A pipeline on a
distributed runner (Dataflow, Flink, Spark) cannot hand Python objects back to the
process that launched it: its steps run on other machines, and the driver only learns
that the job finished. So the pipeline's last step, on one worker, writes the collected
records (with whether each shard was kept or rewritten) as JSON to a results file beside
the job file; :func:`run_beam` removes any such file before the pipeline starts (the
output lock guarantees one conversion per folder), reads it once the pipeline has
finished, removes it with the job file, and returns the records. Both files live in
``OUTPUT_DIR/_progress/`` and exist only while the pipeline runs.

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
from rxdata.conversion.options import ConvertOptions
from rxdata.conversion.shard import ShardRecord, ShardTask, write_shard_task
from rxdata.errors import ConvertError, Option, OptionsError, RxDataError
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


def results_path(output_dir: str) -> str:
    """Where the pipeline's last step leaves the shard records for the driver."""
    return _io.join(output_dir, PROGRESS_DIR, "beam-results.json")


def _write_job(path: str, tasks: Sequence[ShardTask]) -> None:
    # The tasks (every site's metadata row) go to a file rather than into the pipeline
    # graph: Dataflow refuses job graphs over 10 MB, and 125,510 rows are about 40 MB.
    _io.write_bytes_atomic(path, json.dumps({"tasks": [t.to_json() for t in tasks]}).encode())


_JOBS: dict[str, list[ShardTask]] = {}


def _load_job(path: str) -> list[ShardTask]:
    """The job file's tasks, read once per worker process."""
    if path not in _JOBS:
        body = json.loads(_io.read_bytes(path))
        _JOBS.clear()  # one conversion at a time per process
        _JOBS[path] = [ShardTask.from_json(t) for t in body["tasks"]]
    return _JOBS[path]


def _record_json(record: ShardRecord) -> dict[str, Any]:
    # The manifest entry leaves out how this run reached the shard; the driver wants it.
    return {**record.to_json(), "reused": record.reused, "changed": list(record.changed)}


def _record_from_json(body: dict[str, Any]) -> ShardRecord:
    record = ShardRecord.from_json(body)
    return dataclasses.replace(record, reused=bool(body["reused"]), changed=tuple(body["changed"]))


class _WriteShard:
    """Map body: write shard number ``i`` of the job (picklable; small)."""

    def __init__(self, job: str) -> None:
        self.job = job

    def __call__(self, i: int) -> dict[str, Any]:
        try:
            return _record_json(write_shard_task(_load_job(self.job)[i]))
        except RxDataError as err:
            raise ConvertError(_tagged(err), options=err.options) from err


# A remote Beam runner hands the driver only the worker's traceback text, so a worker's
# error carries the options its message names (for the caller to respell) at the end of
# its message, as JSON after this tag; the driver takes them off again.
_OPTIONS_TAG = " [rxdata options: "


def _tagged(err: RxDataError) -> str:
    options = [
        {
            "name": o.name,
            "value": list(o.value) if isinstance(o.value, tuple) else o.value,
            "tuple": isinstance(o.value, tuple),
            "placeholder": o.placeholder,
        }
        for o in err.options
    ]
    return f"{err}{_OPTIONS_TAG}{json.dumps(options)}]"


def _untagged(text: str) -> tuple[str, list[Option]]:
    """The message and its options from :func:`_tagged` text (no tag: no options)."""
    message, tag, rest = text.rpartition(_OPTIONS_TAG)
    if not tag:
        return text, []
    try:  # the runner may append to the line (" [while running 'WriteShard']")
        body, _ = json.JSONDecoder().raw_decode(rest)
        options = [
            Option(
                str(o["name"]),
                tuple(o["value"]) if o["tuple"] else o["value"],
                o["placeholder"],
            )
            for o in body
        ]
    except (ValueError, TypeError, KeyError):  # not our tag after all
        return text, []
    return message, options


class _WriteResults:
    """Last step, on one worker: every shard's record, to the results file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, records: list[dict[str, Any]]) -> int:
        _io.write_bytes_atomic(self.path, json.dumps(records).encode())
        return len(records)


def _read_results(path: str, tasks: Sequence[ShardTask]) -> list[ShardRecord]:
    if not _io.exists(path):
        raise ConvertError(
            f"the Beam pipeline finished without leaving its results ({path}); complete "
            "shards are kept: re-run the same command to resume"
        )
    records = [_record_from_json(r) for r in json.loads(_io.read_bytes(path))]
    if len(records) != len(tasks):
        raise ConvertError(
            f"the Beam pipeline returned {len(records)} shard records for {len(tasks)} "
            "shards; re-run the same command to finish the others"
        )
    return records


def _pipeline_error(err: Exception) -> ConvertError:
    """Our own message from a runner's wrapped worker exception (it names site and file)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, RxDataError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, RxDataError):  # the worker's error object survived (in process)
        # (Beam may re-create it with its own words appended, and without its options.)
        text, options = _untagged(str(cause))
        return ConvertError(text, options=cause.options or options)
    message = str(err)  # a remote runner passes only the worker's traceback text
    lines = [
        line.split(marker, 1)[1]
        for line in message.splitlines()
        for marker in ("ConvertError: ", "OutputExistsError: ")
        if marker in line
    ]
    if lines:  # the tagged line (the worker's last word), else the first
        tagged = [line for line in lines if _OPTIONS_TAG in line]
        text, options = _untagged((tagged or lines)[-1 if tagged else 0])
        return ConvertError(text, options=options)
    return ConvertError(
        f"the Beam pipeline failed ({type(err).__name__}: {message[:2000]}); complete "
        "shards are kept: re-run the same command to resume"
    )


def run_beam(tasks: Sequence[ShardTask], options: ConvertOptions) -> list[ShardRecord]:
    """Write every shard in a Beam pipeline, wait for it, and return the shards' records.

    A :class:`~rxdata.conversion.runners.Runner`: the pipeline's options come from
    ``options.beam_options`` (:func:`pipeline_options`; the DirectRunner with
    ``options.workers`` processes by default). The records travel back through a results
    file, as the module docstring explains.

    Args:
        tasks: The planned shards.
        options: The conversion's options.

    Returns:
        The records, in the order the pipeline collected them.

    Raises:
        OptionsError: Apache Beam is not installed (the message names the extra).
        ConvertError: A shard or the pipeline failed; complete shards are kept.

    Example:
        >>> run_beam([], ConvertOptions())  # nothing to write: no pipeline
        []
    """
    if not tasks:
        return []
    beam = _import_beam()
    pipeline = pipeline_options(options)
    output_dir = tasks[0].context.output_dir
    job, results = job_path(output_dir), results_path(output_dir)
    _io.makedirs(_io.dirname(job))
    if _io.exists(results):  # left by a run killed before it could remove it: not ours
        _io.remove(results)
    _write_job(job, tasks)
    try:
        try:
            with beam.Pipeline(options=pipeline) as p:
                _ = (
                    p
                    | "ShardNumbers" >> beam.Create(list(range(len(tasks))), reshuffle=False)
                    | "Distribute" >> beam.Reshuffle()
                    | "WriteShard" >> beam.Map(_WriteShard(job))
                    | "Collect" >> beam.combiners.ToList()
                    | "WriteResults" >> beam.Map(_WriteResults(results))
                )
        except Exception as err:  # runners wrap (or re-create) a worker's exception
            raise _pipeline_error(err) from err
        return _read_results(results, tasks)
    finally:
        _JOBS.clear()
        for path in (job, results):
            if _io.exists(path):
                _io.remove(path)

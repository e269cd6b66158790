"""Apache Beam runner for a conversion's shard plan (optional extra ``rxdata[beam]``).

The pipeline is the local runner's work spread over Beam workers:
``Create(shard tasks) -> Reshuffle -> ParDo(write one shard) -> ToList -> finalize``.
Each shard is written by :func:`rxdata.convert.write_shard_task`, the very function the
local process pool calls, so a Beam run writes the same bytes as a local run, shard for
shard, and leaves the same progress records: a failed or cancelled Beam job resumes like a
local one (complete shards are kept after a checksum check). The last step writes the
manifest and the skipped-sites report with :func:`rxdata.convert.finalize`.

``apache_beam`` is imported only when a Beam run starts. On a distributed runner (Dataflow,
Flink, Spark) the images and the output must be on storage every worker reaches
(``gs://...``), and the workers need rxdata installed (``--beam-option
setup_file=./setup.py`` or ``--beam-option sdk_container_image=...``); see
``docs/convert.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rxdata import _io
from rxdata.errors import ConvertError, OptionsError

if TYPE_CHECKING:  # pragma: no cover
    from rxdata.convert import (
        ConvertOptions,
        ShardRecord,
        ShardSpec,
        SkippedSite,
        _Context,
        _Task,
    )


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


class _WriteShard:
    """DoFn body: write one shard (picklable; imports rxdata on the worker)."""

    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx

    def __call__(self, task: _Task) -> ShardRecord:
        from rxdata.convert import write_shard_task

        return write_shard_task(task, self.ctx)


class _Finalize:
    """Last step: write the manifest and report from every shard's record."""

    def __init__(
        self,
        opts: ConvertOptions,
        shape: tuple[int, int],
        plan: Sequence[ShardSpec],
        layout: str,
        orphans: Sequence[SkippedSite],
    ) -> None:
        self.args = (opts, shape, tuple(plan), layout, tuple(orphans))

    def __call__(self, records: list[ShardRecord], output_dir: str) -> int:
        from rxdata.convert import finalize

        opts, shape, plan, layout, orphans = self.args
        finalize(output_dir, opts, shape, plan, layout, records, orphans)
        # Tell the driver which shards were kept from a previous run (not in the manifest,
        # which must not depend on how the output was reached).
        reused = sorted(r.path for r in records if r.reused)
        from rxdata.convert import PROGRESS_DIR

        _io.makedirs(_io.join(output_dir, PROGRESS_DIR))
        _io.write_bytes_atomic(run_summary_path(output_dir), json.dumps(reused).encode())
        return len(records)


def run_summary_path(output_dir: str) -> str:
    """Where the Beam pipeline's last step lists the shards it re-used."""
    from rxdata.convert import PROGRESS_DIR

    return _io.join(output_dir, PROGRESS_DIR, "beam-reused.json")


def run_beam(
    tasks: Sequence[_Task],
    ctx: _Context,
    opts: ConvertOptions,
    shape: tuple[int, int],
    plan: Sequence[ShardSpec],
    layout: str,
    orphans: Sequence[SkippedSite],
) -> None:
    """Run the shard plan as a Beam pipeline and wait for it to finish."""
    beam = _import_beam()
    options = pipeline_options(opts)
    try:
        with beam.Pipeline(options=options) as p:
            _ = (
                p
                | "ShardTasks" >> beam.Create(list(tasks), reshuffle=False)
                | "Distribute" >> beam.Reshuffle()
                | "WriteShard" >> beam.Map(_WriteShard(ctx))
                | "Collect" >> beam.combiners.ToList()
                | "Finalize"
                >> beam.Map(_Finalize(opts, shape, plan, layout, orphans), ctx.output_dir)
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

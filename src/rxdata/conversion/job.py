"""The conversion job: :func:`convert` checks its inputs, plans, and hands shards to a runner.

Contract (see also ``docs/convert.md``):

* **Plan** (:mod:`rxdata.conversion.plan`): a pure, deterministic function of the metadata
  and the options. The strategies and shard names follow rxrx1-utils'
  ``images2tfrecords``, so the seeds give the same grouping their users know.
* **Write** (:mod:`rxdata.conversion.shard`): each shard is written whole by one worker
  with :func:`~rxdata.conversion.shard.write_shard_task`; the runner named by
  ``options.runner`` (:data:`rxdata.conversion.runners.RUNNER_TABLE`: the local process
  pool, Apache Beam, Dask) decides where, and hands every shard's record back.
* **Finalize** (:mod:`rxdata.conversion.manifest`): :func:`convert` alone writes the
  manifest and the skipped-sites report, from the records the runner returned.
* **Resume** (:mod:`rxdata.conversion.manifest`): re-running the same conversion keeps
  every complete shard whose checksum and inputs (metadata rows, image files) are
  unchanged and rewrites the others, so an interrupted run finishes with byte-identical
  output and an edited label or image is never served stale.
* **One run per folder** (:mod:`rxdata.conversion.lock`).
* **Contained** (:mod:`rxdata.conversion.outputs`): nothing outside the output folder is
  written, deleted or read; a symbolic link inside it is refused.
* **Nothing good is lost** (:mod:`rxdata.conversion.staging`): ``overwrite`` replacing a
  complete conversion with other options builds the new one beside it and swaps the two
  only when the new one is complete.
* **Bad input.** Missing channel PNGs, corrupt PNGs, wrong size or bit depth, metadata
  sites without images, and images without metadata. ``on_error="raise"`` stops with a
  :class:`~rxdata.errors.ConvertError` naming the file (no partial shard is left);
  ``"skip"`` converts everything else and writes ``OUTPUT_DIR/skipped.csv``.
* **Verify** (:mod:`rxdata.conversion.verification`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from rxdata import _io
from rxdata.conversion.lock import holding_output_lock
from rxdata.conversion.manifest import ConversionSpec, build_manifest, finalize, prepare_output
from rxdata.conversion.options import REPORT_NAME, ConvertOptions
from rxdata.conversion.plan import (
    ShardSpec,
    load_metadata,
    plan_shards,
    select_sites,
    site_rows,
    sites_with_images,
)
from rxdata.conversion.runners import runner
from rxdata.conversion.shard import (
    ShardContext,
    ShardRecord,
    ShardTask,
    SkippedSite,
    channel_file,
    write_errors,
    write_failure_cause,
)
from rxdata.conversion.staging import commit, work_folder
from rxdata.errors import (
    ConvertError,
    ImageDecodeError,
    MetadataError,
    Option,
    OptionsError,
    RxDataError,
)
from rxdata.labels import label_release_of
from rxdata.naming import CHANNELS, DATASETS, IMAGES_FOLDER
from rxdata.records import MANIFEST_NAME
from rxdata.roots import DataRoot, find_root

log = logging.getLogger("rxdata.conversion")


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote.

    Attributes:
        output_dir: The output directory.
        manifest_path: Path of ``manifest.json``.
        shards: One record per shard, in plan order.
        skipped: Every skipped site or orphan image (empty with ``on_error="raise"``).
        report_path: Path of ``skipped.csv``, or ``None`` when nothing was skipped.
        elapsed_s: Wall time of the run in seconds.
    """

    output_dir: str
    manifest_path: str
    shards: tuple[ShardRecord, ...]
    skipped: tuple[SkippedSite, ...]
    report_path: str | None
    elapsed_s: float

    @property
    def n_sites(self) -> int:
        """Number of sites written."""
        return sum(s.count for s in self.shards)

    @property
    def n_reused(self) -> int:
        """Number of shards a resumed run found complete and kept."""
        return sum(s.reused for s in self.shards)

    @property
    def n_changed(self) -> int:
        """Number of shards a re-run rewrote because their inputs changed (``changed``)."""
        return sum(bool(s.changed) for s in self.shards)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped


def _find_images(images_root: str, datasets: Sequence[str]) -> DataRoot:
    """The images' root by the one layout rule (:func:`rxdata.roots.find_root`)."""
    try:
        data = find_root(images_root, datasets=datasets)
    except MetadataError as err:
        raise ConvertError(f"cannot convert {images_root}: {err}") from err
    return data


def _orphans(images_root: str, metadata: pd.DataFrame) -> list[SkippedSite]:
    """Sites with images under IMAGES_ROOT but no row in the (unfiltered) metadata."""
    from rxdata.images import channel_path
    from rxdata.metadata import scan_images

    scan = scan_images(images_root)
    for path in scan.unparsed[:20]:
        log.warning("ignoring %s: not an RxRx1 channel image name", path)
    sites = scan.sites
    unknown = sites[~sites["site_id"].astype(str).isin(set(metadata["site_id"].astype(str)))]
    out: list[SkippedSite] = []
    for rec in unknown.to_dict(orient="records"):
        dataset = None if pd.isna(rec["dataset"]) else str(rec["dataset"])
        path = channel_path(
            images_root,
            dataset,
            str(rec["experiment"]),
            int(rec["plate"]),
            str(rec["well"]),
            int(rec["site"]),
            int(rec["channels"][0]),
            scan.layout,
        )
        out.append(
            SkippedSite(
                str(rec["site_id"]), f"image without metadata: {path}", path, "", dataset or ""
            )
        )
    return out


def _drop_sites_without_images(
    selected: pd.DataFrame, data: DataRoot, opts: ConvertOptions
) -> tuple[pd.DataFrame, list[SkippedSite]]:
    """The selected sites that have images, and the others as skipped sites.

    One listing per plate folder (:func:`~rxdata.conversion.plan.sites_with_images`),
    before any shard is planned: sites without a single image never reach a shard.
    """
    has, folders = sites_with_images(selected, data)
    if has.all():
        return selected, []
    missing = selected[~has]
    first = missing.iloc[0]
    example = data.path(
        str(first["dataset"]) if data.layout == "kaggle" else None,
        str(first["experiment"]),
        int(first["plate"]),
        str(first["well"]),
        int(first["site"]),
        1,
    )
    with_images = sorted(set(selected["experiment"][has].astype(str)))
    experiments, skip = Option("experiments", with_images[:5]), Option("on_error", "skip")
    hint = (
        f"convert those with {experiments} or a metadata table of the sites you have"
        if with_images
        else "check IMAGES_ROOT"
    )
    counts = (
        f"{int(has.sum())} of the {len(selected)} selected sites have images under "
        f"{data.root}; {len(missing)} have none: site {first['site_id']} has no images "
        f"(expected {example} and its 5 siblings)"
    )
    if not has.any():
        raise ConvertError(
            f"none of the {len(selected)} selected sites has images under {data.root} "
            f"(e.g. no {example}); check IMAGES_ROOT, or pass the metadata of the images "
            "you have"
        )
    if opts.on_error == "raise":
        raise ConvertError(
            f"{counts}; {hint}, or pass {skip} to convert the "
            "sites that have images and list the others in skipped.csv",
            options=[experiments, skip],
        )
    log.warning("%s; they are listed in skipped.csv (%s)", counts, hint)
    skipped = [
        SkippedSite(
            str(site_id),
            f"site {site_id} is in the metadata but has no images (no {well}_s{site}_w*.png "
            f"in {folder or 'its experiment folder, which does not exist'})",
            str(folder),
            "",
            str(dataset),
        )
        for site_id, well, site, dataset, folder in zip(
            missing["site_id"],
            missing["well"],
            missing["site"],
            missing["dataset"],
            folders[~has],
            strict=True,
        )
    ]
    return selected[has].reset_index(drop=True), skipped


def _infer_shape(
    ctx: ShardContext, plan: Sequence[ShardSpec], rows: Mapping[str, Mapping[str, Any]]
) -> tuple[int, int]:
    """The most common image size among the first readable images of a few sites.

    Several sites vote so that one odd-sized file does not set the size for all the others
    (it is reported instead). Deterministic: the sites are taken in plan order.
    """
    from collections import Counter

    from rxdata.images import inspect_png

    votes: Counter[tuple[int, int]] = Counter()
    site_ids = (site_id for spec in plan for site_id in spec.site_ids)
    for tried, site_id in enumerate(site_ids, 1):
        for ch in CHANNELS:
            path = channel_file(ctx, rows[site_id], ch)
            try:
                votes[inspect_png(_io.read_bytes(path), path).shape] += 1
                break
            except (OSError, ImageDecodeError):  # missing or unreadable: reported later
                continue
        if sum(votes.values()) >= 5 or tried >= 100:
            break
    if not votes:
        size = Option("image_shape", (512, 512))
        raise ConvertError(
            f"no readable channel image among the first sites under {ctx.images_root}; "
            f"check the path, or pass the size, e.g. {size}",
            options=[size],
        )
    return votes.most_common(1)[0][0]


def _refuse_output_in_images(images_root: str, output_dir: str) -> None:
    """Refuse an output folder that is the images' root or inside its image folders.

    ``rxdata convert data data`` would mix shards and a manifest into the data set (a
    folder beside the images, ``data/records``, is fine).
    """
    if _io.is_remote(images_root) or _io.is_remote(output_dir):
        return
    images, out = os.path.realpath(images_root), os.path.realpath(output_dir)
    folders = [os.path.join(images, n) for n in (*DATASETS, IMAGES_FOLDER)]
    inside = images if out == images else None
    inside = inside or next((f for f in folders if os.path.commonpath([f, out]) == f), None)
    if inside is not None:
        where = "is" if inside == out else "is inside"
        raise OptionsError(
            f"the output folder {output_dir} {where} the images' folder "
            f"{images_root if inside == images else inside}: the shards would be written "
            "into the data set; choose an output folder outside it (e.g. "
            f"{os.path.join(os.path.dirname(images) or '.', 'records')})"
        )


def _options(options: ConvertOptions | None, overrides: Mapping[str, Any]) -> ConvertOptions:
    """``options`` (default: the defaults) with ``overrides`` replacing its fields."""
    base = options or ConvertOptions()
    if not isinstance(base, ConvertOptions):
        raise OptionsError(f"options={base!r} must be a ConvertOptions")
    fields = [f.name for f in dataclasses.fields(ConvertOptions)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise OptionsError(f"unknown option(s) {unknown}; allowed: {fields}")
    return dataclasses.replace(base, **overrides)


def _selected(md: pd.DataFrame, opts: ConvertOptions) -> pd.DataFrame:
    """The metadata rows the options select, or an error when there are none."""
    selected = select_sites(md, opts)
    if selected.empty:
        datasets = Option("datasets", list(opts.datasets))
        raise ConvertError(
            f"no sites to convert: the metadata has none in {datasets}"
            f"{'' if opts.include_controls else ' (controls excluded)'}",
            options=[datasets],
        )
    return selected


def _context(
    data: DataRoot,
    out_dir: str,
    opts: ConvertOptions,
    plan: Sequence[ShardSpec],
    rows: Mapping[str, Mapping[str, Any]],
) -> ShardContext:
    """What every shard task shares, with the image size given or read from the images."""
    ctx = ShardContext(
        data.base,
        data.layout,
        out_dir,
        opts.encoding,
        opts.compression,
        opts.validate,
        opts.decode,
        opts.on_error,
        opts.image_shape or (0, 0),
    )
    if opts.image_shape is None:
        ctx = dataclasses.replace(ctx, image_shape=_infer_shape(ctx, plan, rows))
    return ctx


def _checked_orphans(
    root: str, md: pd.DataFrame, opts: ConvertOptions, imageless: list[SkippedSite]
) -> list[SkippedSite]:
    """Images without metadata (``scan``) and ``imageless`` sites; raise with ``on_error``."""
    orphans = (_orphans(root, md) if opts.scan else []) + imageless
    if orphans and opts.on_error == "raise":
        more = f" and {len(orphans) - 1} more" if len(orphans) > 1 else ""
        skip = Option("on_error", "skip")
        raise ConvertError(
            f"{orphans[0].path} has no metadata row (site {orphans[0].site_id}){more}; pass "
            f"the matching metadata, or {skip} to convert the rest and report them",
            options=[skip],
        )
    return orphans


def _run(tasks: Sequence[ShardTask], opts: ConvertOptions) -> list[ShardRecord]:
    """Every task's record from the runner ``opts.runner`` names, in plan order."""
    log.info(
        "converting %d sites into %d shards in %s (%s runner, %s encoding)",
        sum(len(t.spec.site_ids) for t in tasks),
        len(tasks),
        tasks[0].context.output_dir,
        opts.runner,
        opts.encoding,
    )
    records = runner(opts.runner)(tasks, opts)
    order = {t.spec.path: i for i, t in enumerate(tasks)}
    unplanned = [r.path for r in records if r.path not in order]
    if unplanned:
        raise ConvertError(f"the {opts.runner} runner returned unplanned shards {unplanned[:5]}")
    return sorted(records, key=lambda r: order[r.path])


def _result(
    out_dir: str, records: Sequence[ShardRecord], orphans: Sequence[SkippedSite], start: float
) -> ConvertResult:
    """The :class:`ConvertResult`, logged."""
    skipped = tuple(s for r in records for s in r.skipped) + tuple(orphans)
    result = ConvertResult(
        out_dir,
        _io.join(out_dir, MANIFEST_NAME),
        tuple(records),
        skipped,
        _io.join(out_dir, REPORT_NAME) if skipped else None,
        time.monotonic() - start,
    )
    log.info(
        "wrote %d sites in %d shards (%d kept from a previous run, %d rewritten because "
        "their input changed), skipped %d, in %.1f s",
        result.n_sites,
        len(records),
        result.n_reused,
        result.n_changed,
        len(skipped),
        result.elapsed_s,
    )
    return result


@contextlib.contextmanager
def _failure_said(doing: str, kept: str) -> Iterator[None]:
    """A failed write (a full disk, permissions) while ``doing`` as a ConvertError.

    The message names the cause (:func:`~rxdata.conversion.shard.write_failure_cause`),
    what is kept, and that the same command finishes the run.
    """
    try:
        yield
    except RxDataError:  # OutputExistsError is an OSError too: its own message stands
        raise
    except write_errors() as err:
        raise ConvertError(
            f"{doing} failed: {err}; {kept}: fix the cause ({write_failure_cause(err)}) and "
            "re-run the same command to finish"
        ) from err


@holding_output_lock  # a second run into the same folder is refused at once
def convert(
    images_root: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    metadata: pd.DataFrame | str | os.PathLike[str] | None = None,
    options: ConvertOptions | None = None,
    **overrides: Any,
) -> ConvertResult:
    """Convert the RxRx1 PNGs under ``images_root`` to TFRecord shards in ``output_dir``.

    Re-running the same call resumes an interrupted run (complete shards are kept after
    their checksum and their inputs are checked; shards whose inputs changed are
    rewritten). See the module docstring for the contract and ``docs/convert.md`` for the
    output format.

    In a script, call it under ``if __name__ == "__main__":``: the worker processes are
    spawned, and each imports the script again; an unguarded call is refused with an
    :class:`~rxdata.errors.UnguardedMainError` that says so::

        import rxdata

        if __name__ == "__main__":
            rxdata.convert("data", "records")

    Args:
        images_root: Folder with the Kaggle layout (``train/``, ``test/``) or the full
            release (``images/``); local or ``gs://``.
        output_dir: Where shards, ``manifest.json`` and ``skipped.csv`` go.
        metadata: The site table, or a path :func:`rxdata.read_metadata` reads; default:
            the CSVs found inside or beside ``images_root``.
        options: A :class:`ConvertOptions`; ``overrides`` replace its fields.
        **overrides: Field values of :class:`ConvertOptions`, e.g. ``encoding="raw"``.

    Returns:
        What was written (shards, skipped sites, report path).

    Raises:
        ConvertError: A site could not be converted with ``on_error="raise"`` (the message
            names the file), a worker died, or another conversion is using ``output_dir``.
        UnguardedMainError: Called at a script's top level, outside
            ``if __name__ == "__main__":`` (with worker processes).
        OutputExistsError: ``output_dir`` holds a conversion with other options or metadata,
            ``.tfrecord`` files this conversion does not write, a symbolic link, a damaged
            manifest, or (``overwrite``) files rxdata did not write.
        OptionsError: An option is invalid.
        MetadataError: The metadata cannot be found or read.

    Example:
        >>> from rxdata.synthetic import SyntheticOptions, generate
        >>> root = generate("rxrx1-tiny", SyntheticOptions.tiny(seed=1))
        >>> result = convert(root, "tfrecords", datasets=("test",), workers=1)
        >>> result.n_sites, [s.path for s in result.shards]
        (112, ['random-42/test/001.tfrecord'])
    """
    start = time.monotonic()
    opts = _options(options, overrides)
    root, out_dir = os.fspath(images_root), os.fspath(output_dir)
    _refuse_output_in_images(root, out_dir)
    md = load_metadata(metadata, root)
    selected = _selected(md, opts)
    data = _find_images(root, opts.datasets)
    selected, imageless = _drop_sites_without_images(selected, data, opts)
    plan = plan_shards(selected, opts)
    rows = site_rows(selected)
    ctx = _context(data, out_dir, opts, plan, rows)
    # Replacing a complete conversion with other options: write beside it (staging).
    spec = ConversionSpec(opts, ctx.image_shape, plan, data.layout, label_release_of(md["sirna"]))
    manifest = build_manifest(spec, None, ())
    final_dir, out_dir = out_dir, work_folder(out_dir, opts.overwrite, manifest)
    ctx = dataclasses.replace(ctx, output_dir=out_dir)
    orphans = _checked_orphans(root, md, opts, imageless)

    with _failure_said(
        f"preparing the output folder {out_dir}", "nothing of a previous run is lost"
    ):
        expected = prepare_output(out_dir, spec, orphans)
    tasks = [
        ShardTask(s, tuple(rows[i] for i in s.site_ids), ctx, expected.get(s.path)) for s in plan
    ]
    records = _run(tasks, opts)
    with _failure_said(f"writing the manifest of {out_dir}", "every shard is written and kept"):
        finalize(out_dir, spec, records, orphans)
    commit(out_dir, final_dir)  # the new conversion is complete: swap it in
    return _result(final_dir, records, orphans, start)

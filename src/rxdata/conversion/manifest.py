"""The manifest of a conversion, resuming, the skipped-sites report, and output preparation.

``OUTPUT_DIR/manifest.json`` holds the options, the plan, and (when done) each shard's site
count, size, checksum (``"digest": "xxh3_128:HEX"``, :data:`rxdata._io.DIGEST_ALGORITHM`)
and its sites' input identities. While a run is under way each
finished shard leaves a record in ``OUTPUT_DIR/_progress/`` (removed, with the folder,
when the run completes). Re-running the same conversion re-uses every shard whose file
matches its recorded checksum and whose inputs are unchanged (see
:mod:`rxdata.conversion.shard`), and rewrites the others, so an interrupted run (Ctrl-C,
SIGTERM, ``kill -9``, a full disk) finishes with byte-identical output and an edited
input is never served stale.

:func:`prepare_output` refuses (:class:`~rxdata.errors.OutputExistsError`), unless
``overwrite=True``: an output written with different options or metadata, and any
``.tfrecord`` under the folder that this conversion does not write. With
``overwrite=True`` it deletes every such ``.tfrecord`` (found by listing the folder, not
from a manifest that may be lost), but refuses, deleting nothing, when the folder holds
files rxdata did not write. A complete conversion with other options is never deleted
here: :mod:`rxdata.conversion.staging` builds its replacement beside it. It refuses any
output folder holding a symbolic link, and a manifest naming a path outside the folder
is damaged: the one manifest reader, :func:`rxdata.records.read_manifest`, refuses it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rxdata import _io
from rxdata.conversion.options import REPORT_COLUMNS, REPORT_NAME, ConvertOptions
from rxdata.conversion.outputs import (
    OutputFiles,
    list_output,
    refuse_foreign,
    refuse_links,
    remove_files,
)
from rxdata.conversion.plan import ShardSpec, plan_digest, plan_json
from rxdata.conversion.shard import ShardRecord, SkippedSite, progress_path
from rxdata.errors import ConvertError, Option, OutputExistsError, RecordError
from rxdata.labels import LabelRelease
from rxdata.naming import CHANNELS
from rxdata.records import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PROGRESS_DIR,
    read_manifest,
)

log = logging.getLogger(__name__)

_OVERWRITE = Option("overwrite")  # how messages name the way out


@dataclass(frozen=True)
class ConversionSpec:
    """What a conversion holds, known before its first shard: the manifest's head.

    Attributes:
        options: The conversion's options.
        image_shape: ``(height, width)`` of every image.
        plan: The shards, in order.
        layout: The images' layout (``"kaggle"`` or ``"full"``).
        label_release: The label space of the converted labels
            (:func:`rxdata.labels.label_release_of`), ``None`` when no site is labelled.
    """

    options: ConvertOptions
    image_shape: tuple[int, int]
    plan: Sequence[ShardSpec]
    layout: str
    label_release: LabelRelease | None


def build_manifest(
    spec: ConversionSpec,
    records: Sequence[ShardRecord] | None,
    orphans: Sequence[SkippedSite],
) -> dict[str, Any]:
    """The manifest body: the plan while incomplete (``records=None``), else every shard."""
    from rxdata import __version__

    body: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "rxdata_version": __version__,
        "complete": records is not None,
        "options": {**spec.options.output_fields(), "image_shape": list(spec.image_shape)},
        "layout": spec.layout,
        "channels": list(CHANNELS),
        "label_release": spec.label_release,
        "plan_sha256": plan_digest(spec.plan),
        "n_shards": len(spec.plan),
        "n_planned_sites": sum(len(s.site_ids) for s in spec.plan),
    }
    if records is None:
        body["shards"] = plan_json(spec.plan)
        body["orphan_images"] = [o.to_json() for o in orphans]
        return body
    body["n_sites"] = sum(r.count for r in records)
    body["n_skipped"] = sum(len(r.skipped) for r in records)
    body["orphan_images"] = [o.to_json() for o in orphans]
    body["shards"] = [r.to_json() for r in records]
    return body


def _write_json(path: str, body: Mapping[str, Any]) -> None:
    # No indent: the C encoder (json's indent runs in Python, 10 s for 125,000 entries).
    _io.write_bytes_atomic(path, (json.dumps(body) + "\n").encode())


def _write_report(path: str, skipped: Sequence[SkippedSite]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for s in skipped:
        writer.writerow(s.row())
    _io.write_bytes_atomic(path, buf.getvalue().encode())


def finalize(
    output_dir: str,
    spec: ConversionSpec,
    records: Sequence[ShardRecord],
    orphans: Sequence[SkippedSite],
) -> dict[str, Any]:
    """Write the complete manifest and the report, and drop the progress records."""
    plan = spec.plan
    by_path = {r.path: r for r in records}
    missing = [s.path for s in plan if s.path not in by_path]
    if missing:
        raise ConvertError(
            f"{len(missing)} planned shards were not written, e.g. {missing[0]}; "
            "re-run the same command to finish them"
        )
    ordered = [by_path[s.path] for s in plan]
    body = build_manifest(spec, ordered, orphans)
    _write_json(_io.join(output_dir, MANIFEST_NAME), body)
    skipped = [s for r in ordered for s in r.skipped] + list(orphans)
    report = _io.join(output_dir, REPORT_NAME)
    if skipped:
        _write_report(report, skipped)
    elif _io.exists(report):
        _io.remove(report)
    for shard in plan:
        record = progress_path(output_dir, shard.path)
        if _io.exists(record):
            _io.remove(record)
    drop_progress_dir(output_dir)
    return body


def drop_progress_dir(output_dir: str) -> None:
    """Remove ``OUTPUT_DIR/_progress/`` if empty: it exists only while a run is incomplete."""
    _io.remove_empty_dir(_io.join(output_dir, PROGRESS_DIR))


# --- the run --------------------------------------------------------------------------------


def prepare_output(
    out_dir: str, spec: ConversionSpec, orphans: Sequence[SkippedSite]
) -> dict[str, str]:
    """Check an existing output, write the initial manifest; return reusable checksums.

    Raises:
        OutputExistsError: The folder holds a symbolic link, another conversion (without
            ``overwrite``), stray shards, or (``overwrite``) files rxdata did not write.
    """
    _io.makedirs(out_dir)
    listing = list_output(out_dir)
    refuse_links(out_dir, listing)
    opts, plan = spec.options, spec.plan
    fresh = build_manifest(spec, None, orphans)
    old = _old_manifest(out_dir, opts.overwrite)
    same = (
        old is not None
        and old.get("options") == fresh["options"]
        and old.get("plan_sha256") == fresh["plan_sha256"]
    )
    planned = {s.path for s in plan}
    shards = listing.shards
    if old is not None and not same and not shards:
        # A run that stopped before writing any shard (a wrong --image-shape, a bad input
        # under --on-error raise) leaves only its manifest: nothing to lose by replacing it.
        log.info("%s: replacing the manifest of a run that wrote no shard", out_dir)
        old = None
    if old is not None and not same and not opts.overwrite:
        what = (
            "options"
            if old.get("options") != fresh["options"]
            else "metadata (a different shard plan)"
        )
        raise OutputExistsError(
            f"{out_dir} holds a conversion made with different {what}"
            f"{_option_changes(old.get('options') or {}, fresh['options'])}; pass "
            f"{_OVERWRITE} to replace it, or choose another output directory",
            options=[_OVERWRITE],
        )
    strays = [p for p in shards if p not in planned]
    if old is None and not opts.overwrite:
        clash = [p for p in shards if p in planned]
        if clash:
            raise OutputExistsError(
                f"{out_dir} has no manifest but already holds "
                f"{_io.join(out_dir, clash[0])}; pass {_OVERWRITE} "
                "or choose another output directory",
                options=[_OVERWRITE],
            )
    if strays and not opts.overwrite:
        raise OutputExistsError(
            f"{out_dir} holds {len(strays)} .tfrecord file(s) that this conversion does not "
            f"write, e.g. {_io.join(out_dir, strays[0])}: a glob over the folder would read "
            "them with the new shards. Remove them, or pass "
            f"{_OVERWRITE} to delete them",
            options=[_OVERWRITE],
        )
    if opts.overwrite:
        # Same conversion: keep what a resume keeps (checked shard by shard); another
        # one (or no manifest to tell): delete every shard, whatever its name.
        _clear_for_overwrite(out_dir, listing, strays if same else shards, keep_progress=same)
    expected: dict[str, str] = {}
    if same and old is not None:
        if old.get("complete"):
            # Bring the complete run's records back as progress records to re-check;
            # only for planned paths, so no entry makes a record outside the plan.
            _io.makedirs(_io.join(out_dir, PROGRESS_DIR))
            for entry in old["shards"]:
                if entry.get("path") in planned:
                    _io.write_bytes_atomic(
                        progress_path(out_dir, entry["path"]), json.dumps(entry).encode()
                    )
        for shard in plan:
            digest = _recorded(progress_path(out_dir, shard.path))
            if digest is not None:
                expected[shard.path] = digest
    # Temporaries a killed run left (shards, progress records, manifest): found by the
    # listing, never by a glob of the folder's name (which may hold "[ab]" or "*").
    remove_files(out_dir, listing.temporaries, why="left by an interrupted run")
    _write_json(_io.join(out_dir, MANIFEST_NAME), fresh)
    return expected


def _recorded(record: str) -> str | None:
    """The checksum a progress record holds; None (the shard is rewritten) when it has none.

    A damaged record (not JSON, or a checksum this rxdata does not know) is said in a
    warning: its shard is rewritten, nothing is kept on its word.
    """
    if not _io.exists(record):
        return None
    try:
        entry = json.loads(_io.read_bytes(record))
        if not isinstance(entry, dict):
            raise ValueError("not a JSON object")
        return _io.recorded_digest(entry, record)
    except ValueError as err:  # RecordError and json's errors too
        log.warning("%s is damaged (%s); its shard is rewritten", record, err)
        return None


def _old_manifest(out_dir: str, overwrite: bool) -> dict[str, Any] | None:
    """The folder's manifest; a damaged one is replaced with ``overwrite``, else refused."""
    if not _io.exists(_io.join(out_dir, MANIFEST_NAME)):
        return None
    try:
        return read_manifest(out_dir)
    except RecordError as err:
        if overwrite:
            log.warning("%s; replacing it (overwrite)", err)
            return None
        raise OutputExistsError(
            f"{err}; pass {_OVERWRITE} to replace the conversion, or choose "
            "another output directory",
            options=[_OVERWRITE],
        ) from None


def _option_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """``": encoding: png -> raw, seed: 1 -> 2"``: the options that differ, old to new."""

    def text(v: Any) -> str:
        return "(unset)" if v is None else ",".join(map(str, v)) if isinstance(v, list) else str(v)

    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return (": " if changed else "") + ", ".join(
        f"{k}: {text(old.get(k))} -> {text(new.get(k))}" for k in changed
    )


def list_shards(output_dir: str) -> list[str]:
    """Every ``*.tfrecord`` file under ``output_dir``, as sorted POSIX paths relative to it.

    Found by :func:`rxdata.conversion.outputs.list_output`: nothing behind a symbolic
    link is listed.

    Example:
        >>> list_shards("no-such-dir")
        []
    """
    return list_output(output_dir).shards


def _clear_for_overwrite(
    out_dir: str, listing: OutputFiles, doomed_shards: Sequence[str], *, keep_progress: bool
) -> None:
    """Delete what ``overwrite=True`` replaces; refuse if the folder holds other files."""
    refuse_foreign(out_dir, listing)
    doomed = list(doomed_shards) + listing.temporaries
    if not keep_progress:
        doomed += [f for f in listing.files if f.startswith(PROGRESS_DIR + "/")]
        doomed += [f for f in listing.files if f == REPORT_NAME]
    remove_files(out_dir, sorted(set(doomed)), why="overwrite")
    if doomed_shards:
        log.warning(
            "overwrite: removed %d .tfrecord file(s) of a previous conversion, e.g. %s",
            len(doomed_shards),
            _io.join(out_dir, doomed_shards[0]),
        )

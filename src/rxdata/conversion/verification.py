"""Verification of a finished conversion: re-read every shard, compare with the manifest."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rxdata import _io
from rxdata.conversion.inputs import check_inputs
from rxdata.conversion.options import ConvertOptions
from rxdata.conversion.outputs import list_output
from rxdata.conversion.plan import load_metadata, select_sites, site_rows
from rxdata.errors import RecordError, RxDataError
from rxdata.naming import CHANNELS
from rxdata.records import MANIFEST_NAME, inside, read_manifest


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        output_dir: The directory checked.
        n_shards: Shards checked.
        n_sites: Examples read.
        problems: One line per mismatch (empty when everything matched).
        decoded: Whether every image was decoded.
        inputs: Whether the input images were re-hashed (``inputs=``).
    """

    output_dir: str
    n_shards: int
    n_sites: int
    problems: tuple[str, ...] = field(default_factory=tuple)
    decoded: bool = False
    inputs: bool = False

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """A human-readable report.

        Example:
            >>> print(VerifyReport("out", 2, 10).summary())
            out: OK, 2 shards, 10 sites verified (checksums, counts, site ids)
        """
        what = "checksums, counts, site ids" + (", decoded images" if self.decoded else "")
        what += ", input contents" if self.inputs else ""
        if self.ok:
            return (
                f"{self.output_dir}: OK, {self.n_shards} shards, {self.n_sites} sites "
                f"verified ({what})"
            )
        lines = [
            f"{self.output_dir}: {len(self.problems)} problem(s) in {self.n_shards} "
            f"shards, {self.n_sites} sites read ({what}):"
        ]
        lines += [f"  - {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        return "\n".join(lines)


_IMAGE_FEATURES = frozenset({"image", "height", "width", "channels", "encoding"})


def _metadata_mismatch(example: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    """How an example's metadata features differ from what ``row`` gives ('' if not)."""
    from rxdata.reader import decode_example
    from rxdata.tfrecord import encode_example

    try:
        blank = np.zeros((1, 1, 1), np.uint8)
        want = decode_example(encode_example(row, image=blank), decode=False)
    except RxDataError as err:
        return f"its metadata row cannot be encoded ({err})"
    diffs = [
        f"{key} is {example.get(key)!r} in the shard but {value!r} in the metadata"
        for key, value in want.items()
        if key not in _IMAGE_FEATURES and example.get(key) != value
    ]
    return "; ".join(diffs)


def _check_examples(
    path: str,
    entry: Mapping[str, Any],
    shape: tuple[int, int],
    decode: bool,
    problems: list[str],
    rows: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """The site ids of a shard's examples; what is wrong goes to ``problems``."""
    ids: list[str] = []
    try:
        _read_examples(path, entry, shape, decode, problems, ids, rows)
    except (RxDataError, OSError) as err:  # not a TFRecord at all, unreadable
        problems.append(
            f"{entry['path']}: unreadable after {len(ids)} example(s): {err}; re-run the "
            "same conversion command to rewrite it"
        )
    return ids


def _read_examples(
    path: str,
    entry: Mapping[str, Any],
    shape: tuple[int, int],
    decode: bool,
    problems: list[str],
    ids: list[str],
    rows: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    from rxdata.reader import read_tfrecord

    reader = read_tfrecord(path, on_error="skip", decode=decode)
    for ex in reader:
        site_id = f"{ex['id_code']}_{ex['site']}"
        ids.append(site_id)
        got = (ex["height"], ex["width"], ex["channels"])
        if got != (*shape, len(CHANNELS)):
            problems.append(
                f"{entry['path']}: example {len(ids) - 1} ({site_id}) is "
                f"{got[0]}x{got[1]}x{got[2]}, expected "
                f"{shape[0]}x{shape[1]}x{len(CHANNELS)}"
            )
        row = rows.get(site_id) if rows is not None else None
        mismatch = _metadata_mismatch(ex, row) if row is not None else ""
        if mismatch:
            problems.append(
                f"{entry['path']}: {site_id}: {mismatch}; the metadata changed since the "
                "conversion: re-run the same conversion command to rewrite its shards"
            )
    problems.extend(f"{entry['path']}: {msg}" for msg in reader.errors)


def verify(
    output_dir: str | os.PathLike[str],
    *,
    decode: bool = False,
    metadata: pd.DataFrame | str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    inputs: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Re-read a conversion's shards and check them against its manifest and metadata.

    Checks that the conversion completed, that every shard exists with the recorded size
    and checksum (XXH3-128; SHA-256 in manifests of earlier versions), that it holds the
    recorded number of examples with the recorded site ids,
    that no site appears twice, that no ``.tfrecord`` file under ``output_dir`` is missing
    from the manifest, and, with ``metadata``, that every selected site of the metadata
    is either written or reported skipped, that nothing else was written, and that each
    record's metadata features (labels, well type, cell type, data set, ...) are those
    the metadata gives its site now. Every shard
    is checked and every problem reported (a damaged shard does not stop the check).

    Nothing outside ``output_dir`` is opened: a manifest naming a shard path that is
    absolute, has a ``..`` part or passes through a symbolic link is reported as damaged,
    and a symbolic link inside the folder is reported, never followed
    (:mod:`rxdata.conversion.outputs`).

    Args:
        output_dir: A directory written by :func:`convert`.
        decode: Also decode every image and check its size (slow).
        metadata: The site table or a path to it, to check the site set against.
        progress: Called with the number of sites of each shard checked.
        inputs: The images' root: also re-hash every input image and compare it with the
            content hash recorded at conversion (:func:`rxdata.conversion.inputs.check_inputs`;
            reads every image).

    Returns:
        A :class:`VerifyReport`; ``report.ok`` is False when anything mismatched.

    Raises:
        FileNotFoundError: ``output_dir`` has no manifest.

    Example:
        >>> try:
        ...     verify("no-such-dir")
        ... except FileNotFoundError:
        ...     print("no manifest")
        no manifest
    """
    out_dir = os.fspath(output_dir)
    try:
        manifest = read_manifest(out_dir)
    except RecordError as err:  # damaged: nothing it names is opened
        return VerifyReport(out_dir, 0, 0, (str(err),), decode)
    if not manifest.get("complete"):
        problem = (
            "the conversion did not complete (manifest says complete=false); "
            "re-run the same rxdata-convert command to finish it"
        )
        return VerifyReport(out_dir, 0, 0, (problem,), decode)
    opts = manifest["options"]
    shape = (int(opts["image_shape"][0]), int(opts["image_shape"][1]))
    rows = _selected_rows(metadata, opts)
    listing = list_output(out_dir)
    problems = [
        f"{link}: a symbolic link inside the output folder; rxdata does not follow it, but "
        "a glob over the folder would read what it points to: remove it"
        for link in listing.links
    ]
    problems += [
        f"{name}: not a regular file (never opened): remove it" for name in listing.special
    ]
    regular = set(listing.files)
    seen: dict[str, str] = {}
    n_sites = 0
    for entry in manifest["shards"]:
        ids = _check_shard(out_dir, entry, regular, (shape, decode), problems, rows)
        n_sites += len(ids)
        for site_id in ids:
            if site_id in seen:
                problems.append(f"{site_id}: written twice ({seen[site_id]} and {entry['path']})")
            seen[site_id] = entry["path"]
        if progress is not None:
            progress(len(ids))
    listed = {str(e["path"]) for e in manifest["shards"]}
    problems += [
        f"{stray}: a .tfrecord the manifest does not list (a stray copy, or left by "
        "another conversion); a glob over the folder would read it too: remove it"
        for stray in listing.shards
        if stray not in listed
    ]
    if rows is not None:
        problems += _site_set_problems(rows, seen, manifest)
    if inputs is not None:
        problems += check_inputs(manifest, out_dir, inputs)
    return VerifyReport(
        out_dir, len(manifest["shards"]), n_sites, tuple(problems), decode, inputs is not None
    )


def _selected_rows(
    metadata: pd.DataFrame | str | os.PathLike[str] | None, opts: Mapping[str, Any]
) -> dict[str, dict[str, Any]] | None:
    """The metadata rows the manifest's options select, by site id (None: no metadata)."""
    if metadata is None:
        return None
    md = metadata if isinstance(metadata, pd.DataFrame) else load_metadata(metadata, "")
    sel = ConvertOptions(
        datasets=tuple(opts["datasets"]),
        include_controls=bool(opts["include_controls"]),
        experiments=opts.get("experiments"),
    )
    return site_rows(select_sites(md, sel))


def _check_shard(
    out_dir: str,
    entry: Mapping[str, Any],
    regular: set[str],
    how: tuple[tuple[int, int], bool],
    problems: list[str],
    rows: Mapping[str, Mapping[str, Any]] | None,
) -> list[str]:
    """Check one manifest entry's file; the site ids read (problems go to ``problems``).

    Only a regular file found by the listing (``regular``) is opened.
    """
    shape, decode = how
    try:
        path = inside(out_dir, str(entry["path"]))
    except RecordError as err:
        problems.append(f"damaged manifest: {err}; the file was not opened")
        return []
    if entry["path"] not in regular:
        what = "a directory, not a shard file" if _io.isdir(path) else "missing"
        if _io.exists(path) and what == "missing":
            what = "not a regular file (not opened)"
        problems.append(
            f"{entry['path']}: {what} (manifest lists {entry['count']} sites)"
            + ("" if what == "missing" else "; remove it and re-run the same conversion")
        )
        return []
    # read_manifest refused a complete conversion's shard with no checksum or one this
    # rxdata does not know; SHA-256 of earlier versions' manifests is checked by SHA-256.
    expected = str(_io.recorded_digest(entry, _io.join(out_dir, MANIFEST_NAME)))
    algorithm, _, want = expected.partition(":")
    try:
        found = _io.file_digest(path, algorithm)
    except OSError as err:
        problems.append(f"{entry['path']}: cannot be read: {err}")
        return []
    if found != expected:
        problems.append(
            f"{entry['path']}: {algorithm} checksum {found.partition(':')[2][:12]}... "
            f"differs from the manifest's {want[:12]}...: the file changed (damaged, "
            "truncated or replaced); re-run the same conversion command to rewrite it"
        )
    ids = _check_examples(path, entry, shape, decode, problems, rows)
    if len(ids) != entry["count"]:
        problems.append(f"{entry['path']}: {len(ids)} examples, manifest says {entry['count']}")
    if ids != list(entry["site_ids"])[: len(ids)] or len(ids) != len(entry["site_ids"]):
        problems.append(f"{entry['path']}: site ids differ from the manifest's")
    return ids


def _site_set_problems(
    rows: Mapping[str, Any], seen: Mapping[str, str], manifest: Mapping[str, Any]
) -> list[str]:
    """Sites of the metadata neither written nor skipped, and written sites not in it."""
    problems: list[str] = []
    expected = set(rows)
    skipped = {str(s["site_id"]) for e in manifest["shards"] for s in e.get("skipped", ())}
    skipped |= {str(s["site_id"]) for s in manifest.get("orphan_images", ())}
    lost = sorted(expected - set(seen) - skipped)
    extra = sorted(set(seen) - expected)
    if lost:
        problems.append(
            f"{len(lost)} site(s) of the metadata are neither written nor "
            f"reported skipped, e.g. {lost[:5]}"
        )
    if extra:
        problems.append(f"{len(extra)} written site(s) are not in the metadata, e.g. {extra[:5]}")
    return problems

"""Verification of a finished conversion: re-read every shard, compare with the manifest."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rxdata import _io
from rxdata.conversion.manifest import list_shards, read_manifest
from rxdata.conversion.options import ConvertOptions
from rxdata.conversion.plan import load_metadata, select_sites, site_rows
from rxdata.errors import RxDataError
from rxdata.naming import CHANNELS


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        output_dir: The directory checked.
        n_shards: Shards checked.
        n_sites: Examples read.
        problems: One line per mismatch (empty when everything matched).
        decoded: Whether every image was decoded.
    """

    output_dir: str
    n_shards: int
    n_sites: int
    problems: tuple[str, ...] = field(default_factory=tuple)
    decoded: bool = False

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
) -> VerifyReport:
    """Re-read a conversion's shards and check them against its manifest and metadata.

    Checks that the conversion completed, that every shard exists with the recorded size
    and sha256, that it holds the recorded number of examples with the recorded site ids,
    that no site appears twice, that no ``.tfrecord`` file under ``output_dir`` is missing
    from the manifest, and, with ``metadata``, that every selected site of the metadata
    is either written or reported skipped, that nothing else was written, and that each
    record's metadata features (labels, well type, cell type, data set, ...) are those
    the metadata gives its site now. Every shard
    is checked and every problem reported (a damaged shard does not stop the check).

    Args:
        output_dir: A directory written by :func:`convert`.
        decode: Also decode every image and check its size (slow).
        metadata: The site table or a path to it, to check the site set against.
        progress: Called with the number of sites of each shard checked.

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
    manifest = read_manifest(out_dir)
    problems: list[str] = []
    if not manifest.get("complete"):
        problems.append(
            "the conversion did not complete (manifest says complete=false); "
            "re-run the same rxdata-convert command to finish it"
        )
        return VerifyReport(out_dir, 0, 0, tuple(problems), decode)
    opts = manifest["options"]
    shape = (int(opts["image_shape"][0]), int(opts["image_shape"][1]))
    rows: dict[str, dict[str, Any]] | None = None
    if metadata is not None:
        md = metadata if isinstance(metadata, pd.DataFrame) else load_metadata(metadata, "")
        sel = ConvertOptions(
            datasets=tuple(opts["datasets"]),
            include_controls=bool(opts["include_controls"]),
            experiments=opts.get("experiments"),
        )
        rows = site_rows(select_sites(md, sel))
    seen: dict[str, str] = {}
    n_sites = 0
    for entry in manifest["shards"]:
        path = _io.join(out_dir, entry["path"])
        if not _io.exists(path):
            problems.append(f"{entry['path']}: missing (manifest lists {entry['count']} sites)")
            continue
        if _io.isdir(path):
            problems.append(
                f"{entry['path']}: a directory, not a shard file (manifest lists "
                f"{entry['count']} sites); remove it and re-run the same conversion"
            )
            continue
        try:
            digest = _io.file_sha256(path)
        except OSError as err:
            problems.append(f"{entry['path']}: cannot be read: {err}")
            continue
        if digest != entry["sha256"]:
            problems.append(
                f"{entry['path']}: sha256 {digest[:12]}... differs from the "
                f"manifest's {entry['sha256'][:12]}...: the file changed"
            )
        ids = _check_examples(path, entry, shape, decode, problems, rows)
        n_sites += len(ids)
        if len(ids) != entry["count"]:
            problems.append(f"{entry['path']}: {len(ids)} examples, manifest says {entry['count']}")
        if ids != list(entry["site_ids"])[: len(ids)] or len(ids) != len(entry["site_ids"]):
            problems.append(f"{entry['path']}: site ids differ from the manifest's")
        for site_id in ids:
            if site_id in seen:
                problems.append(f"{site_id}: written twice ({seen[site_id]} and {entry['path']})")
            seen[site_id] = entry["path"]
        if progress is not None:
            progress(len(ids))
    listed = {str(e["path"]) for e in manifest["shards"]}
    for stray in list_shards(out_dir):
        if stray not in listed:
            problems.append(
                f"{stray}: a .tfrecord the manifest does not list (a stray copy, or left by "
                "another conversion); a glob over the folder would read it too: remove it"
            )
    if rows is not None:
        expected = set(rows)
        skipped = {str(s["site_id"]) for e in manifest["shards"] for s in e.get("skipped", ())}
        lost = sorted(expected - set(seen) - skipped)
        extra = sorted(set(seen) - expected)
        if lost:
            problems.append(
                f"{len(lost)} site(s) of the metadata are neither written nor "
                f"reported skipped, e.g. {lost[:5]}"
            )
        if extra:
            problems.append(
                f"{len(extra)} written site(s) are not in the metadata, e.g. {extra[:5]}"
            )
    return VerifyReport(out_dir, len(manifest["shards"]), n_sites, tuple(problems), decode)

"""Which TFRecord shards hold which sites: the conversion manifest, or the records.

``rxdata-convert`` writes ``manifest.json`` next to its shards, listing every shard's sites
in order. The training scripts use it to

* count the sites behind a file glob (steps per epoch without reading any record),
* hold out whole experiments for validation (:func:`rxdata.holdout_experiments`) and pick
  the shard files of each part.

Any conversion strategy works: the pipeline keeps a part's records with its
``experiments`` filter. With ``--strategy by_experiment`` (or ``by_exp_plate_site``)
shards, each part also reads only its own files.

Shards without a manifest (written by rxrx1-utils, or copied without it) are read once,
without decoding images, to learn the same table; ``load_records`` says so, since on the
full data set that pass takes minutes.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from rxdata.conversion import MANIFEST_NAME, read_manifest
from rxdata.errors import OptionsError
from rxdata.naming import parse_site_id

COLUMNS = ["site_id", "experiment", "cell_type", "plate", "dataset", "file"]

_WILDCARDS = set("*?[")


def _static_prefix(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if _WILDCARDS & set(part):
            return "/".join(parts[:i])
    return posixpath.dirname(pattern)


def find_manifest_dir(pattern: str) -> str | None:
    """The nearest folder at or above the glob's static prefix holding ``manifest.json``.

    Example:
        >>> find_manifest_dir("/nonexistent/random-42/train/*.tfrecord") is None
        True
    """
    import tensorflow as tf  # tf.io.gfile reads local paths and gs:// alike

    current = _static_prefix(pattern).rstrip("/")
    while current and current not in ("gs:", "gs:/"):
        if tf.io.gfile.exists(posixpath.join(current, MANIFEST_NAME)):
            return current
        parent = posixpath.dirname(current)
        if parent == current:
            break
        current = parent
    return None


@dataclass(frozen=True)
class RecordSet:
    """The shards matched by a glob and the sites they hold (from the manifest).

    Attributes:
        files: Matched shard paths, sorted.
        sites: One row per site: ``site_id, experiment, cell_type, plate, dataset, file``.
        image_shape: ``(height, width)`` of the converted images.
    """

    files: tuple[str, ...]
    sites: pd.DataFrame
    image_shape: tuple[int, int]

    @property
    def experiments(self) -> list[str]:
        """Experiments present, sorted."""
        return sorted(self.sites["experiment"].unique())

    def count(self, files: Iterable[str] | None = None) -> int:
        """Number of sites in ``files`` (default: all matched files)."""
        if files is None:
            return len(self.sites)
        wanted = set(files)
        return int(self.sites["file"].isin(wanted).sum())

    def count_of(self, experiments: Iterable[str]) -> int:
        """Number of sites of ``experiments``."""
        return int(self.sites["experiment"].isin(set(experiments)).sum())

    def files_of(self, experiments: Iterable[str]) -> list[str]:
        """The shard files holding at least one site of ``experiments`` (sorted).

        With ``--strategy by_experiment`` shards this reads only the part's own files;
        with mixed shards it is every file, and the pipeline's ``experiments`` filter
        keeps the part's records.
        """
        in_part = self.sites["experiment"].isin(set(experiments))
        return sorted(self.sites.loc[in_part, "file"].unique().tolist())


def load_records(
    pattern: str, manifest_dir: str | None = None, *, log: Callable[[str], Any] = print
) -> RecordSet:
    """Match ``pattern`` and learn which sites the matched shards hold.

    From the conversion manifest at or above the pattern (or in ``manifest_dir``); without
    one, from the records themselves (one pass, images not decoded; ``log`` says so).

    Raises:
        OptionsError: nothing matches, or a matched file is not listed in the manifest.
        FileNotFoundError: ``manifest_dir`` has no manifest.
    """
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise OptionsError(f"no TFRecord files match {pattern!r}")
    root = manifest_dir or find_manifest_dir(pattern)
    if root is None:
        log(
            f"note: no {MANIFEST_NAME} at or above {_static_prefix(pattern)!r} (rxrx1-utils "
            f"records, or shards copied without it): reading the {len(files)} file(s) once "
            "to learn their experiments"
        )
        return _records_from_shards(files)
    manifest = read_manifest(root)
    by_path = {posixpath.join(root, entry["path"]): entry for entry in manifest["shards"]}
    rows = []
    for file in files:
        entry = by_path.get(file)
        if entry is None:
            raise OptionsError(f"{file} is not listed in {posixpath.join(root, MANIFEST_NAME)}")
        for site_id in entry["site_ids"]:
            key = parse_site_id(site_id)
            cell_type = key.experiment.split("-")[0]
            rows.append((site_id, key.experiment, cell_type, key.plate, entry["dataset"], file))
    height, width = manifest["options"]["image_shape"]
    return RecordSet(tuple(files), pd.DataFrame(rows, columns=COLUMNS), (int(height), int(width)))


def _records_from_shards(files: Sequence[str]) -> RecordSet:
    """The site table read from the records (``dataset`` from the record, or ``train``
    for labelled and ``test`` for unlabelled sites when records do not say)."""
    from rxdata.reader import read_tfrecord

    rows, shapes = [], set()
    for file in files:
        for record in read_tfrecord(file, decode=False):
            dataset = record["dataset"] or ("test" if record["sirna"] is None else "train")
            site_id = f"{record['id_code']}_{record['site']}"
            experiment = record["experiment"]
            cell_type = record["cell_type"] or experiment.split("-")[0]
            rows.append((site_id, experiment, cell_type, record["plate"], dataset, file))
            shapes.add((int(record["height"]), int(record["width"])))
    if not rows:
        raise OptionsError(f"{len(files)} file(s) hold no records: {list(files)[:3]}")
    if len(shapes) > 1:
        raise OptionsError(
            f"the records have several image sizes {sorted(shapes)}; convert "
            "them again with one size"
        )
    return RecordSet(tuple(files), pd.DataFrame(rows, columns=COLUMNS), shapes.pop())

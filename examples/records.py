"""Which TFRecord shards hold which sites: the conversion (``rxdata.open_records``), or the records.

``rxdata convert`` writes ``manifest.json`` next to its shards; ``rxdata.open_records``
reads it into a ``Records`` object that knows every shard's split and sites. The training
scripts use it to

* count the sites of a split (steps per epoch without reading any record),
* hold out whole experiments for validation (:func:`rxdata.holdout_experiments`) and pick
  the shard files of each part.

``--data`` is the conversion's folder (``records``: its ``train`` split for training, its
``test`` split for prediction), a folder inside it (``records/random-42/train``), or a
file glob. Any conversion strategy works: the pipeline keeps a part's records with its
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

from rxdata import Records, open_records
from rxdata.errors import OptionsError
from rxdata.naming import parse_experiment
from rxdata.records import MANIFEST_NAME, find_conversion

COLUMNS = ["site_id", "experiment", "cell_type", "plate", "dataset", "file"]

_WILDCARDS = set("*?[")


def _static_prefix(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if _WILDCARDS & set(part):
            return "/".join(parts[:i])
    return posixpath.dirname(pattern)


def find_conversion_of(pattern: str) -> Records | None:
    """The conversion at or above the glob's static prefix, or ``None`` (no manifest).

    Example:
        >>> find_conversion_of("/nonexistent/random-42/train/*.tfrecord") is None
        True
    """
    try:
        root, _ = find_conversion(_static_prefix(pattern) or ".", below=False)
    except (FileNotFoundError, OptionsError):
        return None
    return open_records(root)


@dataclass(frozen=True)
class RecordSet:
    """The shards matched by a glob and the sites they hold (from the manifest).

    Attributes:
        files: Matched shard paths, sorted.
        sites: One row per site: ``site_id, experiment, cell_type, plate, dataset, file``.
        image_shape: ``(height, width)`` of the converted images.
        conversion: The conversion the shards come from (``rxdata.open_records``), or
            ``None`` for records without a manifest.
    """

    files: tuple[str, ...]
    sites: pd.DataFrame
    image_shape: tuple[int, int]
    conversion: Records | None = None

    @property
    def splits(self) -> list[str]:
        """The splits (``train``, ``test``) the shards hold."""
        return sorted(self.sites["dataset"].unique(), key=["train", "test"].index)

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
    data: str,
    split: str | None = None,
    *,
    allow_incomplete: bool = False,
    log: Callable[[str], Any] = print,
) -> RecordSet:
    """The shards of ``data`` and the sites they hold.

    ``data`` is a conversion folder (with ``split``: that split's shards; without: all),
    a folder inside one, or a file glob. A conversion answers from its manifest
    (``rxdata.open_records``); a glob without one is read once (images not decoded; ``log``
    says so).

    Raises:
        OptionsError: nothing matches; a matched file is not a shard of the conversion;
            ``split`` is not one of the conversion's splits (the message lists them).
        IncompleteConversionError: the conversion is unfinished or still running (pass
            ``allow_incomplete=True`` to read its finished shards).
    """
    import tensorflow as tf

    if tf.io.gfile.isdir(data):
        records = open_records(data)
        files = records.files(split, allow_incomplete=allow_incomplete)
        return _from_conversion(records, files, split)
    files = sorted(tf.io.gfile.glob(data))
    if not files:
        raise OptionsError(f"no TFRecord files match {data!r}")
    conversion = find_conversion_of(data)
    if conversion is None:
        log(
            f"note: no {MANIFEST_NAME} at or above {_static_prefix(data)!r} (rxrx1-utils "
            f"records, or shards copied without it): reading the {len(files)} file(s) once "
            "to learn their experiments"
        )
        found = _records_from_shards(files)
        if split is None:
            return found
        part = found.sites[found.sites["dataset"] == split]
        if part.empty:
            raise OptionsError(
                f"{data!r} holds no {split!r} sites (its records are "
                f"{sorted(found.sites['dataset'].unique())})"
            )
        kept = tuple(f for f in found.files if f in set(part["file"]))
        return RecordSet(kept, part.reset_index(drop=True), found.image_shape, None)
    listed = set(conversion.files(split, allow_incomplete=allow_incomplete))
    stray = [f for f in files if f not in listed]
    if stray:
        other = conversion.sites()
        where = other.loc[other["file"] == stray[0], "dataset"]
        which = f"the {where.iloc[0]!r} split" if len(where) else "no split"
        raise OptionsError(
            f"{stray[0]} is a shard of {which} of the conversion {conversion.root}, not of "
            f"{split!r}; give the folder {conversion.root} instead of a glob"
            if split is not None
            else f"{stray[0]} is not a shard of the conversion {conversion.root}"
        )
    return _from_conversion(conversion, files, split)


def _from_conversion(records: Records, files: Sequence[str], split: str | None) -> RecordSet:
    sites = records.sites(split)
    sites = sites[sites["file"].isin(set(files))]
    table = sites[COLUMNS].reset_index(drop=True)
    return RecordSet(tuple(files), table, records.image_shape, records)


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
            cell_type = record["cell_type"] or parse_experiment(experiment)[0]
            rows.append((site_id, experiment, cell_type, record["plate"], dataset, file))
            shapes.add((int(record["height"]), int(record["width"])))
    if not rows:
        raise OptionsError(f"{len(files)} file(s) hold no records: {list(files)[:3]}")
    if len(shapes) > 1:
        raise OptionsError(
            f"the records have several image sizes {sorted(shapes)}; convert "
            "them again with one size"
        )
    return RecordSet(tuple(files), pd.DataFrame(rows, columns=COLUMNS), shapes.pop(), None)

"""Which converted TFRecord shards hold which sites: the conversion manifest, read once.

``rxdata-convert`` writes ``manifest.json`` next to its shards, listing every shard's sites
in order. The training scripts use it to

* count the sites behind a file glob (steps per epoch without reading any record),
* hold out whole experiments for validation (:func:`rxdata.holdout_experiments`) and pick
  the shard files of each part.

Any conversion strategy works: the pipeline keeps a part's records with its
``experiments`` filter. With ``--strategy by_experiment`` (or ``by_exp_plate_site``)
shards, each part also reads only its own files.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from rxdata import _io
from rxdata.conversion import MANIFEST_NAME, read_manifest
from rxdata.errors import OptionsError
from rxdata.metadata import parse_site_id

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
    current = _static_prefix(pattern).rstrip("/")
    while current and current not in ("gs:", "gs:/"):
        if _io.exists(_io.join(current, MANIFEST_NAME)):
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


def load_records(pattern: str, manifest_dir: str | None = None) -> RecordSet:
    """Match ``pattern`` and read the sites of the matched shards from the manifest.

    Raises:
        OptionsError: nothing matches, or no manifest is found above the pattern.
        FileNotFoundError: ``manifest_dir`` has no manifest.
    """
    files = sorted(_io.glob(pattern))
    if not files:
        raise OptionsError(f"no TFRecord files match {pattern!r}")
    root = manifest_dir or find_manifest_dir(pattern)
    if root is None:
        raise OptionsError(
            f"no {MANIFEST_NAME} found at or above {_static_prefix(pattern)!r}: point --data at "
            "shards written by rxdata-convert (the manifest lists their sites)"
        )
    manifest = read_manifest(root)
    by_path = {_io.join(root, entry["path"]): entry for entry in manifest["shards"]}
    rows = []
    for file in files:
        entry = by_path.get(file)
        if entry is None:
            raise OptionsError(f"{file} is not listed in {_io.join(root, MANIFEST_NAME)}")
        for site_id in entry["site_ids"]:
            key = parse_site_id(site_id)
            rows.append((site_id, key.experiment, key.experiment.split("-")[0], key.plate, file))
    sites = pd.DataFrame(rows, columns=["site_id", "experiment", "cell_type", "plate", "file"])
    sites["dataset"] = sites["file"].map({f: by_path[f]["dataset"] for f in files})
    height, width = manifest["options"]["image_shape"]
    return RecordSet(tuple(files), sites, (int(height), int(width)))

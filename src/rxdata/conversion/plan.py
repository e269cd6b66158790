"""The shard plan: which sites a conversion selects and how it groups them into shards.

:func:`plan_shards` is a pure, deterministic function of the metadata table and the
:class:`~rxdata.conversion.ConvertOptions`: the same inputs always give the same shards, each
with the same sites in the same order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rxdata import _io
from rxdata.conversion.options import ConvertOptions
from rxdata.errors import MetadataError, ParseError, option_text
from rxdata.naming import DATASETS, normalize_experiment
from rxdata.roots import DataRoot

_SORT = ["dataset", "experiment", "plate", "well", "site"]


@dataclass(frozen=True)
class ShardSpec:
    """One planned shard: its path (relative to the output directory) and its sites.

    Attributes:
        path: POSIX path relative to the output directory, e.g. ``random-42/train/001.tfrecord``.
        dataset: ``"train"`` or ``"test"``.
        site_ids: The sites it holds, in write order.
    """

    path: str
    dataset: str
    site_ids: tuple[str, ...]


def _dataset_random_states(seed: int) -> dict[str, np.random.RandomState]:
    # As rxrx1-utils: one state per data set, drawn whatever data sets are converted, so
    # converting only "test" shuffles it exactly as converting both does.
    rs = np.random.RandomState(seed)
    return {ds: np.random.RandomState(rs.randint(2**32 - 1)) for ds in sorted(DATASETS)}


def select_sites(metadata: pd.DataFrame, options: ConvertOptions) -> pd.DataFrame:
    """The rows a conversion converts (data sets, controls), sorted; checks the columns."""
    missing = [c for c in ("site_id", *_SORT, "well_type") if c not in metadata.columns]
    if missing:
        raise MetadataError(
            f"metadata lacks the columns {missing}; pass the table rxdata.read_metadata returns"
        )
    df = metadata[metadata["dataset"].astype(str).isin(options.datasets)]
    if options.experiments is not None:
        canonical = df["experiment"].astype(str).map(normalize_experiment)
        absent = sorted(set(options.experiments) - set(canonical))
        if absent:
            raise MetadataError(
                f"{option_text('experiments', options.experiments)}: {absent} not in the "
                f"metadata's {list(options.datasets)} sites; it has "
                f"{sorted(set(canonical))}"
            )
        df = df[canonical.isin(options.experiments).to_numpy()]
    if not options.include_controls:
        df = df[df["well_type"].astype(str) == "treatment"]
    dup = df["site_id"][df["site_id"].duplicated()]
    if len(dup):
        raise MetadataError(
            f"metadata has duplicate site_id {dup.iloc[0]!r}; each site must appear once"
        )
    order = df["dataset"].astype(str).map({d: i for i, d in enumerate(DATASETS)})
    df = df.assign(_ds_order=order).sort_values(
        ["_ds_order", *_SORT[1:]], kind="stable", key=_sort_key
    )
    result: pd.DataFrame = df.drop(columns="_ds_order").reset_index(drop=True)
    return result


def site_rows(sites: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each site's row as plain Python values (missing: ``None``), by site id.

    These rows are what a shard's records are made of, and what identifies its content.

    Example:
        >>> md = pd.DataFrame({"site_id": ["E-1_1_B02_1"], "sirna_id": [np.nan]})
        >>> site_rows(md)
        {'E-1_1_B02_1': {'site_id': 'E-1_1_B02_1', 'sirna_id': None}}
    """
    out: dict[str, dict[str, Any]] = {}
    for rec in sites.to_dict(orient="records"):
        row = {
            str(k): (None if pd.isna(v) else v.item() if isinstance(v, np.generic) else v)
            for k, v in rec.items()
        }
        out[str(row["site_id"])] = row
    return out


def _sort_key(col: pd.Series) -> pd.Series:
    # Categories sort in category order; the plan must depend on the values only.
    return col.astype(str) if isinstance(col.dtype, pd.CategoricalDtype) else col


def plan_shards(metadata: pd.DataFrame, options: ConvertOptions | None = None) -> list[ShardSpec]:
    """Group the selected sites into shards; a pure function of its arguments.

    * ``random``: each data set's sites, sorted then shuffled with ``seed``, cut into
      shards of ``sites_per_shard`` (``random-{seed}/{dataset}/{n:03d}.tfrecord``).
    * ``by_exp_plate_site``: one shard per (experiment, plate, site), shuffled
      (``by_exp_plate_site-{seed}/{experiment}_p{plate}_s{site}.tfrecord``).
    * ``by_experiment``: one shard per experiment, shuffled
      (``by_experiment-{seed}/{dataset}/{experiment}.tfrecord``).

    Args:
        metadata: The site table of :func:`rxdata.read_metadata`.
        options: Strategy, seed, data sets and controls to use.

    Returns:
        The shards, train before test, in a fixed order.

    Example:
        >>> import pandas as pd
        >>> md = pd.DataFrame({"site_id": ["E-1_1_B02_1", "E-1_1_B02_2", "E-1_1_B03_1"],
        ...     "dataset": "train", "experiment": "E-1", "plate": 1,
        ...     "well": ["B02", "B02", "B03"], "site": [1, 2, 1], "well_type": "treatment"})
        >>> [(s.path, len(s.site_ids)) for s in plan_shards(md, ConvertOptions(sites_per_shard=2))]
        [('random-42/train/001.tfrecord', 2), ('random-42/train/002.tfrecord', 1)]
    """
    opts = options or ConvertOptions()
    df = select_sites(metadata, opts)
    states = _dataset_random_states(opts.seed)
    shards: list[ShardSpec] = []
    for dataset in opts.datasets:
        part = df[df["dataset"].astype(str) == dataset]
        if part.empty:
            continue
        rs = states[dataset]
        ids = part["site_id"].astype(str).to_numpy()
        if opts.strategy == "random":
            ids = ids[rs.permutation(len(ids))]
            n = -(-len(ids) // opts.sites_per_shard)
            width = max(3, len(str(n)))
            for i in range(n):
                chunk = ids[i * opts.sites_per_shard : (i + 1) * opts.sites_per_shard]
                shards.append(
                    ShardSpec(
                        f"random-{opts.seed}/{dataset}/{i + 1:0{width}d}.tfrecord",
                        dataset,
                        tuple(str(s) for s in chunk),
                    )
                )
            continue
        keys = (
            ["experiment", "plate", "site"]
            if opts.strategy == "by_exp_plate_site"
            else ["experiment"]
        )
        groups = part.assign(**{k: part[k].astype(str) for k in keys if k == "experiment"})
        for key, grp in groups.groupby(keys, sort=True, observed=True):
            key_t = key if isinstance(key, tuple) else (key,)
            gids = grp["site_id"].astype(str).to_numpy()
            gids = gids[rs.permutation(len(gids))]
            if opts.strategy == "by_exp_plate_site":
                exp, plate, site = key_t
                path = f"by_exp_plate_site-{opts.seed}/{exp}_p{int(plate)}_s{int(site)}.tfrecord"
            else:
                path = f"by_experiment-{opts.seed}/{dataset}/{key_t[0]}.tfrecord"
            shards.append(ShardSpec(path, dataset, tuple(str(s) for s in gids)))
    paths = [s.path for s in shards]
    if len(set(paths)) != len(paths):
        clash = next(p for p in paths if paths.count(p) > 1)
        raise MetadataError(
            f"two groups of sites would share the shard {clash}: an experiment appears in "
            "both train and test; use strategy='random' or 'by_experiment'"
        )
    return shards


def plan_json(plan: Sequence[ShardSpec]) -> list[dict[str, Any]]:
    """The plan as JSON (recorded in an incomplete manifest)."""
    return [{"path": s.path, "dataset": s.dataset, "site_ids": list(s.site_ids)} for s in plan]


def plan_digest(plan: Sequence[ShardSpec]) -> str:
    """SHA-256 of the plan: a resumed run must have the same plan."""
    return hashlib.sha256(json.dumps(plan_json(plan), sort_keys=True).encode()).hexdigest()


def load_metadata(
    metadata: pd.DataFrame | str | os.PathLike[str] | None, images_root: str
) -> pd.DataFrame:
    """The metadata table: ``metadata`` itself, read from its path, or found beside the images."""
    if isinstance(metadata, pd.DataFrame):
        return metadata
    from rxdata.metadata import find_metadata, read_metadata

    path = find_metadata(images_root) if metadata is None else os.fspath(metadata)
    return read_metadata(path)


def sites_with_images(
    sites: pd.DataFrame, data: DataRoot
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
    """Which selected sites have at least one channel image: one listing per plate folder.

    Found before any shard is planned, so that a metadata table naming sites whose images
    are elsewhere (the real sample: metadata for every well, images for a few) costs one
    directory listing per plate, not a planned, read and reported shard per site.

    Args:
        sites: Rows of :func:`select_sites` (``dataset``, ``experiment``, ``plate``,
            ``well``, ``site``).
        data: The images' root (:func:`rxdata.roots.find_root`).

    Returns:
        One boolean per row, True when a ``{well}_s{site}_w*.png`` file is in its plate
        folder; and each row's plate folder (the one listed).

    Example:
        >>> import os, tempfile
        >>> from rxdata.roots import find_root
        >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/train/E-1/Plate1")
        >>> open(f"{root}/train/E-1/Plate1/B02_s1_w3.png", "wb").close()
        >>> md = pd.DataFrame({"dataset": "train", "experiment": "E-1", "plate": 1,
        ...     "well": ["B02", "B02", "B03"], "site": [1, 2, 1]})
        >>> has, folders = sites_with_images(md, find_root(root))
        >>> has.tolist(), folders[2].endswith("Plate1")
        ([True, False, False], True)
    """
    has = np.zeros(len(sites), dtype=bool)
    folders = np.full(len(sites), "", dtype=object)
    if sites.empty:
        return has, folders
    keys = ["dataset", "experiment", "plate"]
    frame = sites[[*keys, "well", "site"]].reset_index(drop=True)
    frame = frame.astype(dict.fromkeys(keys[:2], str))
    stem = frame["well"].astype(str) + "_s" + frame["site"].astype(int).astype(str)
    prefix = stem.to_numpy(dtype=object)  # plain str: set lookups, no Arrow round trips
    for (dataset, experiment, plate), group in frame.groupby(keys, sort=False, observed=True):
        first = group.iloc[0]
        try:
            folder = _io.dirname(
                data.path(
                    dataset if data.layout == "kaggle" else None,
                    experiment,
                    int(plate),
                    str(first["well"]),
                    int(first["site"]),
                    1,
                )
            )
        except (MetadataError, ParseError):  # no such experiment folder: no images there
            continue
        idx = group.index.to_numpy()
        folders[idx] = folder
        try:
            names = _io.listdir(folder)
        except OSError:  # no such plate folder (or unreadable): no images there
            continue
        stems = {n.rsplit("_w", 1)[0] for n in names if n.endswith(".png")}
        has[idx] = [p in stems for p in prefix[idx]]
    return has, folders

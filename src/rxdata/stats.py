"""Pixel statistics in Kaggle's ``pixel_stats.csv`` format, and their exact aggregation.

Contract:

* :func:`compute_pixel_stats` reads every channel image under a data root (either layout,
  local or ``gs://``) once, in parallel worker processes with a progress bar, and returns
  one row per site and channel with exactly the columns of Kaggle's ``pixel_stats.csv``:
  ``id_code, experiment, plate, well, site, channel, mean, std, median, min, max``
  (``std`` is the population standard deviation, ``median`` as ``numpy.median``). The
  figures come from each image's exact 256-bin histogram.
* :class:`Moments` are mergeable statistics ``(count, mean, M2)`` per channel; merging two
  (Chan et al.'s parallel update) equals computing on the union of their pixels.
* :func:`aggregate_stats` pools a ``pixel_stats`` table to ``global``, ``cell_type``,
  ``experiment``, ``plate`` or ``well`` level, optionally from control wells only
  (``controls="negative"`` or ``"all"``): exact pooled mean and population std, with each
  site weighted by its pixel count.

Nothing here imports TensorFlow.

Example:
    >>> import numpy as np
    >>> a = Moments.of(np.array([[1.0], [2.0]]))
    >>> b = Moments.of(np.array([[3.0], [6.0]]))
    >>> m = a.merge(b)
    >>> m.count.tolist(), m.mean.tolist(), m.var.tolist()
    ([4], [3.0], [3.5])
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from rxdata import _io
from rxdata._parallel import map_tasks
from rxdata.errors import ImageDecodeError, ImageNotFoundError, OptionsError, StatsError
from rxdata.metadata import PIXEL_STATS_COLUMNS
from rxdata.naming import CHANNELS, image_path
from rxdata.roots import find_root

__all__ = [
    "LEVELS",
    "Moments",
    "aggregate_stats",
    "compute_pixel_stats",
    "image_stats",
]

log = logging.getLogger(__name__)


LEVELS: dict[str, tuple[str, ...]] = {
    "global": (),
    "cell_type": ("cell_type",),
    "experiment": ("experiment",),
    "plate": ("experiment", "plate"),
    "well": ("experiment", "plate", "well"),
}
"""Grouping levels of :func:`aggregate_stats` and the columns that define each."""

DEFAULT_PIXELS_PER_SITE = 512 * 512
"""Pixels in one RxRx1 channel image; the weight of a site when a table has no ``count``."""

_CONTROL_TYPES = {
    "negative": ("negative_control",),
    "all": ("negative_control", "positive_control"),
}


# --- mergeable moments ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Moments:
    """Exact mergeable per-channel statistics: pixel count, mean and ``M2``.

    ``M2`` is the sum of squared deviations from the mean, so the population variance is
    ``M2 / count``. Merging uses the parallel update of Chan, Golub and LeVeque (1979),
    which is exact in real arithmetic and numerically stable in floating point.

    Attributes:
        count: Pixels per channel (``int64``, shape ``(C,)``).
        mean: Mean per channel (``float64``).
        m2: Sum of squared deviations per channel (``float64``).

    Example:
        >>> import numpy as np
        >>> x = np.arange(12, dtype=np.uint8).reshape(2, 3, 2)
        >>> m = Moments.of(x)
        >>> m.mean.tolist(), np.allclose(m.std, x.reshape(-1, 2).std(axis=0))
        ([5.0, 6.0], True)
    """

    count: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    m2: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        count = np.asarray(self.count, dtype=np.int64).reshape(-1)
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        m2 = np.asarray(self.m2, dtype=np.float64).reshape(-1)
        if not (count.shape == mean.shape == m2.shape):
            raise StatsError(
                f"count, mean and m2 need one value per channel; got shapes {count.shape}, "
                f"{mean.shape}, {m2.shape}"
            )
        if np.any(count < 0) or np.any(m2 < 0):
            raise StatsError("count and m2 must be >= 0")
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "m2", m2)

    @classmethod
    def of(cls, pixels: npt.ArrayLike) -> Moments:
        """Moments of an array ``(..., C)``: every axis but the last is pooled."""
        x = np.asarray(pixels)
        if x.ndim < 1:
            raise StatsError("pixels must have a channel axis")
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        n = flat.shape[0]
        mean = flat.mean(axis=0) if n else np.zeros(flat.shape[1])
        m2 = ((flat - mean) ** 2).sum(axis=0)
        return cls(np.full(flat.shape[1], n, np.int64), mean, m2)

    @classmethod
    def from_histogram(cls, hist: npt.ArrayLike) -> Moments:
        """Moments from value histograms ``(C, V)``: ``hist[c, v]`` pixels equal ``v``."""
        h = np.asarray(hist, dtype=np.int64)
        if h.ndim != 2:
            raise StatsError(f"histograms must have shape (C, V), got {h.shape}")
        values = np.arange(h.shape[1], dtype=np.float64)
        count = h.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, (h * values).sum(axis=1) / np.maximum(count, 1), 0.0)
        m2 = (h * (values[None, :] - mean[:, None]) ** 2).sum(axis=1)
        return cls(count, mean, m2)

    def merge(self, other: Moments) -> Moments:
        """Pool two sets of moments (same channels) as if computed on the union."""
        if self.count.shape != other.count.shape:
            raise StatsError(
                f"cannot merge moments of {self.count.size} and {other.count.size} channels"
            )
        n = self.count + other.count
        safe = np.maximum(n, 1)
        delta = other.mean - self.mean
        mean = np.where(n > 0, self.mean + delta * (other.count / safe), 0.0)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / safe)
        return Moments(n, mean, m2)

    __add__ = merge

    @property
    def var(self) -> npt.NDArray[np.float64]:
        """Population variance per channel (``nan`` where ``count == 0``)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out: npt.NDArray[np.float64] = np.where(
                self.count > 0, self.m2 / np.maximum(self.count, 1), np.nan
            )
        return out

    @property
    def std(self) -> npt.NDArray[np.float64]:
        """Population standard deviation per channel."""
        out: npt.NDArray[np.float64] = np.sqrt(self.var)
        return out


# --- per-image statistics ------------------------------------------------------------------


def image_stats(image: npt.ArrayLike) -> tuple[float, float, float, int, int]:
    """``(mean, std, median, min, max)`` of one ``uint8`` image, from its histogram.

    ``std`` is the population standard deviation and ``median`` equals
    ``numpy.median`` (the average of the two middle values for an even pixel count).

    Example:
        >>> import numpy as np
        >>> image_stats(np.array([[0, 1], [3, 4]], np.uint8))
        (2.0, 1.5811388300841898, 2.0, 0, 4)
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.size == 0:
        raise StatsError(f"expected a non-empty uint8 image, got {arr.dtype} {arr.shape}")
    hist = np.bincount(arr.reshape(-1), minlength=256)
    m = Moments.from_histogram(hist[None, :])
    n = arr.size
    cum = np.cumsum(hist)
    lo = int(np.searchsorted(cum, (n - 1) // 2, side="right"))  # value at rank (n-1)//2
    hi = int(np.searchsorted(cum, n // 2, side="right"))  # value at rank n//2
    nz = np.flatnonzero(hist)
    return float(m.mean[0]), float(m.std[0]), (lo + hi) / 2, int(nz[0]), int(nz[-1])


def _stats_of_file(path: str) -> tuple[float, float, float, int, int] | str:
    """Worker: statistics of one file, or the error message (so a pool never dies)."""
    from rxdata.images import read_png

    try:
        return image_stats(read_png(path))
    except (ImageNotFoundError, ImageDecodeError) as err:
        return f"{type(err).__name__}: {err}"


def _tasks(root: str, metadata: pd.DataFrame | None) -> pd.DataFrame:
    """One row per channel image to read: the pixel_stats key columns plus ``path``."""
    from rxdata.metadata import scan_images

    data = find_root(root)  # the one layout rule (also for an images/ folder as root)
    if metadata is None:
        sites = scan_images(root).sites
        channels_of = sites["channels"]
    else:
        missing = {"dataset", "experiment", "plate", "well", "site"} - set(metadata.columns)
        if missing:
            raise StatsError(f"metadata lacks columns {sorted(missing)}")
        sites = metadata
        channels_of = pd.Series([CHANNELS] * len(sites), index=sites.index, dtype=object)
    # experiment folders as spelled on disk (HUVEC-1 vs HUVEC-01), looked up once each
    on_disk: dict[tuple[str | None, str], tuple[str | None, str]] = {}
    rows: list[tuple[Any, ...]] = []
    for ds, exp, plate, well, site, chans in zip(
        sites["dataset"],
        sites["experiment"],
        sites["plate"],
        sites["well"],
        sites["site"],
        channels_of,
        strict=True,
    ):
        dataset = None if pd.isna(ds) else str(ds)
        if (dataset, str(exp)) not in on_disk:
            on_disk[dataset, str(exp)] = data.locate(dataset, str(exp))
        folder_ds, folder_exp = on_disk[dataset, str(exp)]
        for c in chans:
            rel = image_path(
                folder_ds, folder_exp, int(plate), str(well), int(site), int(c), data.layout
            )
            rows.append(
                (
                    f"{exp}_{int(plate)}_{well}",
                    str(exp),
                    int(plate),
                    str(well),
                    int(site),
                    int(c),
                    data.join(rel),
                )
            )
    table: pd.DataFrame = pd.DataFrame(rows, columns=[*PIXEL_STATS_COLUMNS[:6], "path"])
    return table


def _map(
    paths: Sequence[str], workers: int, progress: bool
) -> Iterator[tuple[float, float, float, int, int] | str]:
    # Worker processes, progress bar or log lines, clean interrupts: rxdata._parallel.
    return map_tasks(
        _stats_of_file,
        paths,
        workers=workers,
        progress=None if progress else False,
        desc="pixel stats",
        unit="img",
        chunksize=32,
        logger=log,
    )


def compute_pixel_stats(
    root: str | os.PathLike[str],
    metadata: pd.DataFrame | None = None,
    *,
    out_csv: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    on_error: Literal["raise", "skip", "warn"] = "raise",
) -> pd.DataFrame:
    """Per-site, per-channel pixel statistics in Kaggle's ``pixel_stats.csv`` format.

    Args:
        root: Data root in either layout (local or ``gs://``).
        metadata: The metadata table (:func:`rxdata.read_metadata`): its sites are read,
            all six channels each. ``None``: every channel image found under ``root``
            (:func:`rxdata.metadata.scan_images`), so an incomplete site gives only its channels.
        out_csv: Also write the table here (atomically), in the ``pixel_stats.csv`` format.
        workers: Worker processes; default ``os.cpu_count()``; ``0`` or ``1`` reads in
            this process.
        progress: Show a progress bar (on a terminal) or periodic log lines.
        on_error: A missing or corrupt image: ``"raise"`` :class:`StatsError` naming it,
            ``"skip"`` its row silently, or ``"warn"`` and skip.

    Returns:
        Columns :data:`PIXEL_STATS_COLUMNS`, one row per image, in metadata order then
        channel order.

    Example:
        >>> import os, numpy as np
        >>> from PIL import Image
        >>> os.makedirs("data/train/U2OS-01/Plate1")
        >>> Image.fromarray(np.array([[0, 1], [3, 4]], np.uint8)).save(
        ...     "data/train/U2OS-01/Plate1/B02_s1_w1.png")
        >>> ps = compute_pixel_stats("data", workers=0, progress=False)
        >>> ps.to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
        [{'id_code': 'U2OS-01_1_B02', 'experiment': 'U2OS-01', 'plate': 1, 'well': 'B02',
          'site': 1, 'channel': 1, 'mean': 2.0, 'std': 1.5811388300841898, 'median': 2.0,
          'min': 0, 'max': 4}]
    """
    if on_error not in ("raise", "skip", "warn"):
        raise OptionsError(f"on_error={on_error!r} is not one of 'raise', 'skip', 'warn'")
    if workers is not None and (isinstance(workers, bool) or workers < 0):
        raise OptionsError(f"workers={workers!r} must be None or an integer >= 0")
    root_s = os.fspath(root)
    tasks = _tasks(root_s, metadata)
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    n_workers = min(n_workers, max(1, len(tasks) // 64))  # tiny jobs: no pool start-up
    values: list[tuple[float, float, float, int, int] | None] = []
    for path, result in zip(
        tasks["path"], _map(list(tasks["path"]), n_workers, progress), strict=True
    ):
        if isinstance(result, str):
            if on_error == "raise":
                raise StatsError(f"pixel statistics of {path} failed: {result}")
            if on_error == "warn":
                warnings.warn(f"skipping {path}: {result}", RuntimeWarning, stacklevel=2)
            values.append(None)
        else:
            values.append(result)
    keep = np.array([v is not None for v in values], dtype=bool)
    out: pd.DataFrame = tasks.loc[keep, list(PIXEL_STATS_COLUMNS[:6])].reset_index(drop=True)
    figures = np.array([v for v in values if v is not None], dtype=np.float64).reshape(-1, 5)
    for i, col in enumerate(PIXEL_STATS_COLUMNS[6:]):
        out[col] = figures[:, i]
    out["min"] = out["min"].astype(np.int64)
    out["max"] = out["max"].astype(np.int64)
    if out_csv is not None:
        _io.write_bytes_atomic(out_csv, out.to_csv(index=False).encode("utf-8"))
    return out


# --- aggregation ---------------------------------------------------------------------------


def aggregate_stats(
    pixel_stats: pd.DataFrame,
    by: str | Sequence[str] = "global",
    *,
    metadata: pd.DataFrame | None = None,
    controls: Literal["negative", "all"] | None = None,
    pixels_per_site: int = DEFAULT_PIXELS_PER_SITE,
) -> pd.DataFrame:
    """Pool per-site statistics to a grouping level, exactly.

    Each row of ``pixel_stats`` stands for one image of ``count`` pixels (the ``count``
    column when present, else ``pixels_per_site``) with a mean and a population std; the
    pooled figures are those of the union of the pixels (merge of :class:`Moments`).

    Args:
        pixel_stats: Columns ``experiment, plate, well, channel, mean, std`` at least
            (``id_code`` too when ``metadata`` is used).
        by: A level of :data:`LEVELS` or a list of column names.
        metadata: The metadata table; supplies ``well_type`` (for ``controls``) and
            ``cell_type`` when ``pixel_stats`` lacks them (joined on ``id_code``).
        controls: ``None`` (all wells), ``"negative"`` (negative controls only) or
            ``"all"`` (negative and positive controls).
        pixels_per_site: Pixels per image when there is no ``count`` column.

    Returns:
        One row per group and channel: the group columns, ``channel``, ``n_images``,
        ``count``, ``mean``, ``std``, ``m2``; sorted by group then channel.

    Raises:
        StatsError: Missing columns, unknown level, or no rows left after filtering.

    Example:
        >>> import pandas as pd
        >>> ps = pd.DataFrame({"experiment": ["E-1", "E-1"], "plate": [1, 1],
        ...     "well": ["B02", "B03"], "channel": [1, 1], "mean": [1.0, 3.0],
        ...     "std": [0.0, 0.0]})
        >>> row = aggregate_stats(ps, "plate", pixels_per_site=4).iloc[0]
        >>> int(row["count"]), float(row["mean"]), float(row["std"])
        (8, 2.0, 1.0)
    """
    group_cols = _group_columns(by)
    if controls not in (None, "negative", "all"):
        raise OptionsError(f"controls={controls!r} is not None, 'negative' or 'all'")
    df = _selected_images(pixel_stats, group_cols, metadata, controls)
    return _pooled(df, group_cols, pixels_per_site)


def _group_columns(by: str | Sequence[str]) -> list[str]:
    """The columns of a level of :data:`LEVELS` (or the list given)."""
    if not isinstance(by, str):
        return list(by)
    if by not in LEVELS:
        raise StatsError(f"by={by!r} is not one of {list(LEVELS)} (or a list of columns)")
    return list(LEVELS[by])


def _selected_images(
    pixel_stats: pd.DataFrame,
    group_cols: list[str],
    metadata: pd.DataFrame | None,
    controls: Literal["negative", "all"] | None,
) -> pd.DataFrame:
    """The rows to pool, with the columns grouping and ``controls`` need (from metadata)."""
    df = pixel_stats
    needs = {"channel", "mean", "std", *(c for c in group_cols if c != "cell_type")}
    missing = needs - set(df.columns)
    if missing:
        raise StatsError(f"pixel statistics lack columns {sorted(missing)}")
    extra = []
    if controls is not None and "well_type" not in df.columns:
        extra.append("well_type")
    if "cell_type" in group_cols and "cell_type" not in df.columns:
        if metadata is None:
            df = df.assign(cell_type=df["experiment"].astype(str).str.split("-").str[0])
        else:
            extra.append("cell_type")
    if extra:
        df = _join_wells(df, metadata, extra, controls)
    if controls is not None:
        df = df[df["well_type"].astype(str).isin(_CONTROL_TYPES[controls])]
        if df.empty:
            raise StatsError(f"no {controls} control wells in the pixel statistics")
    if df.empty:
        raise StatsError("no pixel statistics to aggregate")
    return df


def _join_wells(
    df: pd.DataFrame,
    metadata: pd.DataFrame | None,
    extra: list[str],
    controls: Literal["negative", "all"] | None,
) -> pd.DataFrame:
    """``df`` with the wells' ``extra`` columns from the metadata, joined on ``id_code``."""
    if metadata is None:
        raise StatsError(
            f"controls={controls!r} needs the wells' well_type: pass metadata= (the "
            "metadata table) or a pixel_stats table with a well_type column"
        )
    if "id_code" not in df.columns or "id_code" not in metadata.columns:
        raise StatsError("joining metadata needs an id_code column in both tables")
    wells = metadata[["id_code", *extra]].drop_duplicates("id_code")
    wells = wells.assign(id_code=wells["id_code"].astype(str))
    df = df.assign(id_code=df["id_code"].astype(str)).merge(wells, on="id_code", how="left")
    if df[extra[0]].isna().any():
        bad = df.loc[df[extra[0]].isna(), "id_code"].iloc[0]
        raise StatsError(f"well {bad!r} of the pixel statistics is not in the metadata")
    return df


def _pooled(df: pd.DataFrame, group_cols: list[str], pixels_per_site: int) -> pd.DataFrame:
    """Merge each group's images' moments into one row per group and channel."""
    n = (
        df["count"].to_numpy(dtype=np.float64)
        if "count" in df.columns
        else np.full(len(df), float(pixels_per_site))
    )
    mean = df["mean"].to_numpy(dtype=np.float64)
    std = df["std"].to_numpy(dtype=np.float64)
    keys = [df[c].astype(str) if c == "cell_type" else df[c] for c in group_cols]
    work = pd.DataFrame({f"k{i}": k.to_numpy() for i, k in enumerate(keys)})
    work["channel"] = df["channel"].to_numpy(dtype=np.int64)
    work["n"], work["nm"], work["ss"] = n, n * mean, n * std**2
    gcols = [*(f"k{i}" for i in range(len(group_cols))), "channel"]
    grouped = work.groupby(gcols, sort=True, observed=True)
    # Pooled M2 = sum of within-image M2 + sum n_i (mean_i - pooled mean)^2: the two-pass
    # form of Chan et al.'s merge, exact for any number of images at once.
    pooled = grouped["nm"].transform("sum") / grouped["n"].transform("sum")
    work["dev"] = work["ss"] + work["n"] * (mean - pooled.to_numpy()) ** 2
    out = grouped[["n", "nm", "dev"]].sum()
    out["n_images"] = grouped.size()
    out = out.reset_index().rename(columns={f"k{i}": c for i, c in enumerate(group_cols)})
    total = out["n"].to_numpy(dtype=np.float64)
    result = out[[*group_cols, "channel"]].copy()
    result["n_images"] = out["n_images"].to_numpy(dtype=np.int64)
    result["count"] = total.round().astype(np.int64)
    result["mean"] = out["nm"].to_numpy(dtype=np.float64) / total
    result["m2"] = out["dev"].to_numpy(dtype=np.float64)
    result["std"] = np.sqrt(result["m2"].to_numpy() / total)
    final: pd.DataFrame = result[[*group_cols, "channel", "n_images", "count", "mean", "std", "m2"]]
    return final

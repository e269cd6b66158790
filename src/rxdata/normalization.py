"""Per-channel normalization statistics and their application, in numpy.

Contract:

* :class:`ChannelStats` holds a mean and a (population) standard deviation per channel,
  for any number of channels, labelled with their channel numbers; :func:`normalize`
  returns ``(image - mean) / std`` as ``float32`` over the last (channel) axis.
* :data:`GLOBAL_PIXEL_STATS` are the published RxRx1 per-channel statistics.
* A :class:`Normalizer` picks the statistics for a site from its ``(experiment, plate)``,
  which is how batch effects are handled: ``global`` (one set for all), ``experiment``,
  ``plate``, ``controls`` (per plate, from its control wells only: the negative controls,
  or all controls) and ``image`` (each image standardized by its own statistics).
  Statistics come from a Kaggle-format ``pixel_stats`` table
  (:meth:`Normalizer.from_pixel_stats`) or a data root (:meth:`Normalizer.fit`), and are
  saved to / loaded from JSON so that training and prediction use the same numbers.
* For TensorFlow, :meth:`Normalizer.table` exports ``(keys, means, stds)`` keyed by
  :meth:`Normalizer.group_key`; :mod:`rxdata.layers` builds in-graph lookups from it
  with the same arithmetic (this module never imports TensorFlow).
* Unseen groups: ``fallback="global"`` uses the normalizer's global statistics,
  ``fallback="raise"`` raises :class:`~rxdata.errors.StatsError`.

Example:
    >>> import numpy as np
    >>> stats = ChannelStats(mean=[10.0, 20.0], std=[2.0, 4.0], channels=(1, 2))
    >>> normalize(np.array([[[12, 12]]], np.uint8), stats).tolist()
    [[[1.0, -2.0]]]
"""

from __future__ import annotations

import json
import math
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from rxdata import _io
from rxdata._text import preview
from rxdata.errors import OptionsError, StatsError
from rxdata.naming import CHANNELS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FALLBACKS",
    "GLOBAL_PIXEL_STATS",
    "MODES",
    "ChannelStats",
    "Normalizer",
    "normalize",
    "standardize_image",
]

MODES = ("global", "experiment", "plate", "controls", "image")
"""Normalization modes, from the coarsest statistics to per-image standardization."""

FALLBACKS = ("global", "raise")
"""What a :class:`Normalizer` does for an experiment/plate it has no statistics for."""

Mode = Literal["global", "experiment", "plate", "controls", "image"]
_FORMAT = "rxdata.normalizer"
_VERSION = 1


def _float_vector(values: Any, name: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.array(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise StatsError(f"{name}={values!r} is not a sequence of numbers") from None
    if not np.all(np.isfinite(arr)):
        raise StatsError(f"{name}={arr.tolist()} has non-finite values")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ChannelStats:
    """Per-channel mean and population standard deviation.

    Attributes:
        mean: One mean per channel (stored as a read-only ``float64`` array).
        std: One standard deviation per channel, all > 0.
        channels: The channel number of each entry; default ``1..C``.

    Example:
        >>> s = ChannelStats([1.0, 2.0, 3.0], [1.0, 1.0, 2.0])
        >>> s.select([3, 1]).mean.tolist(), s.channels
        ([3.0, 1.0], (1, 2, 3))
    """

    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    channels: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        mean = _float_vector(self.mean, "mean")
        std = _float_vector(self.std, "std")
        if mean.shape != std.shape or mean.size == 0:
            raise StatsError(
                f"mean has {mean.size} values and std {std.size}; need the same number (>= 1)"
            )
        if np.any(std <= 0):
            raise StatsError(f"std={std.tolist()} must be > 0 for every channel")
        channels = tuple(self.channels) or tuple(range(1, mean.size + 1))
        if len(channels) != mean.size or len(set(channels)) != len(channels):
            raise StatsError(
                f"channels={channels!r} must name {mean.size} distinct channels (one per mean)"
            )
        for c in channels:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
                raise StatsError(f"channel {c!r} in channels={channels!r} is not a number >= 1")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "channels", tuple(int(c) for c in channels))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChannelStats):
            return NotImplemented
        return (
            self.channels == other.channels
            and np.array_equal(self.mean, other.mean)
            and np.array_equal(self.std, other.std)
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: unhashable, like them

    def __repr__(self) -> str:
        return (
            f"ChannelStats(mean={self.mean.tolist()}, std={self.std.tolist()}, "
            f"channels={self.channels})"
        )

    def __len__(self) -> int:
        return int(self.mean.size)

    def select(self, channels: Sequence[int] | None) -> ChannelStats:
        """The statistics of ``channels`` (channel numbers, in that order); ``None``: all.

        Raises:
            StatsError: A channel is not among :attr:`channels`.
        """
        if channels is None:
            return self
        index = {c: i for i, c in enumerate(self.channels)}
        try:
            rows = [index[int(c)] for c in channels]
        except KeyError as err:
            raise StatsError(
                f"channel {err.args[0]} is not in these statistics (channels {self.channels})"
            ) from None
        return ChannelStats(self.mean[rows], self.std[rows], tuple(int(c) for c in channels))

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """Plain-JSON form: ``{"channels": [...], "mean": [...], "std": [...]}``."""
        return {
            "channels": list(self.channels),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChannelStats:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(d["mean"], d["std"], tuple(d.get("channels", ())))
        except (KeyError, TypeError) as err:
            raise StatsError(f"statistics entry {d!r} needs 'mean' and 'std' lists") from err


GLOBAL_PIXEL_STATS = ChannelStats(
    mean=np.array([6.74696984, 14.74640167, 10.51260864, 10.45369445, 5.49959796, 9.81545561]),
    std=np.array([7.95876312, 12.17305868, 5.86172946, 7.83451711, 4.701167, 5.43130431]),
    channels=CHANNELS,
)
"""The published RxRx1 per-channel pixel mean and standard deviation (channels 1..6)."""


def _check_image(image: npt.ArrayLike, n: int) -> npt.NDArray[Any]:
    arr = np.asarray(image)
    if arr.ndim < 1 or arr.shape[-1] != n:
        raise StatsError(
            f"image of shape {arr.shape} has {arr.shape[-1] if arr.ndim else 0} channels on "
            f"its last axis; the statistics have {n}"
        )
    return arr


def normalize(image: npt.ArrayLike, stats: ChannelStats) -> npt.NDArray[np.float32]:
    """Standardize an image per channel: ``(image - mean) / std`` as ``float32``.

    Args:
        image: Array ``(..., C)`` (any real dtype) with ``C == len(stats)``.
        stats: The statistics of the image's channels, in the image's channel order
            (use :meth:`ChannelStats.select` for a subset).

    Raises:
        StatsError: Channel count mismatch.

    Example:
        >>> import numpy as np
        >>> x = normalize(np.zeros((2, 2, 6), np.uint8), GLOBAL_PIXEL_STATS)
        >>> x.dtype, round(float(x[0, 0, 0]), 4)
        (dtype('float32'), -0.8477)
    """
    arr = _check_image(image, len(stats))
    out: npt.NDArray[np.float32] = (
        (arr.astype(np.float32) - stats.mean.astype(np.float32)) / stats.std.astype(np.float32)
    ).astype(np.float32, copy=False)
    return out


def standardize_image(image: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Per-image, per-channel standardization over the spatial axes (mode ``image``).

    For an ``(H, W, C)`` image (or a batch ``(B, H, W, C)``, each image on its own), each
    channel gets ``(x - mean) / max(std, 1 / sqrt(H * W))``: the floor (as in
    ``tf.image.per_image_standardization``) keeps blank channels finite. Statistics are
    computed in ``float32``, like the TensorFlow twin.

    Example:
        >>> import numpy as np
        >>> standardize_image(np.array([[[0], [2]]], np.uint8))[..., 0].tolist()
        [[-1.0, 1.0]]
    """
    arr = np.asarray(image)
    if arr.ndim < 3:
        raise StatsError(f"expected an image (H, W, C) or a batch, got shape {arr.shape}")
    x = arr.astype(np.float32)
    axes = (-3, -2)
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float32)
    std = np.sqrt(np.square(x - mean).mean(axis=axes, keepdims=True, dtype=np.float32))
    floor = np.float32(1.0 / math.sqrt(arr.shape[-3] * arr.shape[-2]))
    out: npt.NDArray[np.float32] = ((x - mean) / np.maximum(std, floor)).astype(np.float32)
    return out


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Chooses per-channel statistics for a site from its experiment and plate.

    Build one with :meth:`global_`, :meth:`per_image`, :meth:`from_pixel_stats` or
    :meth:`fit`; save it with :meth:`save` next to a model and :meth:`load` it at
    prediction time.

    Attributes:
        mode: One of :data:`MODES`.
        groups: Group key (see :meth:`group_key`) -> statistics; empty for ``global`` and
            ``image``.
        global_stats: Used in ``global`` mode and as the fallback.
        fallback: ``"global"`` (use :attr:`global_stats` for unseen groups) or ``"raise"``.
        controls: For ``controls`` mode, which wells gave the statistics: ``"negative"``
            or ``"all"`` (recorded for provenance).

    Example:
        >>> n = Normalizer(
        ...     "experiment", {"HEPG2-01": ChannelStats([5.0], [2.0])},
        ...     global_stats=ChannelStats([1.0], [1.0]),
        ... )
        >>> n.group_key("HEPG2-01", 3), n.stats_for("HEPG2-01", 3).mean.tolist()
        ('HEPG2-01', [5.0])
        >>> n.stats_for("U2OS-99", 1).mean.tolist()  # unseen: global fallback
        [1.0]
    """

    mode: Mode
    groups: Mapping[str, ChannelStats] = field(default_factory=dict)
    global_stats: ChannelStats = field(default_factory=lambda: GLOBAL_PIXEL_STATS)
    fallback: Literal["global", "raise"] = "global"  # unseen test experiments still work
    controls: Literal["negative", "all"] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OptionsError(f"mode={self.mode!r} is not one of {MODES}")
        if self.fallback not in FALLBACKS:
            raise OptionsError(f"fallback={self.fallback!r} is not one of {FALLBACKS}")
        if self.controls not in (None, "negative", "all"):
            raise OptionsError(f"controls={self.controls!r} is not 'negative', 'all' or None")
        if not isinstance(self.global_stats, ChannelStats):
            raise OptionsError(f"global_stats must be ChannelStats, got {self.global_stats!r}")
        groups = dict(self.groups)
        if self.mode in ("global", "image") and groups:
            raise OptionsError(f"mode={self.mode!r} takes no per-group statistics")
        if self.mode in ("experiment", "plate", "controls") and not groups:
            raise OptionsError(f"mode={self.mode!r} needs per-group statistics, got none")
        for key, stats in groups.items():
            if not isinstance(stats, ChannelStats):
                raise OptionsError(f"groups[{key!r}] must be ChannelStats, got {stats!r}")
            if stats.channels != self.global_stats.channels:
                raise StatsError(
                    f"groups[{key!r}] covers channels {stats.channels}, global statistics "
                    f"cover {self.global_stats.channels}; all must cover the same channels"
                )
            if self.mode != "experiment" and "/" not in key:
                raise StatsError(f"group key {key!r} is not of the form 'experiment/plate'")
        object.__setattr__(self, "groups", types.MappingProxyType(dict(sorted(groups.items()))))

    # --- construction --------------------------------------------------------------------

    @classmethod
    def global_(cls, stats: ChannelStats = GLOBAL_PIXEL_STATS) -> Normalizer:
        """One set of statistics for every site (default: :data:`GLOBAL_PIXEL_STATS`).

        Example:
            >>> Normalizer.global_().stats_for("any", 1) == GLOBAL_PIXEL_STATS
            True
        """
        return cls("global", {}, global_stats=stats)

    @classmethod
    def per_image(cls) -> Normalizer:
        """Per-image standardization (mode ``image``); needs no statistics.

        Example:
            >>> Normalizer.per_image().mode
            'image'
        """
        return cls("image")

    @classmethod
    def from_pixel_stats(
        cls,
        pixel_stats: pd.DataFrame,
        metadata: pd.DataFrame | None = None,
        *,
        mode: Mode = "plate",
        controls: Literal["negative", "all"] = "negative",
        fallback: Literal["global", "raise"] = "global",
    ) -> Normalizer:
        """Build a normalizer from a Kaggle-format ``pixel_stats`` table.

        Group statistics are the exact pooled mean and population std of the sites in the
        group (:func:`rxdata.stats.aggregate_stats`, every site weighted by its pixel
        count); the fallback statistics pool every site in the table.

        Args:
            pixel_stats: Columns ``id_code, experiment, plate, well, site, channel, mean,
                std`` (as in ``pixel_stats.csv`` or :func:`rxdata.compute_pixel_stats`).
            metadata: The metadata table (needs ``id_code`` and ``well_type``); required
                for ``mode="controls"`` unless ``pixel_stats`` has a ``well_type`` column.
            mode: Any of :data:`MODES`.
            controls: ``"negative"`` (negative-control wells only) or ``"all"`` controls.
            fallback: See :attr:`fallback`.

        Raises:
            StatsError: Missing columns, a plate without control wells, bad values.

        Example:
            >>> import pandas as pd
            >>> ps = pd.DataFrame({
            ...     "id_code": ["E-1_1_B02", "E-1_1_B02"], "experiment": ["E-1"] * 2,
            ...     "plate": [1, 1], "well": ["B02"] * 2, "site": [1, 2], "channel": [1, 1],
            ...     "mean": [2.0, 4.0], "std": [1.0, 1.0]})
            >>> n = Normalizer.from_pixel_stats(ps, mode="plate")
            >>> s = n.stats_for("E-1", 1)
            >>> s.mean.tolist(), round(float(s.std[0]) ** 2, 6)
            ([3.0], 2.0)
        """
        from rxdata.stats import aggregate_stats

        if mode not in MODES:
            raise OptionsError(f"mode={mode!r} is not one of {MODES}")
        overall = _frame_to_stats(aggregate_stats(pixel_stats, "global"), [], "all sites")
        if mode in ("global", "image"):
            return cls(mode, {}, global_stats=overall)
        if mode == "experiment":
            agg = aggregate_stats(pixel_stats, "experiment")
            by = ["experiment"]
        elif mode == "plate":
            agg = aggregate_stats(pixel_stats, "plate")
            by = ["experiment", "plate"]
        else:
            agg = aggregate_stats(pixel_stats, "plate", metadata=metadata, controls=controls)
            by = ["experiment", "plate"]
        groups: dict[str, ChannelStats] = {}
        for key_values, part in agg.groupby(by, sort=True, observed=True):
            values = key_values if isinstance(key_values, tuple) else (key_values,)
            exp = str(values[0])
            key = exp if mode == "experiment" else f"{exp}/{int(str(values[1]))}"
            groups[key] = _frame_to_stats(part, [], key, like=overall)
        return cls(
            mode,
            groups,
            global_stats=overall,
            fallback=fallback,
            controls=controls if mode == "controls" else None,
        )

    @classmethod
    def fit(
        cls,
        root: str | os.PathLike[str],
        metadata: pd.DataFrame | None = None,
        *,
        mode: Mode = "plate",
        controls: Literal["negative", "all"] = "negative",
        fallback: Literal["global", "raise"] = "global",
        workers: int | None = None,
        progress: bool = True,
    ) -> Normalizer:
        """Compute pixel statistics over a data root, then :meth:`from_pixel_stats`.

        Reads every image once (:func:`rxdata.compute_pixel_stats`); for repeated use, save
        the result (:meth:`save`) or keep the ``pixel_stats`` CSV.
        """
        from rxdata.stats import compute_pixel_stats

        ps = compute_pixel_stats(root, metadata, workers=workers, progress=progress)
        return cls.from_pixel_stats(ps, metadata, mode=mode, controls=controls, fallback=fallback)

    # --- lookup --------------------------------------------------------------------------

    @property
    def channels(self) -> tuple[int, ...]:
        """Channel numbers the statistics cover."""
        return self.global_stats.channels

    def group_key(self, experiment: str, plate: int) -> str:
        """The key under which a site's statistics are stored.

        ``experiment`` in ``experiment`` mode, ``"{experiment}/{plate}"`` in ``plate`` and
        ``controls`` modes, ``""`` otherwise.

        The TensorFlow lookups in :mod:`rxdata.layers` build the same string in-graph.

        Example:
            >>> Normalizer("plate", {"HUVEC-01/2": GLOBAL_PIXEL_STATS}).group_key("HUVEC-01", 2)
            'HUVEC-01/2'
        """
        if self.mode == "experiment":
            return str(experiment)
        if self.mode in ("plate", "controls"):
            return f"{experiment}/{int(plate)}"
        return ""

    def stats_for(
        self, experiment: str, plate: int, channels: Sequence[int] | None = None
    ) -> ChannelStats:
        """Statistics for a site of ``(experiment, plate)``, for ``channels`` (default all).

        Raises:
            StatsError: Mode ``image`` (statistics come from each image), or an unseen
                group with ``fallback="raise"``.
        """
        if self.mode == "image":
            raise StatsError("mode='image' has no stored statistics; each image uses its own")
        if self.mode == "global":
            return self.global_stats.select(channels)
        key = self.group_key(experiment, plate)
        stats = self.groups.get(key)
        if stats is None:
            if self.fallback == "raise":
                raise StatsError(
                    f"no {self.mode} statistics for {key!r} (experiment {experiment!r}, plate "
                    f"{plate!r}); known: {preview(self.groups, 5)}. Use fallback='global' to "
                    "fall back to the global statistics"
                )
            stats = self.global_stats
        return stats.select(channels)

    def normalize(
        self,
        image: npt.ArrayLike,
        experiment: str | None = None,
        plate: int | None = None,
        channels: Sequence[int] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Normalize one site ``(H, W, C)`` by the statistics of its experiment and plate.

        Args:
            image: The site, channels last, ``C == len(channels or self.channels)``.
            experiment: Needed in ``experiment``, ``plate`` and ``controls`` modes.
            plate: Needed in ``plate`` and ``controls`` modes.
            channels: The image's channel numbers, if not all of :attr:`channels`.

        Example:
            >>> import numpy as np
            >>> Normalizer.per_image().normalize(np.array([[[1], [3]]]))[..., 0].tolist()
            [[-1.0, 1.0]]
        """
        if self.mode == "image":
            arr = _check_image(
                image, len(channels) if channels is not None else np.shape(image)[-1]
            )
            return standardize_image(arr)
        if self.mode != "global" and (
            experiment is None or (plate is None and self.mode != "experiment")
        ):
            raise StatsError(f"mode={self.mode!r} needs the site's experiment and plate")
        stats = self.stats_for(str(experiment), int(plate or 0), channels)
        return normalize(image, stats)

    def table(
        self, channels: Sequence[int] | None = None
    ) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The per-group statistics as arrays, for in-graph lookups.

        Returns:
            ``(keys, means, stds)``: ``keys[i]`` (see :meth:`group_key`) has statistics
            ``means[i]`` and ``stds[i]`` (shape ``(N, C)``, ``C = len(channels)``).
            ``N == 0`` in ``global`` and ``image`` modes.

        Example:
            >>> keys, means, stds = Normalizer.from_pixel_stats(
            ...     __import__("pandas").DataFrame({"id_code": ["A-1_2_B02"],
            ...     "experiment": ["A-1"], "plate": [2], "well": ["B02"], "site": [1],
            ...     "channel": [1], "mean": [3.0], "std": [2.0]})).table()
            >>> keys, means.tolist(), stds.tolist()
            (['A-1/2'], [[3.0]], [[2.0]])
        """
        n = len(self.channels if channels is None else tuple(channels))
        keys = list(self.groups)
        rows = [self.groups[k].select(channels) for k in keys]
        means = np.array([r.mean for r in rows], dtype=np.float64).reshape(len(keys), n)
        stds = np.array([r.std for r in rows], dtype=np.float64).reshape(len(keys), n)
        return keys, means, stds

    # --- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (see :meth:`save`)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "mode": self.mode,
            "fallback": self.fallback,
            "controls": self.controls,
            "global": self.global_stats.to_dict(),
            "groups": {k: v.to_dict() for k, v in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        """Inverse of :meth:`to_dict`; raises :class:`StatsError` on a foreign document."""
        if d.get("format") != _FORMAT or d.get("version") != _VERSION:
            raise StatsError(
                f"not an rxdata normalizer (format {d.get('format')!r}, version "
                f"{d.get('version')!r}; expected {_FORMAT!r} version {_VERSION})"
            )
        return cls(
            d["mode"],
            {k: ChannelStats.from_dict(v) for k, v in d.get("groups", {}).items()},
            global_stats=ChannelStats.from_dict(d["global"]),
            fallback=d.get("fallback", "global"),
            controls=d.get("controls"),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the normalizer as JSON (atomically; local or ``gs://``).

        Floats round-trip exactly (JSON holds their shortest exact decimal form).

        Example:
            >>> n = Normalizer.global_()
            >>> n.save("norm.json")
            >>> Normalizer.load("norm.json") == n
            True
        """
        text = json.dumps(self.to_dict(), indent=1)
        _io.write_bytes_atomic(path, text.encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Normalizer:
        """Read a normalizer written by :meth:`save`.

        Raises:
            StatsError: The file is not a normalizer (names the file).
        """
        try:
            d = json.loads(_io.read_bytes(path).decode("utf-8"))
        except FileNotFoundError:
            raise StatsError(f"normalizer file not found: {os.fspath(path)}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StatsError(f"{os.fspath(path)}: not a JSON normalizer ({err})") from None
        try:
            return cls.from_dict(d)
        except (StatsError, OptionsError, KeyError, TypeError) as err:
            raise StatsError(f"{os.fspath(path)}: {err}") from err

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Normalizer):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _frame_to_stats(
    frame: pd.DataFrame, by: list[str], what: str, like: ChannelStats | None = None
) -> ChannelStats:
    """One group's rows of an :func:`~rxdata.stats.aggregate_stats` frame -> ChannelStats."""
    part = frame.sort_values("channel")
    channels = tuple(int(c) for c in part["channel"])
    if like is not None and channels != like.channels:
        raise StatsError(
            f"{what}: statistics for channels {channels}, expected channels {like.channels} "
            "(every group must have every channel)"
        )
    std = part["std"].to_numpy(dtype=np.float64)
    if np.any(std <= 0):
        raise StatsError(f"{what}: a channel has std 0 (constant images); cannot normalize")
    return ChannelStats(part["mean"].to_numpy(dtype=np.float64), std, channels)

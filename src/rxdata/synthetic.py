"""Synthetic RxRx1: data sets with the real layout, a learnable class signal and batch effects.

Contract: :func:`generate` writes a folder that every rxdata reader treats exactly like
real RxRx1 data, in either layout:

* ``layout="kaggle"``: ``train/`` and ``test/`` image trees plus ``train.csv``,
  ``test.csv``, ``train_controls.csv``, ``test_controls.csv`` and ``sample_submission.csv``
  with the real files' columns and formats (integer labels, or with
  ``label_style="string"`` the re-release's names ``sirna_N`` / ``UNTREATED`` in its own
  numbering, see :func:`rxdata.labels.rerelease_names`);
* ``layout="full"``: ``images/`` plus the full release's ``metadata.csv``.

The plate structure is the real one (derived from the real ``train_controls.csv``): 308
wells (rows B-O x columns 2-23), the untreated negative control in ``B02``, the 30
positive controls shuffled over the fixed wells ``C/F/H/J/M x 03, 07, 11, 15, 19, 22``,
and the 1108 siRNAs split into 4 groups of 277, each plate of an experiment holding one
whole group, in an order that varies by experiment.

Pixels: dark background, bright Gaussian cells with per-channel mean intensities near the
published RxRx1 means (6.7, 14.7, 10.5, 10.5, 5.5, 9.8 at ``batch_effect=0``), sensor
noise so PNG sizes and decode cost resemble the real images. Each siRNA class has its own
per-channel cell-intensity profile and cell size (strength ``signal``) and a
morphology, per-channel cell sizes and cell-to-cell spread (``morphology``), which
survives per-image standardization; each experiment
multiplies every channel by a gain and adds an offset, and each plate adds an
illumination gain and gradient (strength ``batch_effect``). Control wells sit on every
plate, so per-plate control statistics undo the gain and offset. Effects that such
statistics cannot divide out are set from intensity statistics of real control sites
where one was measured (docs/batch-effects-calibration.md), assumed otherwise: a
power-law intensity response per experiment and channel (``nonlinearity``), vignetting
per plate (``vignetting``), edge and row/column effects on the plate
(``well_position``), cell density and focus per experiment (``density``, ``focus``), and
siRNA effects that differ between experiments (``batch_biology``); each is off at 0.

Everything is a deterministic function of ``seed`` and names: a site's pixels depend only
on the seed, its experiment, plate, well and site, never on worker scheduling.

Example:
    >>> import tempfile
    >>> from rxdata.metadata import read_metadata
    >>> root = generate(tempfile.mkdtemp(), SyntheticOptions.tiny(image_size=16))
    >>> md = read_metadata(root)
    >>> md.groupby("dataset", observed=True).experiment.nunique().to_dict()
    {'train': 4, 'test': 2}
"""

from __future__ import annotations

import functools
import io
import logging
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.fft
from PIL import Image

from rxdata import _io
from rxdata._parallel import map_tasks
from rxdata.errors import Option, OptionsError
from rxdata.labels import to_rerelease_names
from rxdata.metadata import FULL_RELEASE_COLUMNS
from rxdata.naming import (
    CELL_TYPES,
    CHANNELS,
    COLUMNS,
    DATASETS,
    NEGATIVE_CONTROL_ID,
    NEGATIVE_CONTROL_WELL,
    NUM_TREATMENTS,
    POSITIVE_CONTROL_IDS,
    POSITIVE_CONTROL_WELLS,
    ROWS,
    image_path,
    normalize_experiment,
)

log = logging.getLogger(__name__)

__all__ = [
    "REAL_EXPERIMENTS",
    "TARGET_CHANNEL_MEANS",
    "TREATMENT_WELLS",
    "SyntheticOptions",
    "generate",
    "plate_layout",
    "sirna_groups",
]

#: The real RxRx1 experiment counts per cell type: (cell type, train, test).
REAL_EXPERIMENTS: tuple[tuple[str, int, int], ...] = (
    ("HEPG2", 7, 4),
    ("HUVEC", 16, 8),
    ("RPE", 7, 4),
    ("U2OS", 3, 2),
)
#: Published RxRx1 per-channel pixel means (rxrx1-utils), the synthetic targets.
TARGET_CHANNEL_MEANS: tuple[float, ...] = (6.74, 14.74, 10.47, 10.52, 5.48, 9.80)
#: The 277 treatment wells of a plate (every used well but the 31 control wells).
TREATMENT_WELLS: tuple[str, ...] = tuple(
    w
    for w in (f"{r}{c:02d}" for r in ROWS for c in COLUMNS)
    if w != NEGATIVE_CONTROL_WELL and w not in POSITIVE_CONTROL_WELLS
)
_GROUP_SIZE = NUM_TREATMENTS // 4  # 277 siRNAs per plate group

# Rendering constants at 512 px (the field of view is fixed; smaller images are scaled).
_CELLS = {"HEPG2": 420, "HUVEC": 260, "RPE": 300, "U2OS": 180}  # cells per site
_SIGMA = (3.2, 7.0, 8.0, 4.5, 6.0, 7.5)  # blob radius per channel: nucleus .. membrane
_BACKGROUND = (1.6, 3.0, 2.5, 2.5, 1.5, 2.2)  # dark background level per channel
_NOISE = 0.5  # additive sensor noise (grey levels)
_SHOT = 0.04  # multiplicative (shot-like) noise inside cells
_PLATE_NOISE = 0.03  # per-well biological variation (log scale)

Layout = Literal["kaggle", "full"]


@functools.cache
def _cell_type_profiles() -> dict[str, np.ndarray]:
    """Fixed per-cell-type channel profiles (cell types look different, as in RxRx1)."""
    z = np.random.default_rng(20190701).standard_normal((len(CELL_TYPES), len(CHANNELS)))
    z -= z.mean(0)  # the four cell types average to the published channel means
    profiles = {ct: np.exp(0.15 * z[i]) for i, ct in enumerate(CELL_TYPES)}
    profiles["OTHER"] = np.ones(len(CHANNELS))
    return profiles


@dataclass(frozen=True)
class SyntheticOptions:
    """What :func:`generate` writes. Defaults mirror the real RxRx1 data set.

    Example:
        >>> SyntheticOptions(image_size=64, sirnas_per_plate=5).image_size
        64
        >>> SyntheticOptions(plates=5)
        Traceback (most recent call last):
        ...
        rxdata.errors.OptionsError: plates=5: expected an int in 1..4
    """

    #: (cell type, train experiments, test experiments); real counts: 33 train, 18 test.
    experiments: tuple[tuple[str, int, int], ...] = REAL_EXPERIMENTS
    #: plates per experiment (1..4); real experiments have 4, one per siRNA group.
    plates: int = 4
    #: treatment wells per plate (1..277); 277 is a whole siRNA group as in the real plates.
    sirnas_per_plate: int = _GROUP_SIZE
    #: positive-control wells per plate (0..30); the real plates carry all 30.
    positive_controls: int = len(POSITIVE_CONTROL_WELLS)
    #: sites per well (1..2); RxRx1 images two sites per well (1 needs ``layout="full"``).
    sites: int = 2
    #: image side in pixels (the height when ``image_width`` is set); 512 is the real size,
    #: 32-64 keeps tests and demos fast.
    image_size: int = 512
    #: image width in pixels (8..4096); None: square images, as RxRx1's. A width other than
    #: ``image_size`` makes images that catch height and width swapped (tests).
    image_width: int | None = None
    #: output layout: the Kaggle competition folders or the full release.
    layout: Layout = "kaggle"
    #: Kaggle label style: competition integers or the re-release's names (``sirna_332`` is
    #: class 0; see :func:`rxdata.labels.rerelease_names`).
    label_style: Literal["integer", "string"] = "integer"
    #: strength of the per-siRNA signal (0 = no signal, 1 = default, learnable at 64 px).
    signal: float = 1.0
    #: master strength of every batch effect below and of the experiment gain/offset and
    #: plate gain/gradient (0 = none; 1 = the defaults, docs/batch-effects-calibration.md).
    batch_effect: float = 1.0
    #: sd of log(gamma) of a power-law intensity response per experiment and channel
    #: (0..2). 0.15: the spread of log(p99/mean) between the 16 real negative-control
    #: sites (0.07-0.25 by channel) divided by the mean log(p99/mean) (~1.1).
    nonlinearity: float = 0.15
    #: mean darkening of the field corners per plate (0..0.9), drawn 0.5x-1.5x per plate;
    #: 0.05: the 16 real control sites' corners are 5% darker than their centres.
    vignetting: float = 0.05
    #: plate-position effects (0..1): edge wells dimmer by this fraction and a row/column
    #: intensity trend of up to this much across the plate, direction drawn per plate.
    well_position: float = 0.05
    #: sd of log cell density per experiment (0..2); density also sets brightness.
    density: float = 0.2
    #: focus: cells blurred up to (1 + focus) x wider, drawn per experiment (0..2).
    focus: float = 0.3
    #: biology that varies by batch (0..5): each siRNA's effect per experiment is its
    #: profile plus this times an experiment-specific one (renormalized), at a strength
    #: multiplied by exp(N(0, this / 2)); the same for its morphology. Not measured; 0.5
    #: keeps every method's held-out accuracy below its held-in one. It lowers held-in and
    #: held-out accuracy together rather than their ratio (docs/batch-effects-calibration.md).
    batch_biology: float = 0.5
    #: strength of each siRNA's morphology (0..5): per channel, a class changes its cells'
    #: size (log sd 0.2 x this) and their cell-to-cell brightness spread (log sd 0.3 for
    #: untreated cells, times exp(N(0, 0.5 x this)) per class, at most 1). Unlike the
    #: intensity profile these survive a gain, an offset and per-image standardization, as
    #: real morphology does. 0 = intensity-only classes. 3: set from WILDS's held-out /
    #: held-in ratio (0.75) on the first benchmark's ``--quick`` held-out probes, where it
    #: put ``global`` at 0.61-0.64 and ``image`` at 0.79-0.85
    #: (docs/batch-effects-calibration.md; not re-chosen on validation experiments).
    morphology: float = 3.0
    #: fraction of sites whose channels 5 and 6 are missing (like the real site-2 sample).
    incomplete_fraction: float = 0.0
    #: zlib level of the PNGs (0-9); 6 is the usual default and gives real-like file sizes,
    #: 1 encodes about 5x faster at 512 px for ~15% larger files.
    png_compression: int = 6
    #: seed of everything random; equal seeds give byte-identical data sets.
    seed: int = 0
    #: worker processes; None uses every CPU (PNG encoding dominates and parallelises).
    workers: int | None = None
    #: progress: None = a bar on a terminal, log lines otherwise; True = bar; False = none.
    progress: bool | None = None

    def __post_init__(self) -> None:
        exp = self.experiments
        if isinstance(exp, Mapping):
            exp = tuple((str(k), *v) for k, v in exp.items())
        try:
            exp = tuple((str(ct), int(tr), int(te)) for ct, tr, te in exp)
        except (TypeError, ValueError):
            raise OptionsError(
                f"experiments={self.experiments!r}: expected (cell_type, n_train, n_test) "
                "triples or a {cell_type: (n_train, n_test)} mapping"
            ) from None
        object.__setattr__(self, "experiments", exp)
        for ct, tr, te in exp:
            if ct not in CELL_TYPES or tr < 0 or te < 0:
                raise OptionsError(
                    f"experiments entry {(ct, tr, te)!r}: expected a cell type in {CELL_TYPES} "
                    "(read_metadata refuses others) and non-negative counts"
                )
        if sum(tr + te for _, tr, te in exp) == 0:
            raise OptionsError(f"experiments={exp!r}: expected at least one experiment")
        if len({ct for ct, _, _ in exp}) != len(exp):
            raise OptionsError(f"experiments={exp!r}: a cell type is listed twice")
        self._int("plates", 1, 4)
        self._int("sirnas_per_plate", 1, _GROUP_SIZE)
        self._int("positive_controls", 0, len(POSITIVE_CONTROL_WELLS))
        self._int("sites", 1, 2)
        self._int("image_size", 8, 4096)
        if self.image_width is not None:
            self._int("image_width", 8, 4096)
        self._int("seed", 0, 2**63 - 1)
        self._int("png_compression", 0, 9)
        if self.workers is not None:
            self._int("workers", 1, 1024)
        if self.layout not in ("kaggle", "full"):
            raise OptionsError(f"layout={self.layout!r}: expected 'kaggle' or 'full'")
        if self.layout == "kaggle" and self.sites != 2:
            given, full = Option("sites", self.sites), Option("layout", "full")
            raise OptionsError(
                f"{given}: the Kaggle layout needs 2 (its CSVs list wells, and every Kaggle "
                f"well has 2 sites); use {full} for 1 site per well",
                options=[given, full],
            )
        if self.label_style not in ("integer", "string"):
            raise OptionsError(f"label_style={self.label_style!r}: expected 'integer' or 'string'")
        for name, hi in (
            ("signal", 10.0),
            ("batch_effect", 10.0),
            ("incomplete_fraction", 1.0),
            ("nonlinearity", 2.0),
            ("vignetting", 0.9),
            ("well_position", 1.0),
            ("density", 2.0),
            ("focus", 2.0),
            ("batch_biology", 5.0),
            ("morphology", 5.0),
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0.0 <= float(value) <= hi
            ):
                given = Option(name, value)
                raise OptionsError(f"{given}: expected a number in 0..{hi}", options=[given])
        if self.progress is not None and not isinstance(self.progress, bool):
            raise OptionsError(f"progress={self.progress!r}: expected True, False or None")

    def _int(self, name: str, lo: int, hi: int) -> None:
        value = getattr(self, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or not lo <= value <= hi
        ):
            given = Option(name, value)
            raise OptionsError(f"{given}: expected an int in {lo}..{hi}", options=[given])

    @classmethod
    def tiny(cls, **overrides: Any) -> SyntheticOptions:
        """A small data set for tests and demos: 4 cell types, 6 experiments, 32 px.

        4 train experiments (one per cell type) and 2 test ones, 4 plates, 4 siRNAs and 2
        positive controls per plate, 2 sites: 6 x 4 x 7 x 2 = 336 sites.

        Example:
            >>> SyntheticOptions.tiny().image_size
            32
        """
        base: dict[str, Any] = {
            "experiments": (("HEPG2", 1, 1), ("HUVEC", 1, 1), ("RPE", 1, 0), ("U2OS", 1, 0)),
            "sirnas_per_plate": 4,
            "positive_controls": 2,
            "image_size": 32,
            "workers": 1,
            "progress": False,
        }
        base.update(overrides)
        return cls(**base)

    @property
    def n_sites(self) -> int:
        """The number of sites written: experiments x plates x wells x sites per well.

        Each plate has one negative control, ``positive_controls`` and ``sirnas_per_plate``
        wells.

        Example:
            >>> SyntheticOptions.tiny().n_sites
            336
        """
        wells = 1 + self.positive_controls + self.sirnas_per_plate
        return len(self.experiment_names) * self.plates * wells * self.sites

    @property
    def experiment_names(self) -> tuple[tuple[str, str], ...]:
        """``(dataset, experiment)`` pairs in the order written (real naming ``HEPG2-01``)."""
        out = []
        for dataset in DATASETS:
            for ct, n_train, n_test in self.experiments:
                first, count = (1, n_train) if dataset == "train" else (n_train + 1, n_test)
                out += [
                    (dataset, normalize_experiment(f"{ct}-{b}"))
                    for b in range(first, first + count)
                ]
        return tuple(out)


# ----------------------------------------------------------------------------- layout
def _rng(seed: int, *names: str | int) -> np.random.Generator:
    """A generator keyed by the seed and names (stable across runs and processes)."""
    key = [zlib.crc32(str(n).encode()) for n in names]
    return np.random.default_rng([seed, *key])


def sirna_groups(seed: int = 0) -> np.ndarray:
    """The 4 plate groups of 277 siRNA ids each (shape ``(4, 277)``), fixed by ``seed``.

    Example:
        >>> g = sirna_groups(0)
        >>> g.shape, sorted(g.ravel().tolist()) == list(range(1108))
        ((4, 277), True)
    """
    return _rng(seed, "groups").permutation(NUM_TREATMENTS).reshape(4, _GROUP_SIZE)


def plate_layout(options: SyntheticOptions, experiment: str, plate: int) -> pd.DataFrame:
    """The wells of one synthetic plate: ``well, sirna_id, well_type`` sorted by well.

    Plate ``p`` of an experiment holds siRNA group ``order[p - 1]`` where ``order`` is a
    permutation of the 4 groups drawn per experiment; with ``sirnas_per_plate < 277``
    the first siRNAs of the group are used (the same ones in every experiment, so classes
    recur across experiments) in a random subset of the treatment wells.

    Example:
        >>> opts = SyntheticOptions(sirnas_per_plate=3, positive_controls=1)
        >>> plate_layout(opts, "HEPG2-01", 1).well_type.tolist().count("treatment")
        3
    """
    groups = sirna_groups(options.seed)[:, : options.sirnas_per_plate]
    order = _rng(options.seed, "order", experiment).permutation(4)
    rng = _rng(options.seed, "plate", experiment, plate)
    sirnas = rng.permutation(groups[order[plate - 1]])
    wells = rng.choice(len(TREATMENT_WELLS), size=len(sirnas), replace=False)
    controls = np.array(POSITIVE_CONTROL_IDS)[: options.positive_controls]
    pos_wells = np.array(POSITIVE_CONTROL_WELLS)[
        np.sort(rng.choice(len(POSITIVE_CONTROL_WELLS), options.positive_controls, False))
    ]
    table = pd.DataFrame(
        {
            "well": [
                NEGATIVE_CONTROL_WELL,
                *pos_wells.tolist(),
                *(TREATMENT_WELLS[i] for i in wells),
            ],
            "sirna_id": [
                NEGATIVE_CONTROL_ID,
                *rng.permutation(controls).tolist(),
                *sirnas.tolist(),
            ],
            "well_type": ["negative_control"]
            + ["positive_control"] * len(pos_wells)
            + ["treatment"] * len(sirnas),
        }
    )
    result: pd.DataFrame = table.sort_values("well").reset_index(drop=True)
    return result


def _site_table(options: SyntheticOptions) -> pd.DataFrame:
    rows = []
    for dataset, experiment in options.experiment_names:
        for plate in range(1, options.plates + 1):
            layout = plate_layout(options, experiment, plate)
            layout.insert(0, "plate", plate)
            layout.insert(0, "experiment", experiment)
            layout.insert(0, "dataset", dataset)
            rows.append(layout)
    wells = pd.concat(rows, ignore_index=True)
    wells["id_code"] = wells["experiment"] + "_" + wells["plate"].astype(str) + "_" + wells["well"]
    return wells


# ----------------------------------------------------------------------------- pixels
@dataclass(frozen=True)
class _SiteTask:
    path_prefix: str  # folder + well name: files are f"{prefix}_s{site}_w{c}.png"
    site: int
    cell_type: str
    sirna_id: int
    gain: tuple[float, ...]  # experiment x plate x well-position channel gain
    offset: tuple[float, ...]
    gradient: tuple[float, float]
    gamma: tuple[float, ...]  # power-law response per channel (experiment)
    vignette: float  # corner darkening (plate)
    density: float  # cell-count multiplier (experiment)
    blur: float  # blob-size multiplier, >= 1 (experiment focus)
    biology: float  # batch_biology (the experiment is in seed_key)
    morphology: float  # strength of the classes' cell size and spread signal
    channels: tuple[int, ...]
    seed_key: tuple[int, int, str, int]  # experiment hash, plate, well, site


@dataclass(frozen=True)
class _ClassLook:
    """How one siRNA class looks in one experiment: per channel."""

    gain: np.ndarray  # cell-intensity multipliers
    size: np.ndarray  # cell-size (blob radius) multipliers
    spread: np.ndarray  # log-sd of the cell-to-cell brightness variation added by the class


def _class_profile(
    seed: int,
    sirna_id: int,
    signal: float,
    experiment: int = 0,
    biology: float = 0.0,
    morphology: float = 0.0,
) -> _ClassLook:
    """The per-channel intensity, cell size and cell-to-cell spread of one siRNA class.

    The intensity profile is the class's own direction (strength ``signal``); with
    ``morphology > 0`` the class also changes the size of its cells and how much their
    brightness varies from cell to cell, per channel: signals that survive a gain, an
    offset and per-image standardization. With ``biology > 0`` both differ by experiment:
    the class's own direction plus ``biology`` times an experiment-specific one
    (renormalized to the same length), at a strength scaled by ``exp(N(0, biology / 2))``.
    """
    n = len(CHANNELS)
    spread = np.full(n, _SPREAD if morphology else 0.0)  # the untreated cells' own variation
    if sirna_id == NEGATIVE_CONTROL_ID:
        return _ClassLook(np.ones(n), np.ones(n), spread)
    strength = 0.6 if sirna_id in POSITIVE_CONTROL_IDS else 0.35
    z = _rng(seed, "class", sirna_id).standard_normal(n + 1)
    shape = _rng(seed, "morphology", sirna_id).standard_normal(2 * n)
    shape_strength = strength
    if biology > 0:
        local = _rng(seed, "biology", experiment, sirna_id).standard_normal(n + 2)
        z = (z + biology * local[:-1]) / np.sqrt(1.0 + biology**2)
        strength *= float(np.exp(biology / 2 * local[-1]))
        local_shape = _rng(seed, "biology-morphology", experiment, sirna_id).standard_normal(
            2 * n + 1
        )
        shape = (shape + biology * local_shape[:-1]) / np.sqrt(1.0 + biology**2)
        shape_strength *= float(np.exp(biology / 2 * local_shape[-1]))
    sd = signal * strength  # log-normal multipliers with mean 1 over the classes
    m = signal * morphology * shape_strength / 0.35  # = morphology for a treatment
    size = np.exp(signal * 0.1 * z[-1] + 0.2 * m * shape[:n])
    return _ClassLook(
        gain=np.exp(sd * z[:-1] - sd**2 / 2),
        size=size,
        spread=np.minimum(_SPREAD * np.exp(0.5 * m * shape[n:]), 1.0) if morphology else spread,
    )


_SPREAD = 0.3  # log-sd of the untreated cells' brightness variation per channel (morphology)


def _render(task: _SiteTask, shape: tuple[int, int], seed: int, signal: float) -> np.ndarray:
    """Render one site as a ``(len(channels), height, width)`` uint8 stack."""
    size, width = shape  # the field of view scales with the height
    rng = _rng(seed, "site", *task.seed_key)
    profiles = _cell_type_profiles()
    base = profiles.get(task.cell_type, profiles["OTHER"])
    look = _class_profile(
        seed, task.sirna_id, signal, task.seed_key[0], task.biology, task.morphology
    )
    well_noise = np.exp(_PLATE_NOISE * _rng(seed, "well", *task.seed_key[:3]).standard_normal(6))
    scale = size / 512
    n_cells = rng.poisson(_CELLS.get(task.cell_type, 250) * task.density)
    # impulses at cell centres (periodic field of view), weighted by per-cell brightness
    pos = rng.integers(0, (size, width), size=(n_cells, 2))
    weight = rng.lognormal(0.0, 0.35, n_cells)
    pixel = pos[:, 0] * width + pos[:, 1]

    def spectrum(weights: np.ndarray) -> np.ndarray:
        impulses = np.bincount(pixel, weights=weights, minlength=size * width)
        result: np.ndarray = scipy.fft.rfft2(impulses.reshape(size, width))
        return result

    # the class's cell-to-cell spread: each channel re-weights the same cells (own stream,
    # so that the other draws keep their values); channels without one share a spectrum
    crng = _rng(seed, "cells", *task.seed_key)
    shared: np.ndarray | None = None
    fy = scipy.fft.fftfreq(size)[:, None] ** 2
    fx = scipy.fft.rfftfreq(width)[None, :] ** 2
    yy = np.linspace(-1.0, 1.0, size)[:, None]
    xx = np.linspace(-1.0, 1.0, width)[None, :]
    illumination = 1.0 + task.gradient[0] * yy + task.gradient[1] * xx
    illumination *= 1.0 - task.vignette * (yy**2 + xx**2) / 2.0  # corners: 1 - vignette
    # The blur keeps the sum of the impulses, so a level of (target - background) * pixels
    # / (expected cells x mean weight) makes the expected channel mean the published one.
    expected = _CELLS.get(task.cell_type, 250) * _CELLS_MEAN_WEIGHT
    out = np.empty((len(task.channels), size, width), dtype=np.uint8)
    for i, channel in enumerate(task.channels):
        c = channel - 1
        sigma = max(0.6, _SIGMA[c] * scale * look.size[c]) * task.blur  # focus: any size
        blur = np.exp(-2.0 * np.pi**2 * sigma**2 * (fy + fx))
        spread = float(look.spread[c])
        if spread > 0:  # mean-1 log-normal factors per cell: the expected mean is kept
            factor = np.exp(spread * crng.standard_normal(n_cells) - spread**2 / 2)
            channel_spectrum = spectrum(weight * factor)
        else:
            shared = spectrum(weight) if shared is None else shared
            channel_spectrum = shared
        cells = scipy.fft.irfft2(channel_spectrum * blur, s=(size, width))
        level = (TARGET_CHANNEL_MEANS[c] - _BACKGROUND[c]) * size * width / expected
        cells *= level * base[c] * look.gain[c] * well_noise[c]
        cells *= 1.0 + _SHOT * rng.standard_normal((size, width))
        img = (cells + _BACKGROUND[c]) * illumination * task.gain[c]
        if task.gamma[c] != 1.0:  # power-law response around the channel's target mean
            ref = TARGET_CHANNEL_MEANS[c]
            img = ref * np.power(np.maximum(img, 0.0) / ref, task.gamma[c])
        img += task.offset[c]
        img += _NOISE * rng.standard_normal((size, width))
        np.clip(np.rint(img), 0, 255, out=img)
        out[i] = img.astype(np.uint8)
    return out


_CELLS_MEAN_WEIGHT = float(np.exp(0.35**2 / 2))  # mean of lognormal(0, 0.35) cell weights


def _encode_png(image: np.ndarray, level: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=level)  # uint8 2-D: mode L
    return buf.getvalue()


def _write_site(
    task: _SiteTask, shape: tuple[int, int], seed: int, signal: float, level: int
) -> None:
    """Render and write one site's channel PNGs (runs in worker processes)."""
    stack = _render(task, shape, seed, signal)
    for image, channel in zip(stack, task.channels, strict=True):
        path = f"{task.path_prefix}_s{task.site}_w{channel}.png"
        with _io.open(path, "wb") as f:
            f.write(_encode_png(image, level))


@dataclass(frozen=True)
class _PlateEffects:
    """The batch effects shared by every site of one plate."""

    gain: np.ndarray  # per channel: experiment gain x plate gain
    offset: tuple[float, ...]
    gradient: tuple[float, float]
    gamma: tuple[float, ...]
    vignette: float
    density: float
    blur: float
    trend: tuple[float, float]  # row and column intensity trend (log scale, edge to edge)

    def well_gain(self, well: str, edge: float) -> tuple[float, ...]:
        """The channel gains of one well: plate gain x edge dimming x row/column trend."""
        row = (ROWS.index(well[0]) / (len(ROWS) - 1)) * 2 - 1  # -1 (B) .. 1 (O)
        col = ((int(well[1:]) - COLUMNS[0]) / (COLUMNS[-1] - COLUMNS[0])) * 2 - 1
        on_edge = abs(row) == 1.0 or abs(col) == 1.0
        factor = np.exp(self.trend[0] * row / 2 + self.trend[1] * col / 2) * (
            1.0 - edge if on_edge else 1.0
        )
        return tuple(float(g) for g in self.gain * factor)


def _batch_params(options: SyntheticOptions, experiment: str, plate: int) -> _PlateEffects:
    be = float(options.batch_effect)
    n = len(CHANNELS)
    erng = _rng(options.seed, "experiment", experiment)
    exp_gain = np.exp(be * 0.3 * erng.standard_normal(n))
    offset = be * erng.uniform(-1.0, 4.0, n)
    # new effects draw from their own streams, so older effects keep their values
    xrng = _rng(options.seed, "experiment-response", experiment)
    gamma = np.exp(be * options.nonlinearity * xrng.standard_normal(n))
    density = float(np.exp(be * options.density * xrng.standard_normal()))
    blur = 1.0 + be * options.focus * float(xrng.uniform())
    prng = _rng(options.seed, "illumination", experiment, plate)
    plate_gain = np.exp(be * 0.1 * prng.standard_normal())
    gradient = be * 0.15 * prng.uniform(-1.0, 1.0, 2)
    qrng = _rng(options.seed, "plate-field", experiment, plate)
    vignette = min(0.95, be * options.vignetting * float(qrng.uniform(0.5, 1.5)))
    trend = be * options.well_position * qrng.uniform(-1.0, 1.0, 2)
    return _PlateEffects(
        gain=exp_gain * plate_gain,
        offset=tuple(float(o) for o in offset),
        gradient=(float(gradient[0]), float(gradient[1])),
        gamma=tuple(float(g) for g in gamma),
        vignette=vignette,
        density=density,
        blur=blur,
        trend=(float(trend[0]), float(trend[1])),
    )


def _tasks(options: SyntheticOptions, root: str, wells: pd.DataFrame) -> list[_SiteTask]:
    tasks: list[_SiteTask] = []
    incomplete = _rng(options.seed, "incomplete")
    params: dict[tuple[str, int], Any] = {}
    records: list[tuple[str, str, int, str, int]] = list(
        zip(
            wells["dataset"].tolist(),
            wells["experiment"].tolist(),
            wells["plate"].astype(int).tolist(),
            wells["well"].tolist(),
            wells["sirna_id"].astype(int).tolist(),
            strict=True,
        )
    )
    for dataset, experiment, plate, well, sirna_id in records:
        key = (experiment, plate)
        if key not in params:
            params[key] = _batch_params(options, experiment, plate)
        effects: _PlateEffects = params[key]
        gain = effects.well_gain(well, min(0.9, options.batch_effect * options.well_position))
        folder = os.path.dirname(image_path(dataset, experiment, plate, well, 1, 1, options.layout))
        for site in range(1, options.sites + 1):
            drop = incomplete.random() < options.incomplete_fraction
            tasks.append(
                _SiteTask(
                    path_prefix=_io.join(root, folder, well),
                    site=site,
                    cell_type=experiment.split("-")[0],
                    sirna_id=sirna_id,
                    gain=gain,
                    offset=effects.offset,
                    gradient=effects.gradient,
                    gamma=effects.gamma,
                    vignette=effects.vignette,
                    density=effects.density,
                    blur=effects.blur,
                    biology=float(options.batch_effect * options.batch_biology),
                    morphology=float(options.morphology),
                    channels=CHANNELS[:4] if drop else CHANNELS,
                    seed_key=(zlib.crc32(experiment.encode()), plate, well, site),
                )
            )
    return tasks


# ----------------------------------------------------------------------------- CSVs
def _label(ids: pd.Series, style: str) -> pd.Series:
    if style == "integer":
        return ids.astype(str)
    # the re-release's own names (class 0 is sirna_332), as rxdata.read_metadata maps them
    names = to_rerelease_names([int(i) for i in ids])
    series: pd.Series = pd.Series(names, index=ids.index, dtype=object)
    return series


def _write_csv(root: str, name: str, frame: pd.DataFrame) -> None:
    _io.write_bytes_atomic(_io.join(root, name), frame.to_csv(index=False).encode())


def _write_kaggle_csvs(root: str, wells: pd.DataFrame, style: str) -> None:
    cols = ["id_code", "experiment", "plate", "well"]
    for dataset in DATASETS:
        part = wells[wells["dataset"] == dataset]
        treat = part[part["well_type"] == "treatment"]
        ctrl = part[part["well_type"] != "treatment"]
        main = treat[cols].copy()
        if dataset == "train":
            main["sirna"] = _label(treat["sirna_id"], style)
        _write_csv(root, f"{dataset}.csv", main)
        controls = ctrl[cols].copy()
        controls["sirna"] = _label(ctrl["sirna_id"], style)
        controls["well_type"] = ctrl["well_type"]
        _write_csv(root, f"{dataset}_controls.csv", controls)
        if dataset == "test":
            # the real sample submission predicts class 911 for every test well, in the
            # release's label space (the re-release's file names it)
            every = pd.Series(911, index=treat.index)
            sub = pd.DataFrame({"id_code": treat["id_code"], "sirna": _label(every, style)})
            _write_csv(root, "sample_submission.csv", sub)


def _write_full_csv(root: str, wells: pd.DataFrame, sites: int) -> None:
    frame = wells.loc[wells.index.repeat(sites)].reset_index(drop=True)
    frame["site"] = np.tile(np.arange(1, sites + 1), len(wells))
    supplier = frame["sirna_id"].map(
        lambda i: "EMPTY" if i == NEGATIVE_CONTROL_ID else f"s{10001 + 37 * int(i)}"
    )
    out = pd.DataFrame(
        {
            "site_id": frame["id_code"] + "_" + frame["site"].astype(str),
            "well_id": frame["id_code"],
            "cell_type": frame["experiment"].str.split("-").str[0],
            "dataset": frame["dataset"],
            "experiment": frame["experiment"],
            "plate": frame["plate"],
            "well": frame["well"],
            "site": frame["site"],
            "well_type": frame["well_type"],
            "sirna": supplier,
            "sirna_id": frame["sirna_id"],
        }
    )
    _write_csv(root, "metadata.csv", out[list(FULL_RELEASE_COLUMNS)])


# ----------------------------------------------------------------------------- generate
def generate(
    root: str | os.PathLike[str], options: SyntheticOptions | None = None, **overrides: Any
) -> Path:
    """Write a synthetic RxRx1 data set under ``root`` and return its path.

    Args:
        root: output folder (created; existing files of the same names are replaced).
        options: what to write; default :class:`SyntheticOptions` (the full real shape).
        **overrides: fields of :class:`SyntheticOptions` replacing those of ``options``.

    Returns:
        ``Path(root)``; read it with :func:`rxdata.read_metadata` and
        :func:`rxdata.metadata.scan_images`.

    Raises:
        OptionsError: an option is out of range.

    Example:
        >>> import tempfile
        >>> from rxdata.metadata import scan_images
        >>> opts = SyntheticOptions.tiny(image_size=8, layout="full", sites=1)
        >>> root = generate(tempfile.mkdtemp(), opts)
        >>> len(scan_images(root).sites)
        168
    """
    opts = options or SyntheticOptions()
    if overrides:
        unknown = set(overrides) - {f.name for f in fields(SyntheticOptions)}
        if unknown:
            raise OptionsError(f"unknown option(s) {sorted(unknown)}")
        opts = replace(opts, **overrides)
    root_s = os.fspath(root)
    wells = _site_table(opts)
    for dataset, experiment in opts.experiment_names:
        for plate in range(1, opts.plates + 1):
            folder = image_path(dataset, experiment, plate, "A01", 1, 1, opts.layout)
            _io.makedirs(_io.join(root_s, os.path.dirname(folder)))
    tasks = _tasks(opts, root_s, wells)
    workers = opts.workers or os.cpu_count() or 1
    write = functools.partial(
        _write_site,
        shape=(opts.image_size, opts.image_width or opts.image_size),
        seed=opts.seed,
        signal=float(opts.signal),
        level=opts.png_compression,
    )
    for _ in map_tasks(
        write,
        tasks,
        workers=1 if len(tasks) < 64 else workers,  # tiny sets: no pool start-up
        progress=opts.progress,
        desc="synth",
        unit="site",
        chunksize=max(1, min(64, len(tasks) // (workers * 4))),
        logger=log,
    ):
        pass
    if opts.layout == "kaggle":
        _write_kaggle_csvs(root_s, wells, opts.label_style)
    else:
        _write_full_csv(root_s, wells, opts.sites)
    return Path(root_s)

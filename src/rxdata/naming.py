"""RxRx1 naming: the one owner of constants, keys, experiment spellings and paths.

Every other rxdata module asks this one; none re-derives a rule. It is pure Python (no
pandas, no TensorFlow) and never touches the disk: classifying a data root on disk
(:func:`rxdata.roots.find_root`, :class:`rxdata.roots.DataRoot`) is :mod:`rxdata.roots`.

Contract:

* A channel image is named ``{dataset}/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png``
  in the Kaggle layout and ``images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png``
  in the full RxRx1 release. :func:`parse_image_path` accepts either, a bare
  ``{experiment}/...`` path, and any prefix (relative, absolute, ``gs://bucket/...``);
  :func:`image_path` is its inverse and the only place a relative path is built.
* A well is named by its Kaggle ``id_code`` ``{experiment}_{plate}_{well}`` and a site by
  its ``site_id`` ``{id_code}_{site}``.
* Experiments are ``{cell_type}-{batch}``. The same experiment may be written
  ``HUVEC-1`` or ``HUVEC-01``. This module is the one place spellings are reconciled:
  keys keep the text as given but compare (and hash) on ``(cell_type, batch)``;
  :func:`normalize_experiment` gives the canonical ``HUVEC-01``; and
  :meth:`rxdata.roots.DataRoot.locate` finds the folder as it is spelled on disk.
* The layouts' names (:data:`LAYOUTS`, :data:`IMAGES_FOLDER`, :data:`METADATA_FILE`,
  :data:`KAGGLE_FILES`) are here; the one rule that classifies a root on disk is
  :func:`rxdata.roots.find_root`.

Example:
    >>> key = parse_image_path("gs://bucket/rxrx1/train/HUVEC-1/Plate2/B03_s1_w4.png")
    >>> (key.experiment, key.cell_type, key.batch, key.plate, key.well, key.channel)
    ('HUVEC-1', 'HUVEC', 1, 2, 'B03', 4)
    >>> key.relative_path
    'train/HUVEC-1/Plate2/B03_s1_w4.png'
    >>> key.site_key == parse_site_id("HUVEC-01_2_B03_1")
    True
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rxdata.errors import ParseError

__all__ = [
    "CELL_TYPES",
    "CHANNELS",
    "COLUMNS",
    "DATASETS",
    "EXPERIMENT_PATTERN",
    "IMAGES_FOLDER",
    "IMAGE_PATH_PATTERN",
    "KAGGLE_FILES",
    "LAYOUTS",
    "METADATA_FILE",
    "NEGATIVE_CONTROL_ID",
    "NEGATIVE_CONTROL_WELL",
    "NUM_CLASSES",
    "NUM_TREATMENTS",
    "PLATES",
    "POSITIVE_CONTROL_IDS",
    "POSITIVE_CONTROL_WELLS",
    "ROWS",
    "SITES",
    "WELL_TYPES",
    "ImageKey",
    "Layout",
    "SiteKey",
    "WellKey",
    "experiment_spellings",
    "image_path",
    "normalize_experiment",
    "parse_experiment",
    "parse_id_code",
    "parse_image_path",
    "parse_site_id",
    "site_image_paths",
]

# --------------------------------------------------------------------------- constants
#: The six fluorescence channels of every site (Hoechst, ConA, phalloidin, syto14,
#: MitoTracker, WGA), numbered as in the file names ``..._w{channel}.png``.
CHANNELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
#: Number of siRNA treatments (classes 0..1107).
NUM_TREATMENTS = 1108
#: Number of classes including the 30 positive controls and the negative control.
NUM_CLASSES = 1139
#: Class id of the negative control (the untreated well, ``UNTREATED`` / ``EMPTY``).
NEGATIVE_CONTROL_ID = 1138
#: Class ids of the 30 positive-control siRNAs.
POSITIVE_CONTROL_IDS = range(NUM_TREATMENTS, NEGATIVE_CONTROL_ID)
#: The four cell types of RxRx1, in the order used for categorical columns.
CELL_TYPES: tuple[str, ...] = ("HEPG2", "HUVEC", "RPE", "U2OS")
#: Well types, in the order used for the ``well_type`` category.
WELL_TYPES: tuple[str, ...] = ("treatment", "positive_control", "negative_control")
#: Plates per experiment; each holds one of the four siRNA groups.
PLATES: tuple[int, ...] = (1, 2, 3, 4)
#: Imaging sites per well.
SITES: tuple[int, ...] = (1, 2)
#: Kaggle data sets, in sort order.
DATASETS: tuple[str, ...] = ("train", "test")
#: Rows and columns of the 384-well plate that RxRx1 uses (the outer ring is empty):
#: 14 rows x 22 columns = 308 wells = 277 treatments + 30 positive controls + 1 untreated.
ROWS: tuple[str, ...] = tuple("BCDEFGHIJKLMNO")
COLUMNS: tuple[int, ...] = tuple(range(2, 24))
#: The negative-control (untreated) well of every real plate.
NEGATIVE_CONTROL_WELL = "B02"
#: The 30 positive-control wells of every real plate (derived from the real
#: ``train_controls.csv``/``test_controls.csv``: the same 30 wells on all 204 plates; which
#: control siRNA sits in which of them is shuffled per plate).
POSITIVE_CONTROL_WELLS: tuple[str, ...] = tuple(
    f"{r}{c:02d}" for r in "CFHJM" for c in (3, 7, 11, 15, 19, 22)
)
#: Kaggle CSV file names (metadata-only Kaggle roots are recognised by the first two).
KAGGLE_FILES: tuple[str, ...] = ("train.csv", "test.csv", "train_controls.csv", "test_controls.csv")
#: The full release's metadata file.
METADATA_FILE = "metadata.csv"
#: The full release's image folder (``{root}/images/{experiment}/...``).
IMAGES_FOLDER = "images"

Layout = Literal["kaggle", "full"]
#: ``kaggle``: ``{dataset}/{experiment}/...``; ``full``: ``images/{experiment}/...``.
LAYOUTS: tuple[str, ...] = ("kaggle", "full")

# --------------------------------------------------------------------------- parsing
#: Regular expression of an experiment name (groups ``cell_type``, ``batch``).
EXPERIMENT_PATTERN = r"(?P<cell_type>[A-Z][A-Z0-9]*)-(?P<batch>\d{1,4})"
_WELL_RE = r"(?P<row>[A-P])(?P<column>\d{2})"
_EXPERIMENT = re.compile(rf"^{EXPERIMENT_PATTERN}$")
_ID_CODE = re.compile(
    rf"^(?P<experiment>{EXPERIMENT_PATTERN})_(?P<plate>\d+)_(?P<well>{_WELL_RE})$"
)
_SITE_ID = re.compile(
    rf"^(?P<experiment>{EXPERIMENT_PATTERN})_(?P<plate>\d+)_(?P<well>{_WELL_RE})_(?P<site>\d+)$"
)
#: Regular expression of the relative part of an image path (the prefix before it is free;
#: use ``re.search``). Groups: ``dataset``, ``images``, ``experiment``, ``plate``, ``well``,
#: ``site``, ``channel``.
IMAGE_PATH_PATTERN = (
    r"(?:^|/)(?:(?P<dataset>train|test)/|(?P<images>images)/)?"
    r"(?P<experiment>[A-Z][A-Z0-9]*-\d{1,4})/Plate(?P<plate>\d+)/"
    r"(?P<well>[A-P]\d{2})_s(?P<site>\d+)_w(?P<channel>\d+)\.png$"
)
_IMAGE_PATH = re.compile(IMAGE_PATH_PATTERN)


def parse_experiment(experiment: str) -> tuple[str, int]:
    """Split an experiment name into ``(cell_type, batch)``.

    Args:
        experiment: e.g. ``"HEPG2-01"`` or ``"HUVEC-1"``.

    Returns:
        The cell type and the batch number.

    Raises:
        ParseError: when the name is not ``{CELLTYPE}-{number}``.

    Example:
        >>> parse_experiment("HUVEC-1")
        ('HUVEC', 1)
    """
    m = _EXPERIMENT.match(experiment) if isinstance(experiment, str) else None
    if m is None:
        raise ParseError(
            f"experiment {experiment!r}: expected '{{CELLTYPE}}-{{batch}}' such as 'HEPG2-01'"
        )
    return m["cell_type"], int(m["batch"])


def normalize_experiment(experiment: str) -> str:
    """Return the canonical spelling of an experiment (batch zero-padded to 2 digits).

    Example:
        >>> normalize_experiment("HUVEC-1"), normalize_experiment("U2OS-03")
        ('HUVEC-01', 'U2OS-03')
    """
    cell_type, batch = parse_experiment(experiment)
    return f"{cell_type}-{batch:02d}"


def experiment_spellings(experiment: str) -> tuple[str, ...]:
    """The spellings an experiment's folder may have on disk, the given one first.

    RxRx1 folders are written ``HUVEC-01``; some copies and user input say ``HUVEC-1``.
    :meth:`rxdata.roots.DataRoot.locate` tries these in order.

    Raises:
        ParseError: ``experiment`` is not ``{CELLTYPE}-{batch}``.

    Example:
        >>> experiment_spellings("HUVEC-1")
        ('HUVEC-1', 'HUVEC-01')
        >>> experiment_spellings("HUVEC-01")
        ('HUVEC-01', 'HUVEC-1')
    """
    cell_type, batch = parse_experiment(experiment)
    out = [experiment]
    for candidate in (f"{cell_type}-{batch:02d}", f"{cell_type}-{batch}"):
        if candidate not in out:
            out.append(candidate)
    return tuple(out)


def _check_range(what: str, value: int, allowed: Sequence[int], text: str) -> None:
    if value not in allowed:
        raise ParseError(f"{text!r}: {what} {value} is outside {allowed[0]}..{allowed[-1]}")


def _check_well(well: str, text: str) -> None:
    column = int(well[1:])
    if not 1 <= column <= 24:
        raise ParseError(f"{text!r}: well {well!r} has column {column}, expected 01..24")


def _check_int(what: str, value: object, allowed: Sequence[int], text: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ParseError(f"{text!r}: {what} must be an int, got {value!r}")
    _check_range(what, int(value), allowed, text)
    return int(value)


class _WellParts:
    """Properties derived from ``experiment`` and ``well`` (shared by the key types)."""

    experiment: str
    plate: int
    well: str

    def _validate_well(self, text: str) -> None:
        parse_experiment(self.experiment)
        object.__setattr__(self, "plate", _check_int("plate", self.plate, PLATES, text))
        if not isinstance(self.well, str) or re.fullmatch(_WELL_RE, self.well) is None:
            raise ParseError(f"{text!r}: well {self.well!r} is not a row A-P + 2-digit column")
        _check_well(self.well, text)

    @property
    def cell_type(self) -> str:
        """Cell type, e.g. ``'HEPG2'``."""
        return parse_experiment(self.experiment)[0]

    @property
    def batch(self) -> int:
        """Batch number of the experiment (``HEPG2-07`` -> 7)."""
        return parse_experiment(self.experiment)[1]

    @property
    def row(self) -> str:
        """Plate row letter."""
        return self.well[0]

    @property
    def column(self) -> int:
        """Plate column number."""
        return int(self.well[1:])

    @property
    def id_code(self) -> str:
        """Kaggle well id ``{experiment}_{plate}_{well}``."""
        return f"{self.experiment}_{self.plate}_{self.well}"

    def _norm(self) -> tuple[Any, ...]:
        return (*parse_experiment(self.experiment), self.plate, self.well)

    # Keys of one type compare and hash on the normalised experiment (HUVEC-1 == HUVEC-01);
    # keys of different types (a well and one of its sites) are never equal.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _WellParts) or type(other) is not type(self):
            return NotImplemented
        return self._norm() == other._norm()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._norm()))


@dataclass(frozen=True, eq=False)
class WellKey(_WellParts):
    """One well of one plate: the unit of Kaggle's ``id_code``.

    Equality and hashing use the normalised experiment, so ``HUVEC-1`` and ``HUVEC-01``
    name the same well; the text as given is kept in :attr:`experiment`.

    Example:
        >>> w = parse_id_code("HEPG2-01_1_B03")
        >>> w.id_code, w.row, w.column, w.at_site(2).site_id
        ('HEPG2-01_1_B03', 'B', 3, 'HEPG2-01_1_B03_2')
        >>> w == parse_id_code("HEPG2-1_1_B03")
        True
    """

    experiment: str
    plate: int
    well: str

    def __post_init__(self) -> None:
        self._validate_well(f"{self.experiment}_{self.plate}_{self.well}")

    def at_site(self, site: int) -> SiteKey:
        """The key of one site of this well."""
        return SiteKey(self.experiment, self.plate, self.well, site)


@dataclass(frozen=True, eq=False)
class SiteKey(_WellParts):
    """One imaging site of one well (the unit of the metadata table and of a TFRecord).

    Equality and hashing use the normalised experiment (``HUVEC-1 == HUVEC-01``).

    Example:
        >>> s = parse_site_id("U2OS-01_3_O23_1")
        >>> s.site_id, s.id_code, s.well_key == parse_id_code("U2OS-1_3_O23")
        ('U2OS-01_3_O23_1', 'U2OS-01_3_O23', True)
    """

    experiment: str
    plate: int
    well: str
    site: int

    def __post_init__(self) -> None:
        text = f"{self.experiment}_{self.plate}_{self.well}_{self.site}"
        self._validate_well(text)
        object.__setattr__(self, "site", _check_int("site", self.site, SITES, text))

    @property
    def site_id(self) -> str:
        """Site id ``{experiment}_{plate}_{well}_{site}``."""
        return f"{self.id_code}_{self.site}"

    @property
    def well_key(self) -> WellKey:
        """The key of the well this site belongs to."""
        return WellKey(self.experiment, self.plate, self.well)

    def _norm(self) -> tuple[Any, ...]:
        return (*super()._norm(), self.site)


@dataclass(frozen=True, eq=False)
class ImageKey(_WellParts):
    """One channel image: a site plus a channel, and where it came from.

    ``dataset`` is ``'train'``/``'test'`` for Kaggle paths and ``None`` when the path does
    not say (full-release and bare paths). ``layout`` records which naming the path used
    (``'kaggle'``, ``'full'``, or ``None`` for a bare ``{experiment}/...`` path) so that
    :attr:`relative_path` gives back the path it was parsed from; it takes no part in
    equality, and when omitted it follows ``dataset`` (Kaggle when set, else the full
    release). Equality uses the normalised experiment (``HUVEC-1 == HUVEC-01``).

    Example:
        >>> k = parse_image_path("/data/images/U2OS-01/Plate1/B02_s2_w3.png")
        >>> k.dataset, k.layout, k.site, k.channel, k.relative_path
        (None, 'full', 2, 3, 'images/U2OS-01/Plate1/B02_s2_w3.png')
        >>> k.path("kaggle", dataset="train")
        'train/U2OS-01/Plate1/B02_s2_w3.png'
        >>> str(ImageKey("test", "U2OS-01", 1, "B02", 2, 3))
        'test/U2OS-01/Plate1/B02_s2_w3.png'
    """

    dataset: str | None
    experiment: str
    plate: int
    well: str
    site: int
    channel: int
    #: ``"auto"`` (the default) becomes ``"kaggle"`` when ``dataset`` is set, else ``"full"``.
    layout: Layout | Literal["auto"] | None = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        if self.layout == "auto":
            object.__setattr__(self, "layout", "full" if self.dataset is None else "kaggle")
        site_key = SiteKey(self.experiment, self.plate, self.well, self.site)
        object.__setattr__(self, "plate", site_key.plate)
        object.__setattr__(self, "site", site_key.site)
        if self.dataset is not None and self.dataset not in DATASETS:
            raise ParseError(f"{site_key.site_id}: dataset {self.dataset!r} not in {DATASETS}")
        channel = _check_int("channel", self.channel, CHANNELS, site_key.site_id)
        object.__setattr__(self, "channel", channel)
        if self.layout not in (*LAYOUTS, None):
            raise ParseError(f"layout {self.layout!r}: expected 'kaggle', 'full' or None")
        if self.layout == "kaggle" and self.dataset is None:
            raise ParseError(f"{site_key.site_id}: the Kaggle layout needs dataset train/test")

    @property
    def site_key(self) -> SiteKey:
        """The site this image belongs to."""
        return SiteKey(self.experiment, self.plate, self.well, self.site)

    @property
    def site_id(self) -> str:
        """Site id."""
        return f"{self.id_code}_{self.site}"

    @property
    def relative_path(self) -> str:
        """The path in the layout it was parsed from (bare when ``layout`` is ``None``)."""
        tail = f"{self.experiment}/Plate{self.plate}/{self.well}_s{self.site}_w{self.channel}.png"
        if self.layout is None:
            return tail
        if self.layout == "full":
            return f"images/{tail}"
        return f"{self.dataset}/{tail}"

    def path(self, layout: Layout = "kaggle", *, dataset: str | None = None) -> str:
        """The relative path of this image in ``layout`` (``dataset`` overrides the key's)."""
        ds = self.dataset if dataset is None else dataset
        return image_path(
            ds, self.experiment, self.plate, self.well, self.site, self.channel, layout
        )

    def __str__(self) -> str:
        return self.relative_path

    def _norm(self) -> tuple[Any, ...]:
        return (self.dataset, *self.site_key._norm(), self.channel)


def parse_image_path(path: str | os.PathLike[str]) -> ImageKey:
    """Parse any RxRx1 channel image path into an :class:`ImageKey`.

    Accepts the Kaggle layout (``train/U2OS-01/Plate1/B02_s2_w3.png``), the full release
    (``images/U2OS-01/Plate1/B02_s2_w3.png``) and bare ``U2OS-01/Plate1/B02_s2_w3.png``,
    after any prefix (relative, absolute, ``gs://bucket/...``; backslashes are read as
    ``/``). The prefix is everything before :attr:`ImageKey.relative_path`.

    Raises:
        ParseError: the path does not end in an RxRx1 image name, or a number is out of
            range (plate 1-4, site 1-2, channel 1-6, well column 01-24).

    Example:
        >>> parse_image_path("train/U2OS-01/Plate1/B02_s2_w3.png").site_id
        'U2OS-01_1_B02_2'
    """
    text = os.fspath(path).replace("\\", "/")
    m = _IMAGE_PATH.search(text)
    if m is None:
        raise ParseError(
            f"image path {text!r}: expected '[train/|test/|images/]{{experiment}}/"
            "Plate{plate}/{well}_s{site}_w{channel}.png' such as "
            "'train/U2OS-01/Plate1/B02_s2_w3.png'"
        )
    dataset = m["dataset"]
    layout: Layout | None = "kaggle" if dataset else ("full" if m["images"] else None)
    try:
        return ImageKey(
            dataset,
            m["experiment"],
            int(m["plate"]),
            m["well"],
            int(m["site"]),
            int(m["channel"]),
            layout,
        )
    except ParseError as err:
        raise ParseError(f"image path {text!r}: {err}") from None


def parse_id_code(id_code: str) -> WellKey:
    """Parse a Kaggle well id ``{experiment}_{plate}_{well}``.

    Raises:
        ParseError: malformed id or plate outside 1-4.

    Example:
        >>> parse_id_code("HEPG2-01_1_B03").experiment
        'HEPG2-01'
    """
    m = _ID_CODE.match(id_code) if isinstance(id_code, str) else None
    if m is None:
        raise ParseError(
            f"id_code {id_code!r}: expected '{{experiment}}_{{plate}}_{{well}}' "
            "such as 'HEPG2-01_1_B03'"
        )
    try:
        return WellKey(m["experiment"], int(m["plate"]), m["well"])
    except ParseError as err:
        raise ParseError(f"id_code {id_code!r}: {err}") from None


def parse_site_id(site_id: str) -> SiteKey:
    """Parse a full-release site id ``{experiment}_{plate}_{well}_{site}``.

    Raises:
        ParseError: malformed id, plate outside 1-4 or site outside 1-2.

    Example:
        >>> parse_site_id("HEPG2-01_1_B03_2").site
        2
    """
    m = _SITE_ID.match(site_id) if isinstance(site_id, str) else None
    if m is None:
        raise ParseError(
            f"site_id {site_id!r}: expected '{{experiment}}_{{plate}}_{{well}}_{{site}}' "
            "such as 'HEPG2-01_1_B03_2'"
        )
    try:
        return SiteKey(m["experiment"], int(m["plate"]), m["well"], int(m["site"]))
    except ParseError as err:
        raise ParseError(f"site_id {site_id!r}: {err}") from None


def image_path(
    dataset: str | None,
    experiment: str,
    plate: int,
    well: str,
    site: int,
    channel: int,
    layout: Layout = "kaggle",
) -> str:
    """The relative path of one channel image.

    Args:
        dataset: ``'train'`` or ``'test'`` (required for the Kaggle layout, ignored for
            the full release).
        experiment: e.g. ``'HEPG2-01'``.
        plate: 1-4.
        well: e.g. ``'B03'``.
        site: 1-2.
        channel: 1-6.
        layout: ``'kaggle'`` (``{dataset}/...``) or ``'full'`` (``images/...``).

    Raises:
        ParseError: a value is out of range or the layout is unknown.

    Example:
        >>> image_path("train", "HEPG2-01", 1, "B03", 2, 5)
        'train/HEPG2-01/Plate1/B03_s2_w5.png'
        >>> image_path(None, "HEPG2-01", 1, "B03", 2, 5, layout="full")
        'images/HEPG2-01/Plate1/B03_s2_w5.png'
    """
    if layout not in LAYOUTS:
        raise ParseError(f"layout {layout!r}: expected one of {LAYOUTS}")
    key = ImageKey(
        dataset if layout == "kaggle" else None,
        experiment,
        plate,
        well,
        site,
        channel,
        layout,
    )
    return key.relative_path


def site_image_paths(
    dataset: str | None,
    experiment: str,
    plate: int,
    well: str,
    site: int,
    layout: Layout = "kaggle",
) -> tuple[str, ...]:
    """The relative paths of a site's six channel images, in :data:`CHANNELS` order.

    The same paths as :func:`image_path` for each channel, with the values checked once
    (the converter builds them for every site: a sixth of the cost).

    Raises:
        ParseError: a value is out of range or the layout is unknown.

    Example:
        >>> site_image_paths("train", "HEPG2-01", 1, "B03", 2)[4]
        'train/HEPG2-01/Plate1/B03_s2_w5.png'
    """
    first = image_path(dataset, experiment, plate, well, site, CHANNELS[0], layout)
    stem = first[: -len(f"{CHANNELS[0]}.png")]  # the name ends _w{channel}.png
    return (first, *(f"{stem}{channel}.png" for channel in CHANNELS[1:]))

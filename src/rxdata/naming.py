"""RxRx1 naming: the one owner of constants, keys, experiment spellings, layouts and paths.

Every other rxdata module asks this one; none re-derives a rule. It is pure Python (no
pandas, no TensorFlow); folder checks on remote roots go through :mod:`rxdata._io`.

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
  :meth:`DataRoot.locate` finds the folder as it is spelled on disk.
* A data root is classified by one rule, :func:`find_root` (:func:`detect_layout` is its
  ``layout``): see there. Readers, the converter, ``rxdata show`` and ``rxdata stats``
  all call it.

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

import functools
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rxdata import _io
from rxdata.errors import MetadataError, OptionsError, ParseError

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
    "DataRoot",
    "ImageKey",
    "Layout",
    "SiteKey",
    "WellKey",
    "clear_cache",
    "detect_layout",
    "experiment_spellings",
    "find_root",
    "image_path",
    "normalize_experiment",
    "parse_experiment",
    "parse_id_code",
    "parse_image_path",
    "parse_site_id",
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
    :meth:`DataRoot.locate` tries these in order.

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


# --------------------------------------------------------------------------- data roots
def _parent(path: str) -> str:
    if _io.is_remote(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.normpath(path))


def _basename(path: str) -> str:
    return path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DataRoot:
    """A classified data root: where the images are and how they are named.

    Made by :func:`find_root`. ``base`` is the folder that :func:`image_path`'s relative
    paths hang off; it differs from ``root`` (what the user gave) when ``root`` is the
    full release's ``images/`` folder itself (``base`` is then its parent) or holds the
    Kaggle folders inside ``images/`` (``base`` is then ``{root}/images``).

    Attributes:
        root: The path as given (local or remote), as a string.
        base: The folder relative image paths are joined to.
        layout: ``'kaggle'`` or ``'full'``.
        datasets: The Kaggle data-set folders looked for (``('train', 'test')``).

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/images/HUVEC-01/Plate2")
        >>> data = find_root(f"{root}/images")
        >>> data.layout, data.base == root
        ('full', True)
        >>> data.path(None, "HUVEC-1", 2, "B03", 1, 4) == (
        ...     f"{root}/images/HUVEC-01/Plate2/B03_s1_w4.png")
        True
    """

    root: str
    base: str
    layout: Layout
    datasets: tuple[str, ...] = DATASETS

    def folder(self, dataset: str | None) -> str:
        """The folder that holds the experiment folders (``{base}/images`` or the data set's)."""
        if self.layout == "full":
            return _io.join(self.base, IMAGES_FOLDER)
        if not dataset:
            raise OptionsError(
                f"the Kaggle layout under {self.base} needs dataset='train' or 'test', "
                f"got {dataset!r}"
            )
        return _io.join(self.base, dataset)

    def locate(self, dataset: str | None, experiment: str) -> tuple[str | None, str]:
        """Find ``(dataset, experiment)`` as they are on disk.

        This is the one place experiment spellings are resolved against the disk: the
        folder is looked up in each of :func:`experiment_spellings` (``HUVEC-1`` finds
        ``HUVEC-01`` and back). In the Kaggle layout, ``dataset=None`` finds the
        experiment under ``train/`` or ``test/``. The full release has no dataset
        folders: ``dataset`` is returned as ``None``. When no folder exists the given
        spelling is returned, so that the caller's error names the path it expected.

        Raises:
            OptionsError: Kaggle layout, ``dataset=None``, and the experiment is under
                none of the data-set folders.
            ParseError: ``experiment`` is not an experiment name.
        """
        if _io.is_remote(self.base):
            return _locate_remote(self, dataset, str(experiment))
        return self._locate(dataset, str(experiment))

    def _locate(self, dataset: str | None, experiment: str) -> tuple[str | None, str]:
        spellings = experiment_spellings(str(experiment))
        if self.layout == "full":
            candidates: Sequence[str | None] = (None,)
        elif dataset:
            candidates = (dataset,)
        else:
            candidates = self.datasets
        for ds in candidates:
            folder = self.folder(ds)
            for name in spellings:
                if _io.isdir(_io.join(folder, name)):
                    return ds, name
        if self.layout == "kaggle" and not dataset:
            places = " nor ".join(_io.join(self.base, ds) for ds in self.datasets)
            raise OptionsError(
                f"experiment {experiment!r} (spelled {' or '.join(spellings)}) is under "
                f"neither {places}; pass dataset='train' or 'test'"
            )
        return (None if self.layout == "full" else dataset), str(experiment)

    def path(
        self,
        dataset: str | None,
        experiment: str,
        plate: int,
        well: str,
        site: int,
        channel: int,
    ) -> str:
        """Absolute path of one channel image, experiment and dataset found on disk.

        Example:
            >>> DataRoot("/nonexistent", "/nonexistent", "full").path(
            ...     None, "RPE-05", 3, "D19", 2, 1)
            '/nonexistent/images/RPE-05/Plate3/D19_s2_w1.png'
        """
        ds, exp = self.locate(dataset, experiment)
        return self.join(image_path(ds, exp, plate, well, site, channel, self.layout))

    def join(self, relative_path: str) -> str:
        """Join an :func:`image_path` (relative) to :attr:`base`."""
        return _io.join(self.base, *relative_path.split("/"))


# Each folder check on a remote root (gs://...) is a network round trip, and readers ask
# per site: remote answers are remembered for the process. A stale answer cannot give wrong
# pixels, only a loud ImageNotFoundError naming the path; `clear_cache()` forgets them.
@functools.lru_cache(maxsize=1024)
def _locate_remote(root: DataRoot, dataset: str | None, experiment: str) -> tuple[str | None, str]:
    return root._locate(dataset, experiment)


@functools.lru_cache(maxsize=256)
def _detect_remote(root: str, datasets: tuple[str, ...]) -> DataRoot | None:
    return _detect_uncached(root, datasets)


def clear_cache() -> None:
    """Forget the remembered layouts and experiment folders of remote (``gs://``) roots.

    Call it after changing the folders of a remote data root within one process.

    Example:
        >>> clear_cache()
    """
    _locate_remote.cache_clear()
    _detect_remote.cache_clear()


def _detect(root: str, datasets: Sequence[str]) -> DataRoot | None:
    """The detection rule of :func:`find_root`; ``None`` when nothing is recognised."""
    if _io.is_remote(root):
        return _detect_remote(root, tuple(datasets))
    return _detect_uncached(root, tuple(datasets))


def _detect_uncached(root: str, datasets: tuple[str, ...]) -> DataRoot | None:
    ds = datasets

    def has_datasets(folder: str) -> bool:
        return any(_io.isdir(_io.join(folder, d)) for d in ds)

    images = _io.join(root, IMAGES_FOLDER)
    if _io.isdir(images):
        if has_datasets(images):
            return DataRoot(root, images, "kaggle", ds)
        if has_datasets(root):
            found = [d for d in ds if _io.isdir(_io.join(root, d))]
            raise MetadataError(
                f"{root}: ambiguous data root, it holds both the full release's images/ and "
                f"the Kaggle folder(s) {found}; pass the folder of one layout, or layout="
            )
        return DataRoot(root, root, "full", ds)
    if has_datasets(root):
        return DataRoot(root, root, "kaggle", ds)
    if _basename(root) == IMAGES_FOLDER and _io.isdir(root):
        experiments = [
            p
            for p in _io.glob(_io.join(_io.glob_escape(root), "*-*"))
            if re.fullmatch(EXPERIMENT_PATTERN, _basename(p))
        ]
        if experiments:
            return DataRoot(root, _parent(root), "full", ds)
    if _io.exists(_io.join(root, METADATA_FILE)):
        return DataRoot(root, root, "full", ds)
    if any(_io.exists(_io.join(root, f)) for f in KAGGLE_FILES[:2]):
        return DataRoot(root, root, "kaggle", ds)
    return None


def find_root(
    root: str | os.PathLike[str],
    *,
    layout: str | None = None,
    datasets: Sequence[str] = DATASETS,
) -> DataRoot:
    """Classify a data root: the one layout rule every rxdata reader uses.

    The rule, first match wins:

    1. ``{root}/images/`` is a folder: the full release with ``base=root``, unless
       ``images/`` itself holds ``train/`` or ``test/`` (Kaggle images kept in an
       ``images/`` folder: Kaggle with ``base={root}/images``). A root that also holds
       ``train/`` or ``test/`` next to ``images/`` is ambiguous: an error.
    2. ``{root}/train/`` or ``{root}/test/`` is a folder: Kaggle, ``base=root``.
    3. ``root`` is itself a folder named ``images`` holding experiment folders
       (``HUVEC-01``...): the full release with ``base`` its parent.
    4. Metadata only: ``{root}/metadata.csv`` means the full release, ``train.csv`` or
       ``test.csv`` Kaggle (``base=root``; there are no images to find).

    An explicit ``layout`` is trusted: the detected root is used when it agrees,
    otherwise ``base=root``.

    Args:
        root: The data root as given (local path or ``gs://`` URL).
        layout: ``'kaggle'``, ``'full'`` or ``None`` to detect.
        datasets: The Kaggle data-set folder names (``train``, ``test``).

    Raises:
        MetadataError: nothing recognisable under ``root`` (the message names ``root``
            and what was looked for), or both layouts at once.
        OptionsError: ``layout`` is not one of :data:`LAYOUTS`.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/train/HEPG2-01")
        >>> data = find_root(root)
        >>> data.layout, data.locate(None, "HEPG2-1")
        ('kaggle', ('train', 'HEPG2-01'))
    """
    root_s = os.fspath(root)
    if layout is not None and layout not in LAYOUTS:
        raise OptionsError(f"layout={layout!r} is not one of {LAYOUTS}")
    try:
        found = _detect(root_s, datasets)
    except MetadataError:
        if layout is None:
            raise
        found = None
    if layout is None:
        if found is None:
            raise MetadataError(
                f"{root_s}: no RxRx1 layout found; looked for {IMAGES_FOLDER}/ (full release), "
                f"{'/ or '.join(datasets)}/ (Kaggle), a folder named {IMAGES_FOLDER} holding "
                f"experiment folders, {METADATA_FILE} or {' or '.join(KAGGLE_FILES[:2])}"
            )
        return found
    if found is not None and found.layout == layout:
        return found
    return DataRoot(root_s, root_s, "kaggle" if layout == "kaggle" else "full", tuple(datasets))


def detect_layout(root: str | os.PathLike[str], *, datasets: Sequence[str] = DATASETS) -> Layout:
    """The layout of a data root by the rule of :func:`find_root`.

    Raises:
        MetadataError: no layout (or both) found under ``root``.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "images").mkdir()
        >>> detect_layout(d)
        'full'
    """
    return find_root(root, datasets=datasets).layout

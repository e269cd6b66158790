"""The RxRx1 metadata model: keys, path and id parsers, and the metadata table.

Contract (shared by every rxdata module, see CONTRIBUTING.md):

* A channel image is named ``{dataset}/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png``
  in the Kaggle layout and ``images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png``
  in the full RxRx1 release. :func:`parse_image_path` accepts either, a bare
  ``{experiment}/...`` path, and any prefix (relative, absolute, ``gs://bucket/...``).
* A well is named by its Kaggle ``id_code`` ``{experiment}_{plate}_{well}`` and a site by
  its ``site_id`` ``{id_code}_{site}``.
* Experiments are ``{cell_type}-{batch}``. The same experiment may be written
  ``HUVEC-1`` or ``HUVEC-01``: rxdata keeps the text as given, but keys compare (and hash)
  on ``(cell_type, batch)`` so both spellings are the same key.
* :func:`read_metadata` returns one row per **site** with exactly the columns, dtypes and
  sort order of :data:`METADATA_COLUMNS` (see the table in CONTRIBUTING.md).
* Labels: ``sirna_id`` is the class 0..1138: 0..1107 treatments, 1108..1137 positive
  controls, 1138 the negative control (untreated well). The Kaggle re-release writes
  labels as strings ``sirna_N`` (mapped to ``N``) and the negative control as
  ``UNTREATED`` (mapped to 1138); the full release gives ``sirna_id`` directly.

Nothing here imports TensorFlow; remote paths go through :mod:`rxdata._io`.

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

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from rxdata import _io
from rxdata.errors import MetadataError, ParseError

__all__ = [
    "CELL_TYPES",
    "CHANNELS",
    "COLUMNS",
    "DATASETS",
    "FULL_RELEASE_COLUMNS",
    "KAGGLE_FILES",
    "METADATA_COLUMNS",
    "NEGATIVE_CONTROL_ID",
    "NEGATIVE_CONTROL_WELL",
    "NUM_CLASSES",
    "NUM_TREATMENTS",
    "PIXEL_STATS_COLUMNS",
    "PLATES",
    "POSITIVE_CONTROL_IDS",
    "POSITIVE_CONTROL_WELLS",
    "ROWS",
    "SITES",
    "WELL_TYPES",
    "ImageKey",
    "Layout",
    "ScanResult",
    "SiteKey",
    "WellKey",
    "detect_layout",
    "image_path",
    "normalize_experiment",
    "parse_experiment",
    "parse_id_code",
    "parse_image_path",
    "parse_site_id",
    "read_metadata",
    "read_pixel_stats",
    "scan_images",
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
#: Columns of the full RxRx1 release's ``metadata.csv``, in its order (``sirna`` is the
#: supplier id such as ``s21721`` or ``EMPTY``; ``sirna_id`` the class 0..1138).
FULL_RELEASE_COLUMNS: tuple[str, ...] = (
    "site_id",
    "well_id",
    "cell_type",
    "dataset",
    "experiment",
    "plate",
    "well",
    "site",
    "well_type",
    "sirna",
    "sirna_id",
)
#: Kaggle CSV file names read by :func:`read_metadata`.
KAGGLE_FILES: tuple[str, ...] = ("train.csv", "test.csv", "train_controls.csv", "test_controls.csv")

#: Columns (and dtypes) of the table :func:`read_metadata` returns, in order.
METADATA_COLUMNS: dict[str, str] = {
    "site_id": "string",
    "id_code": "string",
    "dataset": "category",
    "experiment": "category",
    "cell_type": "category",
    "batch": "int16",
    "plate": "int8",
    "well": "string",
    "row": "string",
    "column": "int8",
    "site": "int8",
    "well_type": "category",
    "sirna": "string",
    "sirna_id": "Int16",
}
#: Columns of Kaggle's ``pixel_stats.csv``.
PIXEL_STATS_COLUMNS: tuple[str, ...] = (
    "id_code",
    "experiment",
    "plate",
    "well",
    "site",
    "channel",
    "mean",
    "std",
    "median",
    "min",
    "max",
)

Layout = Literal["kaggle", "full"]
_LAYOUTS: tuple[str, ...] = ("kaggle", "full")

# --------------------------------------------------------------------------- parsing
_EXPERIMENT_RE = r"(?P<cell_type>[A-Z][A-Z0-9]*)-(?P<batch>\d{1,4})"
_WELL_RE = r"(?P<row>[A-P])(?P<column>\d{2})"
_EXPERIMENT = re.compile(rf"^{_EXPERIMENT_RE}$")
_ID_CODE = re.compile(rf"^(?P<experiment>{_EXPERIMENT_RE})_(?P<plate>\d+)_(?P<well>{_WELL_RE})$")
_SITE_ID = re.compile(
    rf"^(?P<experiment>{_EXPERIMENT_RE})_(?P<plate>\d+)_(?P<well>{_WELL_RE})_(?P<site>\d+)$"
)
# The relative part of an image path; the prefix before it is free.
_IMAGE_PATH = re.compile(
    r"(?:^|/)(?:(?P<dataset>train|test)/|(?P<images>images)/)?"
    r"(?P<experiment>[A-Z][A-Z0-9]*-\d{1,4})/Plate(?P<plate>\d+)/"
    r"(?P<well>[A-P]\d{2})_s(?P<site>\d+)_w(?P<channel>\d+)\.png$"
)


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


def _check_range(what: str, value: int, allowed: Sequence[int], text: str) -> None:
    if value not in allowed:
        raise ParseError(f"{text!r}: {what} {value} is outside {allowed[0]}..{allowed[-1]}")


def _check_well(well: str, text: str) -> None:
    column = int(well[1:])
    if not 1 <= column <= 24:
        raise ParseError(f"{text!r}: well {well!r} has column {column}, expected 01..24")


def _check_int(what: str, value: object, allowed: Sequence[int], text: str) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
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
        if self.layout not in (*_LAYOUTS, None):
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
    if layout not in _LAYOUTS:
        raise ParseError(f"layout {layout!r}: expected one of {_LAYOUTS}")
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


def detect_layout(root: str | os.PathLike[str]) -> Layout:
    """Tell whether a data root holds the Kaggle layout or the full release.

    ``images/`` or ``metadata.csv`` means the full release; ``train/``, ``test/`` or
    ``train.csv`` means Kaggle.

    Raises:
        MetadataError: neither layout is recognisable under ``root``.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "images").mkdir()
        >>> detect_layout(d)
        'full'
    """
    if _io.isdir(_io.join(root, "images")) or _io.exists(_io.join(root, "metadata.csv")):
        return "full"
    if any(_io.exists(_io.join(root, p)) for p in ("train", "test", "train.csv", "test.csv")):
        return "kaggle"
    raise MetadataError(
        f"{os.fspath(root)}: no RxRx1 layout found; expected train/ or test/ (Kaggle) "
        "or images/ or metadata.csv (full release)"
    )


# --------------------------------------------------------------------------- tables
def _fail(file: str, df: pd.DataFrame, mask: Any, column: str, expected: str) -> None:
    """Raise a MetadataError naming the first offending rows (CSV line numbers)."""
    bad = np.flatnonzero(np.asarray(mask, dtype=bool))
    if bad.size == 0:
        return
    shown = ", ".join(
        f"line {int(df.index[i]) + 2}: {df[column].iloc[i]!r}" if column in df else f"line {i + 2}"
        for i in bad[:5]
    )
    more = f" (and {bad.size - 5} more)" if bad.size > 5 else ""
    raise MetadataError(f"{file}: bad {column} {shown}{more}; expected {expected}")


def _read_csv(path: str) -> pd.DataFrame:
    try:
        data = _io.read_bytes(path)
    except FileNotFoundError:
        raise MetadataError(f"{path}: file not found") from None
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as err:
        raise MetadataError(f"{path}: not a readable CSV ({err})") from None


def _require(file: str, df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MetadataError(
            f"{file}: missing column(s) {missing}; found {list(df.columns)}, "
            f"expected at least {list(columns)}"
        )


def _ints(file: str, df: pd.DataFrame, column: str, allowed: Sequence[int]) -> np.ndarray:
    """Parse an integer column, checking each value lies in ``allowed``."""
    s = df[column]
    ok = s.str.fullmatch(r"\s*\d+\s*").fillna(False).to_numpy(dtype=bool)
    _fail(file, df, ~ok, column, f"an integer in {allowed[0]}..{allowed[-1]}")
    values = s.astype("int64").to_numpy()
    _fail(
        file,
        df,
        (values < allowed[0]) | (values > allowed[-1]),
        column,
        f"an integer in {allowed[0]}..{allowed[-1]}",
    )
    return values


def _labels(file: str, df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Map a ``sirna`` column (ints, ``sirna_N``, ``UNTREATED``/``EMPTY``) to class ids."""
    sirna = df["sirna"].astype("string")
    number = sirna.str.extract(r"^(?:sirna_)?(\d+)$", expand=False)
    ids = pd.to_numeric(number, errors="coerce").astype("Int64")
    untreated = sirna.str.upper().isin(["UNTREATED", "EMPTY"]).fillna(False)
    ids = ids.mask(untreated.to_numpy(dtype=bool), NEGATIVE_CONTROL_ID)
    unknown = ids.isna() & sirna.notna()
    _fail(file, df, unknown, "sirna", "an integer, 'sirna_N' or 'UNTREATED'")
    _fail(
        file,
        df,
        ((ids < 0) | (ids >= NUM_CLASSES)).fillna(False),
        "sirna",
        f"a class id in 0..{NUM_CLASSES - 1}",
    )
    return sirna, ids


def _well_types_from_ids(ids: pd.Series) -> np.ndarray:
    out = np.full(len(ids), "treatment", dtype=object)
    arr = ids.to_numpy(dtype="float64", na_value=np.nan)
    out[(arr >= NUM_TREATMENTS) & (arr < NEGATIVE_CONTROL_ID)] = "positive_control"
    out[arr == NEGATIVE_CONTROL_ID] = "negative_control"
    return out


def _check_wells(file: str, df: pd.DataFrame) -> None:
    ok = df["well"].str.fullmatch(r"[A-P](0[1-9]|1\d|2[0-4])").fillna(False)
    _fail(file, df, ~ok.to_numpy(dtype=bool), "well", "a well A01..P24 such as 'B03'")


def _check_experiments(file: str, df: pd.DataFrame) -> None:
    ok = df["experiment"].str.fullmatch(_EXPERIMENT_RE).fillna(False)
    _fail(file, df, ~ok.to_numpy(dtype=bool), "experiment", "'{CELLTYPE}-{batch}' e.g. 'HEPG2-01'")


def _check_well_columns(file: str, df: pd.DataFrame, id_column: str) -> np.ndarray:
    """Validate ``experiment``, ``plate``, ``well`` and the well id built from them.

    Returns the parsed plates. ``id_column`` holds ``{experiment}_{plate}_{well}``
    (``id_code`` in the Kaggle CSVs, ``well_id`` in the full release).
    """
    _check_experiments(file, df)
    plate = _ints(file, df, "plate", PLATES)
    _check_wells(file, df)
    expected_id = df["experiment"] + "_" + df["plate"].str.strip() + "_" + df["well"]
    _fail(
        file,
        df,
        (df[id_column] != expected_id).to_numpy(dtype=bool),
        id_column,
        "'{experiment}_{plate}_{well}' matching the other columns",
    )
    return plate


def _well_table(file: str, df: pd.DataFrame, dataset: str | None, has_type: bool) -> pd.DataFrame:
    """Validate one Kaggle CSV and return its wells in a common shape."""
    _require(file, df, ["id_code", "experiment", "plate", "well"])
    plate = _check_well_columns(file, df, "id_code")
    out = pd.DataFrame(
        {
            "id_code": df["id_code"],
            "dataset": dataset,
            "experiment": df["experiment"],
            "plate": plate,
            "well": df["well"],
        }
    )
    if "sirna" in df:
        sirna, ids = _labels(file, df)
    else:
        sirna = pd.Series(pd.NA, index=df.index, dtype="string")
        ids = pd.Series(pd.NA, index=df.index, dtype="Int64")
    out["sirna"] = sirna
    out["sirna_id"] = ids
    derived = _well_types_from_ids(ids)
    if has_type and "well_type" in df:
        wt = df["well_type"]
        _fail(file, df, ~wt.isin(WELL_TYPES).to_numpy(dtype=bool), "well_type", str(WELL_TYPES))
        labelled = ids.notna().to_numpy(dtype=bool)
        _fail(
            file,
            df,
            labelled & (wt.to_numpy(dtype=object) != derived),
            "well_type",
            "the type implied by sirna (1108..1137 positive, 1138 negative control)",
        )
        out["well_type"] = wt.to_numpy(dtype=object)
    else:
        out["well_type"] = derived
    out["_line"] = df.index.to_numpy() + 2
    out["_file"] = file
    result: pd.DataFrame = out
    return result


def _read_kaggle(root: str) -> pd.DataFrame:
    parts = []
    for name in KAGGLE_FILES:
        path = _io.join(root, name)
        if not _io.exists(path):
            continue
        dataset = name.split("_")[0].removesuffix(".csv")
        parts.append(_well_table(path, _read_csv(path), dataset, "controls" in name))
    if not parts:
        raise MetadataError(f"{root}: no Kaggle CSVs found; expected {list(KAGGLE_FILES)}")
    wells = pd.concat(parts, ignore_index=True)
    dup = wells["id_code"].duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((wells["id_code"] == wells["id_code"].iloc[i]).to_numpy())[0])
        raise MetadataError(
            f"{wells['_file'].iloc[i]} line {wells['_line'].iloc[i]}: duplicate id_code "
            f"{wells['id_code'].iloc[i]!r} (first seen in {wells['_file'].iloc[first]} line "
            f"{wells['_line'].iloc[first]}); expected each well once"
        )
    n = len(wells)
    sites = wells.loc[wells.index.repeat(len(SITES))].reset_index(drop=True)
    sites["site"] = np.tile(np.array(SITES, dtype=np.int8), n)
    sites["site_id"] = sites["id_code"] + "_" + sites["site"].astype(str)
    result: pd.DataFrame = sites
    return result


def _read_full(path: str) -> pd.DataFrame:
    df = _read_csv(path)
    cols = ["site_id", "well_id", "dataset", "experiment", "plate", "well", "site", "well_type"]
    _require(path, df, [*cols, "sirna_id"])
    plate = _check_well_columns(path, df, "well_id")
    site = _ints(path, df, "site", SITES)
    _fail(path, df, ~df["dataset"].isin(DATASETS).to_numpy(dtype=bool), "dataset", str(DATASETS))
    wt_ok = df["well_type"].isin(WELL_TYPES).to_numpy(dtype=bool)
    _fail(path, df, ~wt_ok, "well_type", str(WELL_TYPES))
    if "cell_type" in df:
        prefix = df["experiment"].str.split("-").str[0]
        _fail(
            path,
            df,
            (df["cell_type"] != prefix).to_numpy(dtype=bool),
            "cell_type",
            "the cell type that starts the experiment name",
        )
    site_id = df["well_id"] + "_" + df["site"].str.strip()
    _fail(
        path,
        df,
        (df["site_id"] != site_id).to_numpy(dtype=bool),
        "site_id",
        "'{experiment}_{plate}_{well}_{site}' matching the other columns",
    )
    raw_id = df["sirna_id"]
    ids = pd.to_numeric(raw_id, errors="coerce").astype("Int64")
    _fail(path, df, (ids.isna() & raw_id.notna()).to_numpy(dtype=bool), "sirna_id", "an integer")
    _fail(
        path,
        df,
        ((ids < 0) | (ids >= NUM_CLASSES)).fillna(False).to_numpy(dtype=bool),
        "sirna_id",
        f"a class id in 0..{NUM_CLASSES - 1}",
    )
    derived = _well_types_from_ids(ids)
    _fail(
        path,
        df,
        ids.notna().to_numpy(dtype=bool) & (df["well_type"].to_numpy(dtype=object) != derived),
        "well_type",
        "the type implied by sirna_id (1108..1137 positive, 1138 negative control)",
    )
    sites = pd.DataFrame(
        {
            "site_id": df["site_id"],
            "id_code": df["well_id"],
            "dataset": df["dataset"],
            "experiment": df["experiment"],
            "plate": plate,
            "well": df["well"],
            "site": site,
            "well_type": df["well_type"],
            "sirna": df.get("sirna", pd.NA),
            "sirna_id": ids,
            "_line": df.index.to_numpy() + 2,
            "_file": path,
        }
    )
    dup = sites["site_id"].duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise MetadataError(
            f"{path} line {sites['_line'].iloc[i]}: duplicate site_id "
            f"{sites['site_id'].iloc[i]!r}; expected each site once"
        )
    result: pd.DataFrame = sites
    return result


def _categories(values: pd.Series, known: Sequence[str]) -> list[str]:
    present = set(values.dropna().unique())
    return [*known, *sorted(present - set(known))]


def _finish(sites: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Derive columns, set dtypes and sort into the contract's shape (``extra`` kept last).

    Experiments and wells repeat a lot (51 and 308 distinct values for 125,510 sites), so
    they are parsed once per distinct value and spread with categorical codes.
    """
    exp = pd.Categorical(sites["experiment"].astype("string"))
    names = [str(c) for c in exp.categories]
    parsed = [parse_experiment(n) for n in names]
    # experiments sort by (cell type, batch) so HUVEC-2 < HUVEC-10 whatever the padding
    order = sorted(range(len(names)), key=lambda i: (*parsed[i], names[i]))
    experiment = exp.reorder_categories([names[i] for i in order])
    codes = np.asarray(exp.codes)
    kinds = [p[0] for p in parsed]
    cell_types = _categories(pd.Series(kinds, dtype=object), CELL_TYPES)
    kind_codes = np.asarray([cell_types.index(k) for k in kinds], dtype=np.int8)
    cell_type = pd.Categorical.from_codes(kind_codes[codes], dtype=pd.CategoricalDtype(cell_types))
    batch = np.asarray([p[1] for p in parsed], dtype=np.int16)[codes]
    wells = pd.Categorical(sites["well"].astype("string"))
    well_names = np.asarray([str(w) for w in wells.categories], dtype=object)
    well_codes = np.asarray(wells.codes)
    rows = np.asarray([w[:1] for w in well_names], dtype=object)[well_codes]
    columns = np.asarray([int(w[1:]) for w in well_names], dtype=np.int8)[well_codes]
    out = pd.DataFrame(
        {
            "site_id": sites["site_id"].astype("string"),
            "id_code": sites["id_code"].astype("string"),
            "dataset": pd.Categorical(sites["dataset"], categories=list(DATASETS)),
            "experiment": experiment,
            "cell_type": cell_type,
            "batch": batch,
            "plate": sites["plate"].astype("int8"),
            "well": pd.array(well_names[well_codes], dtype="string"),
            "row": pd.array(rows, dtype="string"),
            "column": columns,
            "site": sites["site"].astype("int8"),
            "well_type": pd.Categorical(sites["well_type"], categories=list(WELL_TYPES)),
            "sirna": sites["sirna"].astype("string"),
            "sirna_id": sites["sirna_id"].astype("Int16"),
            **{name: sites[name] for name in extra},
        },
        index=sites.index,
    )
    out = out.sort_values(["dataset", "experiment", "plate", "well", "site"], kind="stable")
    result: pd.DataFrame = out.reset_index(drop=True)
    return result


def read_metadata(path: str | os.PathLike[str], *, include_controls: bool = True) -> pd.DataFrame:
    r"""Read RxRx1 metadata into the site table of the contract (one row per site).

    Args:
        path: a folder with the Kaggle CSVs (``train.csv``, ``test.csv`` and optionally
            ``train_controls.csv``, ``test_controls.csv``; integer labels or the
            re-release's ``sirna_N``/``UNTREATED``), a folder with the full release's
            ``metadata.csv``, or that file itself. Local or remote (``gs://``).
        include_controls: keep positive/negative control wells (``False`` keeps only
            ``well_type == 'treatment'``).

    Returns:
        A DataFrame with the columns and dtypes of :data:`METADATA_COLUMNS`, sorted by
        dataset (train, test), experiment, plate, well, site, with a fresh RangeIndex.
        Kaggle wells become two rows (sites 1 and 2).

    Raises:
        MetadataError: missing files or columns, duplicate ids, bad plates, wells, sites,
            labels or well types; the message names the file, the CSV line and the value.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "train.csv").write_text(
        ...     "id_code,experiment,plate,well,sirna\nHEPG2-01_1_B03,HEPG2-01,1,B03,513\n")
        >>> md = read_metadata(d)
        >>> md[["site_id", "cell_type", "sirna_id"]].to_dict("records")[1]
        {'site_id': 'HEPG2-01_1_B03_2', 'cell_type': 'HEPG2', 'sirna_id': 513}
    """
    path_s = os.fspath(path)
    if path_s.endswith(".csv"):
        if os.path.basename(path_s) != "metadata.csv":
            raise MetadataError(
                f"{path_s}: pass the folder holding the Kaggle CSVs, or a full-release metadata.csv"
            )
        sites = _read_full(path_s)
    elif _io.exists(_io.join(path_s, "metadata.csv")):
        sites = _read_full(_io.join(path_s, "metadata.csv"))
    elif _io.isdir(path_s):
        sites = _read_kaggle(path_s)
    else:
        raise MetadataError(f"{path_s}: no such metadata folder or file")
    table = _finish(sites)
    if not include_controls:
        table = table[table["well_type"] == "treatment"].reset_index(drop=True)
    return table


def read_pixel_stats(path: str | os.PathLike[str]) -> pd.DataFrame:
    r"""Read Kaggle's ``pixel_stats.csv`` (one row per site and channel), validated.

    Columns: ``id_code, experiment, plate, well, site, channel, mean, std, median, min,
    max``; a ``site_id`` column is added after ``id_code``. Statistics are float64.

    Raises:
        MetadataError: missing columns, out-of-range plate/site/channel, ``id_code`` not
            matching its columns, duplicate (site, channel) rows, or statistics that are
            inconsistent (``0 <= min <= median, mean <= max <= 255``, ``std >= 0``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "pixel_stats.csv"
        >>> _ = p.write_text("id_code,experiment,plate,well,site,channel,mean,std,median,min,max\n"
        ...                  "U2OS-01_1_B02,U2OS-01,1,B02,1,1,6.7,4.1,5.0,0,255\n")
        >>> row = read_pixel_stats(p).iloc[0]
        >>> row["site_id"], float(row["mean"])
        ('U2OS-01_1_B02_1', 6.7)
    """
    file = os.fspath(path)
    df = _read_csv(file)
    _require(file, df, PIXEL_STATS_COLUMNS)
    plate = _check_well_columns(file, df, "id_code")
    site = _ints(file, df, "site", SITES)
    channel = _ints(file, df, "channel", CHANNELS)
    stats = {}
    for col in ("mean", "std", "median", "min", "max"):
        values = pd.to_numeric(df[col], errors="coerce")
        _fail(file, df, values.isna().to_numpy(dtype=bool), col, "a number")
        stats[col] = values.to_numpy(dtype="float64")
    eps = 1e-6
    bad = (
        (stats["min"] < -eps)
        | (stats["max"] > 255 + eps)
        | (stats["min"] > stats["median"] + eps)
        | (stats["median"] > stats["max"] + eps)
        | (stats["min"] > stats["mean"] + eps)
        | (stats["mean"] > stats["max"] + eps)
        | (stats["std"] < -eps)
    )
    _fail(file, df, bad, "mean", "0 <= min <= median, mean <= max <= 255 and std >= 0")
    out = pd.DataFrame(
        {
            "id_code": df["id_code"].astype("string"),
            "site_id": (df["id_code"] + "_" + df["site"].str.strip()).astype("string"),
            "experiment": pd.Categorical(df["experiment"]),
            "plate": plate.astype("int8"),
            "well": df["well"].astype("string"),
            "site": site.astype("int8"),
            "channel": channel.astype("int8"),
            **stats,
        }
    )
    dup = out.duplicated(["site_id", "channel"]).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise MetadataError(
            f"{file} line {i + 2}: duplicate row for site {out['site_id'].iloc[i]!r} channel "
            f"{out['channel'].iloc[i]}; expected one row per site and channel"
        )
    result: pd.DataFrame = out
    return result


# --------------------------------------------------------------------------- scanning
@dataclass(frozen=True)
class ScanResult:
    """What :func:`scan_images` found under a data root.

    Attributes:
        sites: one row per site found, sorted like the metadata table, with columns
            ``site_id, id_code, dataset, experiment, cell_type, batch, plate, well, row,
            column, site`` (dtypes as in the metadata table; ``dataset`` is ``NaN`` for the
            full-release layout), ``channels`` (tuple of channel numbers present),
            ``missing`` (tuple of channels absent) and ``complete`` (bool).
        layout: ``'kaggle'`` or ``'full'``.
        unparsed: paths of ``.png`` files whose names are not RxRx1 image names.

    Example:
        >>> import tempfile
        >>> from rxdata.synthetic import SyntheticOptions, generate
        >>> opts = SyntheticOptions.tiny(image_size=8, incomplete_fraction=0.5, seed=1)
        >>> scan = scan_images(generate(tempfile.mkdtemp(), opts))
        >>> len(scan), scan.layout, set(scan.incomplete.missing)
        (336, 'kaggle', {(5, 6)})
    """

    sites: pd.DataFrame
    layout: Layout
    unparsed: tuple[str, ...] = ()

    @property
    def incomplete(self) -> pd.DataFrame:
        """The sites that miss at least one of the six channels."""
        result: pd.DataFrame = self.sites[~self.sites["complete"]].reset_index(drop=True)
        return result

    def __len__(self) -> int:
        return len(self.sites)


def scan_images(root: str | os.PathLike[str]) -> ScanResult:
    """Index the channel PNGs under a data root (either layout) into a site table.

    Every ``*.png`` below ``root`` is parsed with the rules of :func:`parse_image_path`
    (vectorised); files with other names are listed in :attr:`ScanResult.unparsed`
    rather than failing the scan.

    Raises:
        MetadataError: ``root`` holds no recognisable layout.
        ParseError: a well-formed name has an out-of-range plate, site or channel.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "train" / "RPE-01" / "Plate1"
        >>> d.mkdir(parents=True)
        >>> for c in (1, 2, 3, 4):
        ...     _ = (d / f"B02_s2_w{c}.png").write_bytes(b"")
        >>> result = scan_images(d.parents[2])
        >>> result.incomplete[["site_id", "missing"]].to_dict("records")
        [{'site_id': 'RPE-01_1_B02_2', 'missing': (5, 6)}]
    """
    root_s = os.fspath(root)
    layout = detect_layout(root_s)
    prefix = len(root_s.rstrip("/")) + 1
    paths = pd.Series(
        [p[prefix:].replace("\\", "/") for p in _io.walk_files(root_s, ".png")], dtype="string"
    )
    parts = paths.str.extract(_IMAGE_PATH.pattern)
    ok = parts["experiment"].notna().to_numpy(dtype=bool)
    unparsed = tuple(_io.join(root_s, p) for p in paths[~ok])
    parts = parts[ok].reset_index(drop=True)
    rel = paths[ok].reset_index(drop=True)
    for col, allowed in (("plate", PLATES), ("site", SITES), ("channel", CHANNELS)):
        values = parts[col].astype("int64")
        bad = ~values.isin(allowed).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ParseError(
                f"{_io.join(root_s, str(rel.iloc[i]))}: {col} {values.iloc[i]} is outside "
                f"{allowed[0]}..{allowed[-1]}"
            )
        parts[col] = values
    if layout == "full":
        parts["dataset"] = None
    parts["id_code"] = parts["experiment"] + "_" + parts["plate"].astype(str) + "_" + parts["well"]
    parts["site_id"] = parts["id_code"] + "_" + parts["site"].astype(str)
    parts["bit"] = np.left_shift(1, parts["channel"].to_numpy() - 1)
    grouped = (
        parts.groupby(["dataset", "site_id"], dropna=False, sort=False)
        .agg(
            id_code=("id_code", "first"),
            experiment=("experiment", "first"),
            plate=("plate", "first"),
            well=("well", "first"),
            site=("site", "first"),
            mask=("bit", "sum"),  # one file per channel, so the sum is the bitwise or
        )
        .reset_index()
    )
    grouped["well_type"] = "treatment"
    grouped["sirna"] = pd.NA
    grouped["sirna_id"] = pd.NA
    table = _finish(grouped, extra=["mask"]).drop(columns=["well_type", "sirna", "sirna_id"])
    mask_arr = table.pop("mask").to_numpy(dtype=np.int64)
    channel_sets = {m: tuple(c for c in CHANNELS if m >> (c - 1) & 1) for m in np.unique(mask_arr)}
    missing_sets = {
        m: tuple(c for c in CHANNELS if not m >> (c - 1) & 1) for m in np.unique(mask_arr)
    }
    table["channels"] = pd.Series([channel_sets[m] for m in mask_arr], dtype=object)
    table["missing"] = pd.Series([missing_sets[m] for m in mask_arr], dtype=object)
    table["complete"] = mask_arr == (1 << len(CHANNELS)) - 1
    return ScanResult(table, layout, unparsed)


def find_metadata(images_root: str | os.PathLike[str]) -> str:
    """The metadata folder inside or beside ``images_root``.

    Looks for ``metadata.csv``, ``train.csv`` or ``test.csv`` in ``images_root``, its
    ``metadata/`` folder, its parent, and the parent's ``metadata/`` folder, in this order.

    Raises:
        MetadataError: None of them holds metadata.

    Example:
        >>> import os
        >>> os.makedirs("data/images"); open("data/metadata.csv", "w").close()
        >>> os.path.basename(find_metadata("data/images"))
        'data'
    """
    images_root = os.fspath(images_root)
    names = ("metadata.csv", "train.csv", "test.csv")
    root = images_root.rstrip("/") or images_root
    parent = _io.parent(root)
    candidates = [root, _io.join(root, "metadata"), parent, _io.join(parent, "metadata")]
    for folder in candidates:
        if any(_io.exists(_io.join(folder, n)) for n in names):
            return folder
    raise MetadataError(
        f"no metadata found beside or inside {images_root} (looked for "
        f"{', '.join(names)} in {', '.join(candidates)}); pass metadata= "
        "(--metadata PATH)"
    )

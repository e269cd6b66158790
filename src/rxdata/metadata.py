r"""The RxRx1 metadata tables: ``read_metadata``, ``read_pixel_stats``, ``scan_images``.

Contract (shared by every rxdata module, see CONTRIBUTING.md):

* :func:`read_metadata` returns one row per **site** with exactly the columns, dtypes and
  sort order of :data:`METADATA_COLUMNS` (see the table in CONTRIBUTING.md).
* Labels: ``sirna_id`` is the class 0..1138: 0..1107 treatments, 1108..1137 positive
  controls, 1138 the negative control (untreated well). The Kaggle re-release writes
  labels as names ``sirna_N`` and ``UNTREATED`` in its own numbering (``sirna_N`` is not
  class ``N``), mapped through :func:`rerelease_names`; the full release gives
  ``sirna_id`` directly.
* Names (constants, keys, parsers, experiment spellings, image paths) belong to
  :mod:`rxdata.naming`, the re-release's label names to :mod:`rxdata.labels`, and the
  layout of a data root on disk to :mod:`rxdata.roots`; import them from there.

Nothing here imports TensorFlow; remote paths go through :mod:`rxdata._io`.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "train.csv").write_text(
    ...     "id_code,experiment,plate,well,sirna\nHEPG2-01_1_B03,HEPG2-01,1,B03,513\n")
    >>> read_metadata(d, datasets=("train",))["site_id"].tolist()
    ['HEPG2-01_1_B03_1', 'HEPG2-01_1_B03_2']
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rxdata import _io
from rxdata.errors import MetadataError, ParseError, option_text
from rxdata.labels import (
    REREL_NAME_PATTERN,
    LabelRelease,
    rerelease_ids,
)
from rxdata.naming import (
    CELL_TYPES,
    CHANNELS,
    DATASETS,
    EXPERIMENT_PATTERN,
    IMAGE_PATH_PATTERN,
    KAGGLE_FILES,
    NEGATIVE_CONTROL_ID,
    NUM_CLASSES,
    NUM_TREATMENTS,
    PLATES,
    SITES,
    WELL_TYPES,
    Layout,
    normalize_experiment,
    parse_experiment,
)
from rxdata.roots import detect_layout

__all__ = [
    "FULL_RELEASE_COLUMNS",
    "METADATA_COLUMNS",
    "PIXEL_STATS_COLUMNS",
    "ScanResult",
    "read_metadata",
    "read_pixel_stats",
    "scan_images",
]

# --------------------------------------------------------------------------- tables
_EXPERIMENT = re.compile(rf"^{EXPERIMENT_PATTERN}$")
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


def _fail(file: str, df: pd.DataFrame, mask: Any, column: str, expected: str) -> None:
    """Raise a MetadataError naming the first offending rows (CSV line numbers)."""
    bad = np.flatnonzero(np.asarray(mask, dtype=bool))
    if bad.size == 0:
        return
    shown = ", ".join(
        f"line {int(df.index[i]) + 2}: {_shown(df[column].iloc[i])}"
        if column in df
        else f"line {i + 2}"
        for i in bad[:5]
    )
    more = f" (and {bad.size - 5} more)" if bad.size > 5 else ""
    raise MetadataError(f"{file}: bad {column} {shown}{more}; expected {expected}")


def _shown(value: object) -> str:
    return "(empty)" if value is None or value is pd.NA or value != value else repr(value)


def _check_field_counts(path: str, text: str) -> None:
    """Refuse rows with more or fewer fields than the header (pandas would shift or pad them)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return
    counts = np.fromiter(map(len, reader), dtype=np.int64)
    bad = np.flatnonzero((counts != len(header)) & (counts != 0))
    if bad.size == 0:
        return
    # the slow path, only on failure: the physical line (quoted fields may span lines)
    reader = csv.reader(io.StringIO(text))
    for i, row in enumerate(reader):
        if i == bad[0] + 1:
            raise MetadataError(
                f"{path} line {reader.line_num}: {len(row)} fields, expected {len(header)} "
                f"(the header's {header}); remove the extra fields or fill in the missing ones"
                + (f" ({bad.size} such rows)" if bad.size > 1 else "")
            )


def _read_csv(path: str) -> pd.DataFrame:
    try:
        data = _io.read_bytes(path)
    except FileNotFoundError:
        raise MetadataError(f"{path}: file not found") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise MetadataError(f"{path}: not a UTF-8 CSV ({err})") from None
    _check_field_counts(path, text)
    try:
        return pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""], index_col=False
        )
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
    # at most 9 significant digits: int64 cannot overflow, and no range here needs more
    ok = s.str.fullmatch(r"\s*0*\d{1,9}\s*").fillna(False).to_numpy(dtype=bool)
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


def _labels(
    file: str, df: pd.DataFrame, *, required: bool
) -> tuple[pd.Series, pd.Series, LabelRelease | None]:
    """Map a Kaggle ``sirna`` column to class ids, and say which release wrote it.

    The competition CSVs write class ids (``513``; ``1138`` untreated). The re-release
    writes its own names (``sirna_332`` is class 0, ``UNTREATED`` 1138), mapped through
    :func:`rerelease_names`: ``sirna_N`` is never read as ``N``. One file uses one style.
    ``required``: every row must be labelled (train and control files).
    """
    sirna = df["sirna"].astype("string")
    given = sirna.notna().to_numpy(dtype=bool)
    if required:
        _fail(file, df, ~given, "sirna", "a label on every row (this file's wells are labelled)")
    integer = sirna.str.fullmatch(r"\d{1,9}").fillna(False).to_numpy(dtype=bool)
    named = sirna.str.fullmatch(REREL_NAME_PATTERN).fillna(False).to_numpy(dtype=bool)
    _fail(
        file,
        df,
        given & ~integer & ~named,
        "sirna",
        f"a class id 0..{NUM_CLASSES - 1} (competition CSVs) or a re-release name such as "
        "'sirna_332' or 'UNTREATED'",
    )
    if integer.any() and named.any():
        i, j = int(np.flatnonzero(integer)[0]), int(np.flatnonzero(named)[0])
        raise MetadataError(
            f"{file}: mixes label styles: line {i + 2} {sirna.iloc[i]!r} is a competition class "
            f"id, line {j + 2} {sirna.iloc[j]!r} a re-release name; expected one style per "
            "file (the re-release renumbered the labels, so the two cannot be mixed)"
        )
    if named.any():
        ids = sirna.map(rerelease_ids()).astype("Int64")
        _fail(
            file,
            df,
            given & ids.isna().to_numpy(dtype=bool),
            "sirna",
            "one of the re-release's 1,139 names (rxdata.labels.rerelease_names())",
        )
        return sirna, ids, "rerelease"
    ids = pd.to_numeric(sirna, errors="coerce").astype("Int64")
    _fail(
        file,
        df,
        ((ids < 0) | (ids >= NUM_CLASSES)).fillna(False),
        "sirna",
        f"a class id in 0..{NUM_CLASSES - 1}",
    )
    return sirna, ids, ("competition" if integer.any() else None)


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
    # each distinct name once (51 experiments for 125,510 sites), then spread with isin
    names = df["experiment"].dropna().unique()
    matches = ((n, _EXPERIMENT.match(n)) for n in names)
    good = [n for n, m in matches if m is not None and m["cell_type"] in CELL_TYPES]
    ok = df["experiment"].isin(good).to_numpy(dtype=bool)
    _fail(
        file,
        df,
        ~ok,
        "experiment",
        f"'{{CELLTYPE}}-{{batch}}' with a cell type in {CELL_TYPES}, e.g. 'HEPG2-01'",
    )


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


def _well_table(
    file: str, df: pd.DataFrame, dataset: str, controls: bool
) -> tuple[pd.DataFrame, LabelRelease | None]:
    """Validate one Kaggle CSV; return its wells in a common shape and its label release."""
    labelled = controls or dataset == "train"
    _require(file, df, ["id_code", "experiment", "plate", "well", *(["sirna"] if labelled else [])])
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
    release: LabelRelease | None = None
    if "sirna" in df:
        sirna, ids, release = _labels(file, df, required=labelled)
    else:
        sirna = pd.Series(pd.NA, index=df.index, dtype="string")
        ids = pd.Series(pd.NA, index=df.index, dtype="Int64")
    out["sirna"] = sirna
    out["sirna_id"] = ids
    derived = _well_types_from_ids(ids)
    if controls and "well_type" in df:
        wt = df["well_type"]
        _fail(file, df, ~wt.isin(WELL_TYPES).to_numpy(dtype=bool), "well_type", str(WELL_TYPES))
        has_label = ids.notna().to_numpy(dtype=bool)
        _fail(
            file,
            df,
            has_label & (wt.to_numpy(dtype=object) != derived),
            "well_type",
            "the type implied by sirna (class 1108..1137 positive, 1138 negative control)",
        )
        out["well_type"] = wt.to_numpy(dtype=object)
    else:
        out["well_type"] = derived
    out["_line"] = df.index.to_numpy() + 2
    out["_file"] = file
    return out, release


def _normalized_ids(experiment: pd.Series, *rest: pd.Series) -> pd.Series:
    """``{experiment}_{plate}_{well}[_{site}]`` with the experiment's canonical spelling."""
    spelling = {e: normalize_experiment(e) for e in experiment.unique()}
    key: pd.Series = experiment.map(spelling)
    for part in rest:
        key = key + "_" + part.astype(str)
    return key


def _refuse_duplicates(table: pd.DataFrame, key: pd.Series, what: str, shown: str) -> None:
    """Raise on the first repeated ``key`` (one site or well), naming both files and lines."""
    dup = key.duplicated(keep="first").to_numpy()
    if not dup.any():
        return
    i = int(np.flatnonzero(dup)[0])
    first = int(np.flatnonzero((key == key.iloc[i]).to_numpy())[0])
    this, that = table[shown].iloc[i], table[shown].iloc[first]
    spelled = (
        ""
        if this == that
        else f" (spelled {that!r} there; HUVEC-1 and HUVEC-01 are the same experiment)"
    )
    raise MetadataError(
        f"{table['_file'].iloc[i]} line {table['_line'].iloc[i]}: duplicate {shown} {this!r} "
        f"(first seen in {table['_file'].iloc[first]} line {table['_line'].iloc[first]})"
        f"{spelled}; expected each {what} once"
    )


def _refuse_two_spellings(table: pd.DataFrame) -> None:
    """Refuse one experiment written two ways (``HUVEC-1`` and ``HUVEC-01``).

    Everything that groups by experiment (splits, normalization) would split it in two.
    """
    first = table.drop_duplicates("experiment")
    canonical = first["experiment"].map(normalize_experiment)
    twice = canonical.duplicated(keep=False).to_numpy()
    if twice.any():
        rows = first[twice & (canonical == canonical[twice].iloc[0]).to_numpy()]
        where = ", ".join(
            f"{e!r} ({f} line {n})"
            for e, f, n in zip(rows["experiment"], rows["_file"], rows["_line"], strict=True)
        )
        raise MetadataError(
            f"experiment {canonical[twice].iloc[0]} is spelled two ways: {where}; expected one "
            "spelling per experiment (rewrite the file with one of them)"
        )


def _read_kaggle(root: str, datasets: tuple[str, ...]) -> pd.DataFrame:
    present = {name: _io.exists(_io.join(root, name)) for name in KAGGLE_FILES}
    if not any(present.values()):
        raise MetadataError(f"{root}: no Kaggle CSVs found; expected {list(KAGGLE_FILES)}")
    missing = [f"{d}.csv" for d in datasets if not present[f"{d}.csv"]]
    if missing:
        have = tuple(d for d in datasets if present[f"{d}.csv"])
        hint = f"; to read only part on purpose, pass datasets={have!r}" if have else ""
        raise MetadataError(
            f"{root}: missing {', '.join(missing)}; expected a Kaggle metadata folder with "
            f"train.csv and test.csv (plus train_controls.csv, test_controls.csv){hint}"
        )
    parts = []
    releases: dict[str, LabelRelease] = {}
    for dataset in datasets:
        for name, controls in ((f"{dataset}.csv", False), (f"{dataset}_controls.csv", True)):
            if not present[name]:
                continue  # the controls files are optional
            path = _io.join(root, name)
            wells, release = _well_table(path, _read_csv(path), dataset, controls)
            parts.append(wells)
            if release is not None:
                releases[path] = release
    if len(set(releases.values())) > 1:
        (a, ra), (b, rb) = next(
            ((x, y) for x, y in itertools.combinations(releases.items(), 2) if x[1] != y[1])
        )
        raise MetadataError(
            f"{a} has {ra} labels but {b} has {rb} labels; expected one release per folder "
            "(the re-release renumbered the labels: 'sirna_N' is not class N)"
        )
    wells = pd.concat(parts, ignore_index=True)
    key = _normalized_ids(wells["experiment"], wells["plate"], wells["well"])
    _refuse_duplicates(wells, key, "well", "id_code")
    _refuse_two_spellings(wells)
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
    # digits only: '513.7', 'inf' and '1e2' are refused, not rounded or read as 100. The
    # real release labels every site; an empty sirna_id (a held-out copy) reads as <NA>.
    given = df["sirna_id"].notna().to_numpy(dtype=bool)
    ids = pd.Series(pd.NA, index=df.index, dtype="Int64")
    ids[given] = _ints(path, df[given], "sirna_id", range(NUM_CLASSES))
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
    key = _normalized_ids(sites["experiment"], sites["plate"], sites["well"], sites["site"])
    _refuse_duplicates(sites, key, "site", "site_id")
    _refuse_two_spellings(sites)
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


def read_metadata(
    path: str | os.PathLike[str],
    *,
    include_controls: bool = True,
    datasets: str | Sequence[str] = DATASETS,
) -> pd.DataFrame:
    r"""Read RxRx1 metadata into the site table of the contract (one row per site).

    Three sources are read (see docs/metadata.md, "Releases"): the 2019 competition's
    Kaggle CSVs (integer labels), the Kaggle re-release of the same CSVs (labels
    ``sirna_N``/``UNTREATED`` in its own numbering, mapped to the competition's class ids
    through :func:`rerelease_names`; the original name stays in ``sirna``), and the full
    release's ``metadata.csv``. Which Kaggle release a folder holds is told by its label
    values; a folder mixing them is refused.

    Args:
        path: a folder with the Kaggle CSVs (``train.csv`` and ``test.csv``, each with its
            optional ``*_controls.csv``), a folder with the full release's
            ``metadata.csv``, or that file itself. Local or remote (``gs://``).
        include_controls: keep positive/negative control wells (``False`` keeps only
            ``well_type == 'treatment'``).
        datasets: which data sets to read, ``("train", "test")`` by default. A Kaggle
            folder must hold ``{dataset}.csv`` for each; pass ``("train",)`` to read a
            folder with only the training CSVs on purpose. For ``metadata.csv`` the other
            data set's rows are left out.

    Returns:
        A DataFrame with the columns and dtypes of :data:`METADATA_COLUMNS`, sorted by
        dataset (train, test), experiment, plate, well, site, with a fresh RangeIndex.
        Kaggle wells become two rows (sites 1 and 2).

    Raises:
        MetadataError: a missing file or column, a row with extra or missing fields, a
            duplicate well or site (``HUVEC-1`` and ``HUVEC-01`` are one experiment), an
            unknown cell type, a bad plate, well, site, label or well type, an empty
            label where one is required, or two label releases in one folder; the message
            names the file, the CSV line or column, the value and what was expected.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "train.csv").write_text(
        ...     "id_code,experiment,plate,well,sirna\nHEPG2-01_1_B03,HEPG2-01,1,B03,513\n")
        >>> md = read_metadata(d, datasets=("train",))
        >>> md[["site_id", "cell_type", "sirna_id"]].to_dict("records")[1]
        {'site_id': 'HEPG2-01_1_B03_2', 'cell_type': 'HEPG2', 'sirna_id': 513}
        >>> _ = (d / "train.csv").write_text(
        ...     "id_code,experiment,plate,well,sirna\nHEPG2-01_1_B03,HEPG2-01,1,B03,sirna_332\n")
        >>> read_metadata(d, datasets="train")[["sirna", "sirna_id"]].to_dict("records")[0]
        {'sirna': 'sirna_332', 'sirna_id': 0}
    """
    chosen = (datasets,) if isinstance(datasets, str) else tuple(datasets)
    if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(DATASETS):
        raise MetadataError(
            f"datasets={datasets!r}: expected a non-empty subset of {DATASETS}, each once"
        )
    chosen = tuple(d for d in DATASETS if d in chosen)
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
        sites = _read_kaggle(path_s, chosen)
    else:
        raise MetadataError(f"{path_s}: no such metadata folder or file")
    if chosen != DATASETS:
        sites = sites[sites["dataset"].isin(chosen).to_numpy(dtype=bool)]
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
    parts = paths.str.extract(IMAGE_PATH_PATTERN)
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
        f"{', '.join(names)} in {', '.join(candidates)}); pass "
        f"{option_text('metadata', placeholder='PATH')}"
    )

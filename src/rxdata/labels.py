"""The label spaces of the RxRx1 releases: class ids and the Kaggle re-release's names.

The 2019 competition CSVs label wells with class ids (``sirna`` 0..1138). The later Kaggle
re-release names them ``sirna_N`` and ``UNTREATED`` in its own numbering of all 1,139
labels (positive controls included), so ``sirna_N`` is **not** class ``N``. The exact
correspondence, derived by joining both releases on ``id_code``, ships with rxdata as
package data (``rxdata/data/sirna_rerelease_map.csv``) and is checked when first read.

Example:
    >>> from rxdata.labels import from_rerelease_names, to_rerelease_names
    >>> to_rerelease_names([0]).tolist(), from_rerelease_names(["sirna_332"]).tolist()
    (['sirna_332'], [0])
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from types import MappingProxyType
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from rxdata.errors import MetadataError, ParseError
from rxdata.naming import NEGATIVE_CONTROL_ID, NUM_CLASSES

__all__ = [
    "REREL_NAME_PATTERN",
    "LabelRelease",
    "from_rerelease_names",
    "label_release_of",
    "rerelease_ids",
    "rerelease_names",
    "to_rerelease_names",
]

#: The Kaggle re-release's label names against the competition's class ids (1,139 rows
#: ``rerelease_sirna, sirna_id``), shipped as package data. Derived by joining both releases
#: on ``id_code``; the re-release renumbered every label, so ``sirna_N`` is NOT class ``N``.
_REREL_FILE = "data/sirna_rerelease_map.csv"
#: A re-release label name: ``sirna_N`` or ``UNTREATED``.
REREL_NAME_PATTERN = r"sirna_\d+|UNTREATED"
_REREL_NAME = re.compile(REREL_NAME_PATTERN)
#: Which Kaggle release wrote a CSV's labels: the 2019 competition (class ids) or the
#: re-release (its own ``sirna_N`` names, see :func:`rerelease_names`).
LabelRelease = Literal["competition", "rerelease"]


@functools.cache
def _rerelease_map() -> tuple[tuple[str, ...], Mapping[str, int]]:
    """Load and check the package's re-release map once: (names by id, id by name)."""
    where = f"rxdata/{_REREL_FILE}"
    try:
        text = resources.files("rxdata").joinpath(_REREL_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MetadataError(
            f"{where} is missing from the installed package; reinstall rxdata"
        ) from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != ["rerelease_sirna", "sirna_id"]:
        raise MetadataError(f"{where}: expected the header 'rerelease_sirna,sirna_id'")
    names: dict[int, str] = {}
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        ok = len(row) == 2 and _REREL_NAME.fullmatch(row[0]) and row[1].isdigit()
        if not ok or int(row[1]) in names or row[0] in seen:
            raise MetadataError(
                f"{where} line {line}: {row!r}; expected a new name 'sirna_N'/'UNTREATED' "
                "and a new class id (the map is one-to-one)"
            )
        names[int(row[1])] = row[0]
        seen.add(row[0])
    if sorted(names) != list(range(NUM_CLASSES)) or names[NEGATIVE_CONTROL_ID] != "UNTREATED":
        raise MetadataError(
            f"{where}: expected the {NUM_CLASSES} class ids 0..{NUM_CLASSES - 1} once each, "
            f"with UNTREATED = {NEGATIVE_CONTROL_ID}"
        )
    by_id = tuple(names[i] for i in range(NUM_CLASSES))
    return by_id, MappingProxyType({name: i for i, name in enumerate(by_id)})


def rerelease_names() -> tuple[str, ...]:
    """The Kaggle re-release's label name of every class id (position = ``sirna_id``).

    The re-release of the competition CSVs names labels ``sirna_N`` and the negative
    control ``UNTREATED``, but ``N`` is its own numbering of all 1,139 labels, positive
    controls included: ``sirna_N`` is not class ``N``. The correspondence was derived by
    joining both releases on ``id_code`` and ships with rxdata.

    Example:
        >>> names = rerelease_names()
        >>> len(names), names[0], names[1109], names[NEGATIVE_CONTROL_ID]
        (1139, 'sirna_332', 'sirna_852', 'UNTREATED')
    """
    return _rerelease_map()[0]


def rerelease_ids() -> Mapping[str, int]:
    """The class id of each re-release name (read-only; ``'sirna_332'`` -> 0).

    Example:
        >>> rerelease_ids()["UNTREATED"]
        1138
    """
    return _rerelease_map()[1]


def label_release_of(labels: Iterable[object]) -> LabelRelease | None:
    """Which label space ``labels`` (the metadata's ``sirna`` values) are written in.

    ``"rerelease"`` when a label is a re-release name (``sirna_N``, ``UNTREATED``),
    ``"competition"`` when labels are given otherwise (class ids, or the full release's
    siRNA names next to its ``sirna_id``), ``None`` when no value is a label (a test set's
    empty labels). The one rule behind :attr:`rxdata.Records.label_release`: a conversion
    records it in its manifest.

    Raises:
        MetadataError: Labels of both spaces (``"513"`` beside ``"sirna_332"``).

    Example:
        >>> label_release_of(["sirna_332", None]), label_release_of(["513"])
        ('rerelease', 'competition')
        >>> label_release_of([None, ""]) is None
        True
    """
    import pandas as pd

    named = other = None
    for label in labels:
        if pd.isna(label) or label == "":  # type: ignore[call-overload]
            continue
        if _REREL_NAME.fullmatch(str(label)):
            named = named if named is not None else label
        else:
            other = other if other is not None else label
        if named is not None and other is not None:
            raise MetadataError(
                f"labels in two label spaces: {other!r} is not a re-release name, "
                f"{named!r} is; the re-release renumbered the labels, so one table must "
                "use one release (read_metadata reads each release as it is written)"
            )
    if named is not None:
        return "rerelease"
    return None if other is None else "competition"


def to_rerelease_names(sirna_ids: ArrayLike) -> np.ndarray:
    """Class ids (0..1138) to the re-release's names (``0`` -> ``'sirna_332'``).

    Raises:
        ParseError: a value is not an integer class id in 0..1138 (the message lists them).

    Example:
        >>> to_rerelease_names([0, 1138]).tolist()
        ['sirna_332', 'UNTREATED']
    """
    values = np.asarray(sirna_ids, dtype=object).ravel()
    ok = np.array(
        [
            isinstance(v, int | np.integer)
            and not isinstance(v, bool | np.bool_)
            and 0 <= v < NUM_CLASSES
            for v in values
        ],
        dtype=bool,
    )
    if not ok.all():
        bad = ", ".join(repr(v) for v in values[~ok][:5])
        raise ParseError(f"class ids {bad}: expected integers in 0..{NUM_CLASSES - 1}")
    names = np.asarray(rerelease_names(), dtype=object)
    return np.asarray(names[values.astype(np.int64)], dtype=object)


def from_rerelease_names(names: ArrayLike) -> np.ndarray:
    """The re-release's names to class ids (``'sirna_332'`` -> ``0``, ``'UNTREATED'`` -> 1138).

    Raises:
        ParseError: a value is not one of the re-release's 1,139 names (the message lists them).

    Example:
        >>> from_rerelease_names(["sirna_852", "UNTREATED"]).tolist()
        [1109, 1138]
    """
    ids = _rerelease_map()[1]
    values = np.asarray(names, dtype=object).ravel()
    found = [ids.get(v, -1) if isinstance(v, str) else -1 for v in values]
    out = np.asarray(found, dtype=np.int64)
    if (out < 0).any():
        bad = ", ".join(repr(v) for v in values[out < 0][:5])
        raise ParseError(
            f"labels {bad}: expected re-release names such as 'sirna_332' or 'UNTREATED' "
            "(see rxdata.labels.rerelease_names())"
        )
    return out

"""Batch-effect-aware splits of RxRx1: whole experiments (or other groups) per part.

Every RxRx1 experiment carries its own batch effect, so a random split of sites leaks each
experiment into validation and overstates accuracy. The splits here never cut a group:

- :class:`Split` is a small value: the metadata columns that define a group (``by``, e.g.
  ``("experiment",)``), and for each part name the set of group keys it holds. A split
  knows nothing about rows; it is resolved against a metadata table (the one
  :func:`rxdata.read_metadata` returns, or any frame holding the ``by`` columns) with
  :meth:`Split.assign`, :meth:`Split.select` or :meth:`Split.train_val`.
- Schemes, all reproducible for a ``seed`` (numpy's ``default_rng``):
  :func:`holdout_experiments` (whole experiments held out, balanced across cell types),
  :func:`experiment_folds` (k folds of whole experiments, stratified by cell type),
  :func:`group_split` (any column or columns as the group, e.g. physical plates) and
  :func:`wilds_split` (the WILDS RxRx1 ``official`` scheme).
- Guarantees: a group key belongs to at most one part (checked when a split is built and
  when one is read); :meth:`Split.report` lists experiments shared between parts, cell
  types missing from parts and a count table per part and cell type.
- :func:`write_split` / :func:`read_split` store a split as CSV (the ``by`` columns and a
  ``part`` column, one row per group) so a team shares one split; reading validates it
  and names the offending line.

Group keys are tuples of strings (``str()`` of the metadata values), so ``site`` 1 is the
key ``"1"`` and a split written to CSV reads back equal.

Example:
    >>> import pandas as pd
    >>> import rxdata
    >>> meta = pd.DataFrame({
    ...     "experiment": ["HEPG2-01", "HEPG2-02", "U2OS-01", "U2OS-02"],
    ...     "cell_type": ["HEPG2", "HEPG2", "U2OS", "U2OS"],
    ... })
    >>> split = rxdata.holdout_experiments(meta, per_cell_type=1, seed=0)
    >>> sorted(split.keys("val"))
    [('HEPG2-01',), ('U2OS-01',)]
    >>> split.assign(meta).tolist()
    ['val', 'train', 'val', 'train']
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, cast

import numpy as np
import pandas as pd

from rxdata import _io
from rxdata._text import preview
from rxdata.errors import ParseError, SplitError
from rxdata.naming import normalize_experiment

__all__ = [
    "WILDS_TEST_EXPERIMENTS",
    "WILDS_TRAIN_EXPERIMENTS",
    "WILDS_VAL_EXPERIMENTS",
    "Split",
    "SplitReport",
    "experiment_folds",
    "group_split",
    "holdout_experiments",
    "read_split",
    "wilds_split",
    "write_split",
]

Key = tuple[str, ...]
OnMissing = Literal["allow", "warn", "raise"]

_HEADER = "# rxdata split"
_PART = "part"


def _experiments(cell_type: str, first: int, last: int) -> tuple[str, ...]:
    return tuple(normalize_experiment(f"{cell_type}-{i}") for i in range(first, last + 1))


# The WILDS RxRx1 experiment lists (sources: wilds_split's docstring).
WILDS_TRAIN_EXPERIMENTS: tuple[str, ...] = (
    _experiments("HEPG2", 1, 7)
    + _experiments("HUVEC", 1, 16)
    + _experiments("RPE", 1, 7)
    + _experiments("U2OS", 1, 3)
)
WILDS_VAL_EXPERIMENTS: tuple[str, ...] = ("HEPG2-08", "HUVEC-17", "RPE-08", "U2OS-04")
WILDS_TEST_EXPERIMENTS: tuple[str, ...] = (
    _experiments("HEPG2", 9, 11)
    + _experiments("HUVEC", 18, 24)
    + _experiments("RPE", 9, 11)
    + _experiments("U2OS", 5, 5)
)


def _require_columns(metadata: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in metadata.columns]
    if missing:
        raise SplitError(
            f"{what} needs metadata columns {missing}; the table has {list(metadata.columns)}"
        )


def _row_keys(metadata: pd.DataFrame, by: Sequence[str]) -> pd.MultiIndex | pd.Index:
    """The group key of every row, as strings (an Index for one column, else a MultiIndex)."""
    columns = [metadata[c].astype("string") for c in by]
    if len(columns) == 1:
        return cast("pd.Index", pd.Index(columns[0], dtype="string"))
    return cast("pd.MultiIndex", pd.MultiIndex.from_arrays(columns, names=list(by)))


@dataclass(frozen=True)
class Split:
    """Named parts, each a set of whole groups (by default whole experiments).

    Attributes:
        parts: part name -> group keys; each key is a tuple of strings, one per ``by``
            column (plain strings are accepted for one-column splits). Read-only after
            construction. Part order is kept (it is the order of ``names``).
        by: the metadata columns whose values form a group key.
        scheme: how the split was made (``"holdout"``, ``"folds"``, ``"group"``,
            ``"wilds"``, ``"custom"``); informative only.
        seed: the random seed it was made with, or ``None``.

    Raises:
        SplitError: a key appears in two parts, has the wrong length, or is empty; a part
            name is empty or ``by`` is empty.

    Example:
        >>> split = Split({"train": {"HUVEC-01", "HUVEC-02"}, "val": {"HUVEC-03"}})
        >>> split.names, split.part_of("HUVEC-03")
        (('train', 'val'), 'val')
    """

    parts: Mapping[str, Collection[Key] | Collection[str]]
    by: tuple[str, ...] = ("experiment",)
    scheme: str = "custom"
    seed: int | None = None
    _lookup: Mapping[Key, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by = (self.by,) if isinstance(self.by, str) else tuple(self.by)
        if not by or not all(isinstance(c, str) and c for c in by):
            raise SplitError(f"Split.by must name at least one column, got {self.by!r}")
        lookup: dict[Key, str] = {}
        parts: dict[str, frozenset[Key]] = {}
        for name, keys in self.parts.items():
            if not isinstance(name, str) or not name:
                raise SplitError(f"part names must be non-empty strings, got {name!r}")
            normalized: set[Key] = set()
            for raw in keys:
                key: Key = (raw,) if isinstance(raw, str) else tuple(str(v) for v in raw)
                if len(key) != len(by) or any(v == "" for v in key):
                    raise SplitError(
                        f"part {name!r}: key {raw!r} must hold one non-empty value per "
                        f"column of by={by}"
                    )
                other = lookup.get(key)
                if other is not None and other != name:
                    raise SplitError(
                        f"group {key!r} is in two parts, {other!r} and {name!r}; a group "
                        "(experiment) must be in one part only"
                    )
                lookup[key] = name
                normalized.add(key)
            parts[name] = frozenset(normalized)
        object.__setattr__(self, "by", by)
        object.__setattr__(self, "parts", MappingProxyType(parts))
        object.__setattr__(self, "_lookup", MappingProxyType(lookup))

    def __hash__(self) -> int:
        return hash((frozenset(self._lookup.items()), self.by, self.scheme, self.seed))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name!r}: {len(keys)}" for name, keys in self.parts.items())
        return (
            f"Split(scheme={self.scheme!r}, by={self.by!r}, seed={self.seed!r}, "
            f"groups per part={{{sizes}}})"
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The part names, in order."""
        return tuple(self.parts)

    def keys(self, part: str) -> frozenset[Key]:
        """The group keys of one part (raises ``SplitError`` for an unknown part)."""
        self._check_parts([part])
        return frozenset(self.parts[part])  # type: ignore[arg-type]

    def part_of(self, key: str | Iterable[object]) -> str | None:
        """The part holding a group key, or ``None`` when no part holds it."""
        norm: Key = (key,) if isinstance(key, str) else tuple(str(v) for v in key)
        return self._lookup.get(norm)

    def _check_parts(self, parts: Iterable[str]) -> None:
        unknown = [p for p in parts if p not in self.parts]
        if unknown:
            raise SplitError(f"unknown part(s) {unknown}; this split has {list(self.names)}")

    def assign(self, metadata: pd.DataFrame, *, strict: bool = False) -> pd.Series:
        """The part of every row of ``metadata`` (``<NA>`` for rows in no part).

        Args:
            metadata: a table holding the ``by`` columns (e.g. from ``read_metadata``).
            strict: also raise when a group of the split is absent from ``metadata``.

        Returns:
            A string Series aligned with ``metadata``'s index.

        Raises:
            SplitError: a ``by`` column is missing, or (``strict``) groups are absent.

        Example:
            >>> import pandas as pd
            >>> meta = pd.DataFrame({"experiment": ["A-01", "A-02", "A-03"]})
            >>> Split({"val": {"A-02"}}).assign(meta).tolist()
            [<NA>, 'val', <NA>]
        """
        _require_columns(metadata, self.by, "Split.assign")
        row_keys = _row_keys(metadata, self.by)
        single = len(self.by) == 1
        mapping: dict[object, str] = {(k[0] if single else k): v for k, v in self._lookup.items()}
        if strict:
            present = set(row_keys)
            absent = sorted(k for k in mapping if k not in present)  # type: ignore[type-var]
            if absent:
                raise SplitError(
                    f"{len(absent)} group(s) of the split are not in the metadata: "
                    f"{preview(absent)}"
                )
        parts = pd.Series(row_keys.map(mapping), index=metadata.index, dtype="string")
        return cast("pd.Series", parts)

    def mask(self, metadata: pd.DataFrame, part: str | Iterable[str]) -> pd.Series:
        """A boolean Series: which rows of ``metadata`` are in ``part`` (one name or several)."""
        wanted = [part] if isinstance(part, str) else list(part)
        self._check_parts(wanted)
        return self.assign(metadata).isin(wanted).fillna(False).astype(bool)

    def select(self, metadata: pd.DataFrame, part: str | Iterable[str]) -> pd.DataFrame:
        """The rows of ``metadata`` in ``part`` (one name or several), in table order.

        Example:
            >>> import pandas as pd
            >>> meta = pd.DataFrame({"experiment": ["A-01", "A-02"], "x": [1, 2]})
            >>> Split({"val": {"A-02"}, "train": {"A-01"}}).select(meta, "val").x.tolist()
            [2]
        """
        return cast("pd.DataFrame", metadata[self.mask(metadata, part)])

    def train_val(
        self, metadata: pd.DataFrame, val: str | Iterable[str]
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rows of every other part (train) and rows of ``val``: one fold of a k-fold split.

        Rows in no part are in neither frame.

        Example:
            >>> import pandas as pd
            >>> meta = pd.DataFrame({"experiment": ["A-01", "A-02", "A-03"]})
            >>> folds = Split({"fold_0": {"A-01"}, "fold_1": {"A-02", "A-03"}})
            >>> train, val = folds.train_val(meta, "fold_0")
            >>> train.experiment.tolist(), val.experiment.tolist()
            (['A-02', 'A-03'], ['A-01'])
        """
        wanted = [val] if isinstance(val, str) else list(val)
        self._check_parts(wanted)
        others = [p for p in self.names if p not in wanted]
        return self.select(metadata, others), self.select(metadata, wanted)

    def counts(self, metadata: pd.DataFrame) -> pd.DataFrame:
        """Counts per part and cell type: experiments, plates, wells, sites, labeled sites.

        Rows are ``(part, cell_type)`` plus an ``(part, "all")`` total per part, in part
        order; rows of ``metadata`` in no part are left out. Columns that the table lacks
        are left out (``plates`` needs ``plate``, ``wells`` needs ``id_code``,
        ``labeled_sites`` needs ``sirna_id``).
        """
        _require_columns(metadata, ("experiment", "cell_type"), "Split.counts")
        frame = metadata.assign(_part=self.assign(metadata)).dropna(subset=["_part"])
        frame = frame.assign(
            _cell=frame["cell_type"].astype("string"),
            _exp=frame["experiment"].astype("string"),
        )
        aggs: dict[str, tuple[str, str]] = {"experiments": ("_exp", "nunique")}
        if "plate" in frame.columns:
            frame = frame.assign(_plate=frame["_exp"] + "/" + frame["plate"].astype("string"))
            aggs["plates"] = ("_plate", "nunique")
        if "id_code" in frame.columns:
            aggs["wells"] = ("id_code", "nunique")
        aggs["sites"] = ("_exp", "size")
        if "sirna_id" in frame.columns:
            frame = frame.assign(_labeled=frame["sirna_id"].notna())
            aggs["labeled_sites"] = ("_labeled", "sum")
        rows = []
        for part in self.names:
            sub = frame[frame["_part"] == part]
            per_cell = sub.groupby("_cell", observed=True, sort=True).agg(**aggs)
            for cell, values in per_cell.iterrows():
                rows.append({"part": part, "cell_type": cell, **values.to_dict()})
            total = sub.assign(_all="all").groupby("_all").agg(**aggs)
            counts = total.iloc[0].to_dict() if len(total) else dict.fromkeys(aggs, 0)
            rows.append({"part": part, "cell_type": "all", **counts})
        table = pd.DataFrame(rows).set_index(["part", "cell_type"])
        return cast("pd.DataFrame", table.astype("int64"))

    def report(self, metadata: pd.DataFrame) -> SplitReport:
        """Check this split against ``metadata`` and summarize it (see :class:`SplitReport`).

        Raises:
            SplitError: a ``by`` column, ``experiment`` or ``cell_type`` is missing.
        """
        _require_columns(metadata, ("experiment", "cell_type"), "Split.report")
        parts = self.assign(metadata)
        frame = pd.DataFrame(
            {
                "part": parts,
                "experiment": metadata["experiment"].astype("string"),
                "cell_type": metadata["cell_type"].astype("string"),
            }
        )
        assigned = frame.dropna(subset=["part"])
        by_exp = assigned.groupby("experiment", observed=True)["part"].unique()
        shared = {
            str(exp): tuple(sorted(str(p) for p in ps)) for exp, ps in by_exp.items() if len(ps) > 1
        }
        all_cells = sorted(set(assigned["cell_type"]))
        missing: dict[str, tuple[str, ...]] = {}
        for part in self.names:
            have = set(assigned.loc[assigned["part"] == part, "cell_type"])
            lacking = tuple(c for c in all_cells if c not in have)
            if lacking:
                missing[part] = lacking
        present = set(_row_keys(metadata, self.by))
        absent = tuple(
            sorted(k for k in self._lookup if (k[0] if len(self.by) == 1 else k) not in present)
        )
        return SplitReport(
            counts=self.counts(metadata),
            shared_experiments=MappingProxyType(shared),
            missing_cell_types=MappingProxyType(missing),
            absent_groups=absent,
            unassigned_rows=int(parts.isna().sum()),
        )


@dataclass(frozen=True, eq=False)
class SplitReport:
    """What a split looks like on one metadata table (from :meth:`Split.report`).

    Attributes:
        counts: :meth:`Split.counts` (experiments, plates, wells, sites per part x cell type).
        shared_experiments: experiment -> the parts it appears in, for experiments in more
            than one part. Empty for experiment-level splits; by design non-empty for
            ``wilds_split`` (train and id_test are two sites of the same experiments) and
            for ``group_split`` on columns finer than the experiment.
        missing_cell_types: part -> cell types present in the split but absent from that
            part (e.g. U2OS in some of 6 folds of the 33 training experiments).
        absent_groups: groups of the split with no row in the metadata.
        unassigned_rows: rows of the metadata in no part.

    Example:
        >>> import pandas as pd
        >>> meta = pd.DataFrame({"experiment": ["RPE-01", "RPE-02", "U2OS-01"],
        ...                      "cell_type": ["RPE", "RPE", "U2OS"]})
        >>> report = Split({"train": {"RPE-01", "U2OS-01"}, "val": {"RPE-02"}}).report(meta)
        >>> report.experiment_disjoint, dict(report.missing_cell_types), report.unassigned_rows
        (True, {'val': ('U2OS',)}, 0)
    """

    counts: pd.DataFrame
    shared_experiments: Mapping[str, tuple[str, ...]]
    missing_cell_types: Mapping[str, tuple[str, ...]]
    absent_groups: tuple[Key, ...]
    unassigned_rows: int

    @property
    def experiment_disjoint(self) -> bool:
        """True when no experiment is in two parts."""
        return not self.shared_experiments

    def __str__(self) -> str:
        lines = [self.counts.to_string()]
        by_parts: dict[tuple[str, ...], list[str]] = {}
        for exp, parts in self.shared_experiments.items():
            by_parts.setdefault(parts, []).append(exp)
        shared = "; ".join(
            f"{len(exps)} in {' and '.join(parts)} ({preview(exps, 4)})"
            for parts, exps in by_parts.items()
        )
        lines.append(f"experiments in two or more parts: {shared or 'none'}")
        for part, cells in self.missing_cell_types.items():
            lines.append(f"part {part!r} has no {', '.join(cells)}")
        if self.absent_groups:
            lines.append(f"groups not in the metadata: {preview(self.absent_groups)}")
        lines.append(f"rows in no part: {self.unassigned_rows}")
        return "\n".join(lines)


def _candidates(metadata: pd.DataFrame, dataset: str | None, what: str) -> pd.DataFrame:
    """Experiment -> cell_type for the experiments a split may use (sorted by name)."""
    _require_columns(metadata, ("experiment", "cell_type"), what)
    frame = metadata
    if dataset is not None and "dataset" in metadata.columns:
        frame = metadata[metadata["dataset"].astype("string") == dataset]
    table = (
        pd.DataFrame(
            {
                "experiment": frame["experiment"].astype("string"),
                "cell_type": frame["cell_type"].astype("string"),
            }
        )
        .drop_duplicates()
        .sort_values(["cell_type", "experiment"], ignore_index=True)
    )
    doubled = table[table["experiment"].duplicated(keep=False)]
    if len(doubled):
        raise SplitError(
            f"{what}: experiments with more than one cell type: "
            f"{preview(sorted(set(doubled['experiment'])))}"
        )
    if table.empty:
        where = "" if dataset is None else f" with dataset == {dataset!r}"
        raise SplitError(f"{what}: the metadata has no experiments{where}")
    return cast("pd.DataFrame", table)


def _by_cell_type(table: pd.DataFrame) -> dict[str, list[str]]:
    return {
        str(cell): sorted(str(e) for e in group["experiment"])
        for cell, group in table.groupby("cell_type", sort=True)
    }


def _handle_missing(message: str, on_missing: OnMissing) -> None:
    if on_missing == "raise":
        raise SplitError(message)
    if on_missing == "warn":
        warnings.warn(message, UserWarning, stacklevel=3)


def holdout_experiments(
    metadata: pd.DataFrame,
    *,
    per_cell_type: int | None = None,
    fraction: float | None = None,
    experiments: Iterable[str] | None = None,
    seed: int = 0,
    dataset: str | None = "train",
    names: tuple[str, str] = ("train", "val"),
) -> Split:
    """Hold out whole experiments, balanced across cell types.

    Give at most one of ``per_cell_type`` (that many experiments of every cell type),
    ``fraction`` (``round(fraction * n)`` of each cell type's ``n`` experiments, at least
    one) or ``experiments`` (exactly these); with none, one experiment per cell type is
    held out. On the 33 Kaggle training experiments, ``per_cell_type=1`` holds out 4
    (one each of HEPG2, HUVEC, RPE, U2OS) and trains on 29.

    Args:
        metadata: table with ``experiment`` and ``cell_type`` (and ``dataset``).
        per_cell_type: experiments held out per cell type.
        fraction: share of each cell type's experiments held out, in (0, 1).
        experiments: explicit experiments to hold out.
        seed: random seed; the same seed and table give the same split.
        dataset: only experiments of this ``dataset`` value take part (``None``, or a
            table without a ``dataset`` column: all).
        names: the names of the kept and held-out parts.

    Returns:
        A :class:`Split` with parts ``names`` (scheme ``"holdout"``).

    Raises:
        SplitError: more than one way given; an experiment asked for does not exist; a
            cell type would have no experiment left to train on.

    Example:
        >>> import pandas as pd
        >>> meta = pd.DataFrame({"experiment": ["RPE-01", "RPE-02", "RPE-03"],
        ...                      "cell_type": ["RPE"] * 3})
        >>> sorted(holdout_experiments(meta, experiments=["RPE-03"]).keys("val"))
        [('RPE-03',)]
    """
    given = [x is not None for x in (per_cell_type, fraction, experiments)]
    if sum(given) > 1:
        raise SplitError("give at most one of per_cell_type, fraction and experiments")
    if len(names) != 2 or names[0] == names[1]:
        raise SplitError(f"names must be two different part names, got {names!r}")
    table = _candidates(metadata, dataset, "holdout_experiments")
    cells = _by_cell_type(table)
    known = set(table["experiment"])
    held: set[str] = set()
    if experiments is not None:
        wanted = [str(e) for e in experiments]
        unknown = [e for e in wanted if e not in known]
        if unknown:
            raise SplitError(
                f"experiment(s) {unknown} are not in the metadata"
                + ("" if dataset is None else f" (dataset == {dataset!r})")
                + f"; known: {preview(sorted(known), 60)}"
            )
        held = set(wanted)
    else:
        if fraction is not None and not 0.0 < fraction < 1.0:
            raise SplitError(f"fraction must be in (0, 1), got {fraction!r}")
        if per_cell_type is not None and per_cell_type < 1:
            raise SplitError(f"per_cell_type must be at least 1, got {per_cell_type!r}")
        rng = np.random.default_rng(seed)
        for cell, exps in cells.items():
            if fraction is not None:
                count = max(1, round(fraction * len(exps)))
            else:
                count = 1 if per_cell_type is None else per_cell_type
            if count >= len(exps):
                raise SplitError(
                    f"cannot hold out {count} of the {len(exps)} {cell} experiment(s) "
                    f"({', '.join(exps)}): none would be left to train on"
                )
            order = rng.permutation(len(exps))
            held.update(exps[i] for i in order[:count])
    kept = known - held
    return Split({names[0]: kept, names[1]: held}, scheme="holdout", seed=seed)


def experiment_folds(
    metadata: pd.DataFrame,
    k: int,
    *,
    seed: int = 0,
    dataset: str | None = "train",
    on_missing: OnMissing = "warn",
) -> Split:
    """K folds of whole experiments, each holding every cell type where counts allow.

    Experiments are shuffled within each cell type, then cell types (largest first) deal
    their experiments round-robin over the folds, starting each time with the folds that
    hold fewest experiments so far. So a cell type with ``n >= k`` experiments is in every
    fold (``n // k`` or ``n // k + 1`` per fold), fold sizes differ by at most one, and a
    cell type with ``n < k`` experiments is in only ``n`` folds.

    On the 33 Kaggle training experiments (HEPG2 7, HUVEC 16, RPE 7, U2OS 3) with ``k=6``,
    as in the winning solution, every fold has 5 or 6 experiments with at least one HEPG2,
    two or three HUVEC and one or two RPE, but U2OS has only 3 experiments, so 3 of
    the 6 folds have no U2OS: validating on those folds says nothing about U2OS. That is
    reported (``on_missing``), not an error; ``k <= 3`` gives every fold every cell type.

    Args:
        metadata: table with ``experiment`` and ``cell_type`` (and ``dataset``).
        k: number of folds, at least 2 and at most the number of experiments.
        seed: random seed; the same seed and table give the same folds.
        dataset: only experiments of this ``dataset`` value take part (``None``, or a
            table without a ``dataset`` column: all).
        on_missing: what to do when some cell type cannot be in every fold: ``"allow"``
            silently, ``"warn"`` (a ``UserWarning`` naming the cell types), ``"raise"`` a
            ``SplitError``.

    Returns:
        A :class:`Split` with parts ``fold_0`` .. ``fold_{k-1}`` (scheme ``"folds"``).

    Raises:
        SplitError: ``k < 2``, ``k`` above the number of experiments, or (with
            ``on_missing="raise"``) a cell type with fewer than ``k`` experiments.

    Example:
        >>> import pandas as pd
        >>> exps = [f"HUVEC-{i:02d}" for i in range(1, 7)]
        >>> meta = pd.DataFrame({"experiment": exps, "cell_type": ["HUVEC"] * 6})
        >>> folds = experiment_folds(meta, 3, seed=1)
        >>> folds.names, [len(folds.keys(f)) for f in folds.names]
        (('fold_0', 'fold_1', 'fold_2'), [2, 2, 2])
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise SplitError(f"k must be an integer of at least 2, got {k!r}")
    if on_missing not in ("allow", "warn", "raise"):
        raise SplitError(f"on_missing must be 'allow', 'warn' or 'raise', got {on_missing!r}")
    table = _candidates(metadata, dataset, "experiment_folds")
    cells = _by_cell_type(table)
    total = sum(len(v) for v in cells.values())
    if k > total:
        raise SplitError(f"cannot make {k} folds of {total} experiment(s): k must be <= {total}")
    short = {c: len(v) for c, v in cells.items() if len(v) < k}
    if short:
        _handle_missing(
            f"{k} folds: "
            + ", ".join(f"{c} has only {n} experiment(s)" for c, n in sorted(short.items()))
            + f", so {'it is' if len(short) == 1 else 'they are'} missing from some folds",
            on_missing,
        )
    rng = np.random.default_rng(seed)
    load = np.zeros(k, dtype=np.int64)
    folds: list[set[str]] = [set() for _ in range(k)]
    for cell in sorted(cells, key=lambda c: (-len(cells[c]), c)):
        exps = cells[cell]
        shuffled = [exps[i] for i in rng.permutation(len(exps))]
        # Folds by current load, ties in random order: the deal fills the emptiest first.
        tiebreak = rng.permutation(k)
        order = sorted(range(k), key=lambda f: (load[f], tiebreak[f]))
        for i, exp in enumerate(shuffled):
            fold = order[i % k]
            folds[fold].add(exp)
            load[fold] += 1
    return Split(
        {f"fold_{i}": keys for i, keys in enumerate(folds)},
        scheme="folds",
        seed=seed,
    )


def group_split(
    metadata: pd.DataFrame,
    by: str | Sequence[str],
    *,
    parts: Mapping[str, float] | int | None = None,
    seed: int = 0,
    dataset: str | None = None,
) -> Split:
    """Split whole groups of rows, a group being the values of one or more columns.

    Columns are taken literally: ``by="plate"`` groups by the plate *number* (1..4), so
    each part holds that plate of every experiment (batch effects leak across parts); for
    physical plates use ``by=["experiment", "plate"]``; ``by="cell_type"`` holds out
    whole cell types. Groups are shuffled, then each goes to the part furthest below its
    target share of rows, so parts match their fractions in rows, not in group counts.

    Args:
        metadata: table holding the ``by`` columns.
        by: one column name or several.
        parts: part name -> fraction (positive, summing to 1), or an integer ``k`` for
            ``k`` equal parts ``fold_0`` .. ``fold_{k-1}``. Default ``{"train": 0.8,
            "val": 0.2}``.
        seed: random seed; the same seed and table give the same split.
        dataset: only rows of this ``dataset`` value take part (``None``: all rows).

    Returns:
        A :class:`Split` over ``by`` (scheme ``"group"``).

    Raises:
        SplitError: a column is missing, fractions are not positive or do not sum to 1,
            or there are fewer groups than parts.

    Example:
        >>> import pandas as pd
        >>> meta = pd.DataFrame({"experiment": ["A-01"] * 4 + ["A-02"] * 4,
        ...                      "plate": [1, 2, 3, 4] * 2})
        >>> split = group_split(meta, ["experiment", "plate"], parts=2, seed=0)
        >>> sorted(len(split.keys(p)) for p in split.names)
        [4, 4]
    """
    columns = (by,) if isinstance(by, str) else tuple(by)
    if not columns:
        raise SplitError("group_split needs at least one column in by")
    if parts is None:
        parts = {"train": 0.8, "val": 0.2}
    if isinstance(parts, (int, np.integer)) and not isinstance(parts, bool):
        if parts < 2:
            raise SplitError(f"parts must be at least 2 when given as a count, got {parts}")
        fractions = {f"fold_{i}": 1.0 / int(parts) for i in range(int(parts))}
    elif isinstance(parts, Mapping):
        fractions = {str(name): float(frac) for name, frac in parts.items()}
    else:
        raise SplitError(f"parts must be a mapping name -> fraction or an int, got {parts!r}")
    if len(fractions) < 2:
        raise SplitError(f"group_split needs at least two parts, got {list(fractions)}")
    bad = {n: f for n, f in fractions.items() if not (f > 0 and math.isfinite(f))}
    if bad:
        raise SplitError(f"part fractions must be positive, got {bad}")
    if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
        raise SplitError(f"part fractions must sum to 1, got {sum(fractions.values())}")
    _require_columns(metadata, columns, "group_split")
    frame = metadata
    if dataset is not None:
        _require_columns(metadata, ("dataset",), f"group_split(dataset={dataset!r})")
        frame = metadata[metadata["dataset"].astype("string") == dataset]
    keys = pd.DataFrame({c: frame[c].astype("string") for c in columns})
    if keys.isna().any().any():
        raise SplitError(f"group_split: columns {list(columns)} hold missing values")
    sizes = keys.groupby(list(columns), sort=True).size()
    if len(sizes) < len(fractions):
        raise SplitError(
            f"group_split by {list(columns)}: {len(sizes)} group(s) cannot fill "
            f"{len(fractions)} parts"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sizes))
    names = list(fractions)
    target = np.array([fractions[n] for n in names]) * float(sizes.sum())
    filled = np.zeros(len(names))
    members: dict[str, list[Key]] = {n: [] for n in names}
    group_keys = list(sizes.index)
    counts = sizes.to_numpy()
    for idx in order:
        raw = group_keys[idx]
        key: Key = tuple(str(v) for v in raw) if isinstance(raw, tuple) else (str(raw),)
        # Empty parts first (so every part gets a group), then the largest deficit.
        empty = np.array([not members[n] for n in names])
        deficit = np.where(empty, np.inf, (target - filled) / target)
        choice = int(np.argmax(deficit))
        members[names[choice]].append(key)
        filled[choice] += counts[idx]
    return Split(members, by=columns, scheme="group", seed=seed)


def wilds_split(
    metadata: pd.DataFrame,
    *,
    on_missing: OnMissing = "raise",
    scheme: Literal["official", "mixed-to-test"] = "official",
) -> Split:
    """The WILDS RxRx1 split (``official`` or ``mixed-to-test``), over ``(experiment, site)``.

    | part | ``official`` (WILDS' default) | ``mixed-to-test`` |
    |---|---|---|
    | ``train`` | site 1 of the 33 training experiments | site 1 of 19 of them + the 14 (1) |
    | ``id_test`` | site 2 of the same 33 | (none) |
    | ``val`` | HEPG2-08, HUVEC-17, RPE-08, U2OS-04 (both sites) | as ``official`` |
    | ``test`` | the other 14 Kaggle test experiments (both sites) | their site 2 |

    (1) less HEPG2-01..03, HUVEC-01..07, RPE-01..03, U2OS-01 (one per test experiment).
    Source: WILDS' ``RxRx1Dataset`` (p-lambda/wilds, ``wilds/datasets/rxrx1_dataset.py``;
    it reads ``dataset`` from its archive's ``metadata.csv``, which rxdata has not read).
    Its ``val`` experiments are the Kaggle public-leaderboard ones (Kaggle discussion
    98075; the 1st-place write-up), one per cell type as WILDS' counts require.
    The Kaggle CSVs label only the controls of ``val``/``test`` (``counts()``'
    ``labeled_sites``); the full release's ``metadata.csv`` labels every well.

    Args:
        metadata: table with ``experiment`` and ``site``. Experiments match on their
            canonical spelling (``HUVEC-1`` is ``HUVEC-01``); the split uses the table's.
        on_missing: when some of the 51 experiments are not in ``metadata``: ``"raise"``
            a ``SplitError`` naming them, ``"warn"``, or ``"allow"`` (the split still
            lists them; :meth:`Split.report` shows them as absent).
        scheme: ``"official"`` or ``"mixed-to-test"``.

    Returns:
        A :class:`Split` by ``("experiment", "site")``, scheme ``"wilds[-mixed-to-test]"``.

    Example:
        >>> import pandas as pd
        >>> meta = pd.DataFrame({"experiment": ["HUVEC-01", "HUVEC-01", "HUVEC-17"],
        ...                      "site": [1, 2, 1]})
        >>> wilds_split(meta, on_missing="allow").assign(meta).tolist()
        ['train', 'id_test', 'val']
        >>> wilds_split(meta, on_missing="allow", scheme="mixed-to-test").assign(meta).tolist()
        [<NA>, <NA>, 'val']
    """
    if on_missing not in ("allow", "warn", "raise"):
        raise SplitError(f"on_missing must be 'allow', 'warn' or 'raise', got {on_missing!r}")
    if scheme not in ("official", "mixed-to-test"):
        raise SplitError(f"scheme must be 'official' or 'mixed-to-test', got {scheme!r}")
    _require_columns(metadata, ("experiment", "site"), "wilds_split")
    # match on the canonical spelling (HUVEC-1 is HUVEC-01), key on the metadata's own
    spelling: dict[str, str] = {}
    for written in metadata["experiment"].astype("string").dropna().unique():
        try:
            spelling.setdefault(normalize_experiment(str(written)), str(written))
        except ParseError:
            continue  # not an RxRx1 experiment name: it cannot be one of WILDS'
    wanted = WILDS_TRAIN_EXPERIMENTS + WILDS_VAL_EXPERIMENTS + WILDS_TEST_EXPERIMENTS
    missing = [e for e in wanted if e not in spelling]
    if missing:
        message = f"{len(missing)} of its 51 experiments are not in the metadata"
        _handle_missing(f"wilds_split: {message}: {preview(missing)}", on_missing)

    def name(exp: str) -> str:
        return spelling.get(exp, exp)

    val = {(name(e), s) for e in WILDS_VAL_EXPERIMENTS for s in ("1", "2")}
    if scheme == "mixed-to-test":  # per test experiment, drop a training one of its type
        n = Counter(e.split("-")[0] for e in WILDS_TEST_EXPERIMENTS)
        dropped = {e for ct in n for e in _experiments(ct, 1, n[ct])}
        kept = [e for e in WILDS_TRAIN_EXPERIMENTS if e not in dropped] + [*WILDS_TEST_EXPERIMENTS]
        mixed = {"train": {(name(e), "1") for e in kept}, "val": val}
        mixed["test"] = {(name(e), "2") for e in WILDS_TEST_EXPERIMENTS}
        return Split(mixed, by=("experiment", "site"), scheme="wilds-mixed-to-test")
    test_names = [name(e) for e in WILDS_TEST_EXPERIMENTS]
    parts = {"train": {(name(e), "1") for e in WILDS_TRAIN_EXPERIMENTS}}
    parts["id_test"] = {(name(e), "2") for e in WILDS_TRAIN_EXPERIMENTS}
    parts["val"], parts["test"] = val, {(e, s) for e in test_names for s in ("1", "2")}
    return Split(parts, by=("experiment", "site"), scheme="wilds")


def write_split(split: Split, path: str | os.PathLike[str]) -> None:
    """Write a split as CSV: a header comment, then the ``by`` columns and ``part``.

    One row per group, sorted by part order then key. The write is atomic (local paths and
    ``gs://``).

    Example:
        >>> import tempfile, os
        >>> split = Split({"train": {"A-01"}, "val": {"A-02"}}, scheme="holdout", seed=3)
        >>> path = os.path.join(tempfile.mkdtemp(), "split.csv")
        >>> write_split(split, path)
        >>> print(open(path).read().strip())
        # rxdata split scheme=holdout seed=3
        experiment,part
        A-01,train
        A-02,val
        >>> read_split(path) == split
        True
    """
    if _PART in split.by:
        raise SplitError(f"a split over a column named {_PART!r} cannot be written")
    rows = [(*key, name) for name in split.names for key in sorted(split.keys(name))]
    frame = pd.DataFrame(rows, columns=[*split.by, _PART], dtype="string")
    seed = "none" if split.seed is None else str(split.seed)
    buffer = io.StringIO()
    buffer.write(f"{_HEADER} scheme={split.scheme} seed={seed}\n")
    frame.to_csv(buffer, index=False, lineterminator="\n")
    _io.write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))


def _parse_header(line: str, path: str) -> tuple[str, int | None]:
    fields: dict[str, str] = {}
    for item in line[len(_HEADER) :].split():
        name, sep, value = item.partition("=")
        if not sep:
            raise SplitError(f"{path}, line 1: malformed header item {item!r} (want name=value)")
        fields[name] = value
    scheme = fields.get("scheme", "custom")
    seed_text = fields.get("seed", "none")
    if seed_text == "none":
        return scheme, None
    try:
        return scheme, int(seed_text)
    except ValueError:
        raise SplitError(
            f"{path}, line 1: seed must be an integer or 'none', got {seed_text!r}"
        ) from None


def read_split(path: str | os.PathLike[str]) -> Split:
    """Read a split written by :func:`write_split` (or any CSV with a ``part`` column).

    The columns other than ``part`` are the ``by`` columns; the optional first line
    ``# rxdata split scheme=... seed=...`` restores scheme and seed.

    Raises:
        FileNotFoundError: the file does not exist.
        SplitError: no ``part`` column, no other column, an empty value, or a group listed
            twice (the message names the CSV line).

    Example:
        >>> import os, tempfile
        >>> import pandas as pd
        >>> path = os.path.join(tempfile.mkdtemp(), "team-split.csv")
        >>> table = pd.DataFrame({"experiment": ["HUVEC-01", "HUVEC-02"], "part": ["train", "val"]})
        >>> table.to_csv(path, index=False)
        >>> split = read_split(path)
        >>> split.part_of("HUVEC-02"), split.scheme
        ('val', 'custom')
        >>> pd.concat([table, table.tail(1)]).to_csv(path, index=False)
        >>> read_split(path)
        Traceback (most recent call last):
        ...
        rxdata.errors.SplitError: ...lines 3, 4: group ['HUVEC-02'] is listed more than once
    """
    path_s = os.fspath(path)
    text = _io.read_bytes(path_s).decode("utf-8")
    scheme, seed, offset = "custom", None, 1
    if text.startswith(_HEADER):
        header, _, text = text.partition("\n")
        scheme, seed = _parse_header(header.rstrip("\r"), path_s)
        offset = 2
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SplitError(f"{path_s}: not a split CSV ({err})") from None
    if _PART not in frame.columns:
        raise SplitError(
            f"{path_s}: no {_PART!r} column; columns are {list(frame.columns)} "
            "(want the group columns, e.g. experiment, and part)"
        )
    by = tuple(str(c) for c in frame.columns if c != _PART)
    if not by:
        raise SplitError(f"{path_s}: no group column besides {_PART!r}")
    # Line numbers: the header line(s), then one line per row.
    lines = np.arange(len(frame)) + offset + 1
    empty = (frame == "").any(axis=1).to_numpy()
    if empty.any():
        bad_row = int(np.argmax(empty))
        row = frame.iloc[bad_row].to_dict()
        raise SplitError(f"{path_s}, line {lines[bad_row]}: empty value in {row}")
    doubled = frame.duplicated(subset=list(by), keep=False).to_numpy()
    if doubled.any():
        where = [int(x) for x in lines[doubled]]
        group = frame.loc[doubled, list(by)].iloc[0].tolist()
        raise SplitError(
            f"{path_s}, lines {preview(where)}: group {group} is listed more than once"
        )
    parts: dict[str, list[Key]] = {}
    keys = frame[list(by)].itertuples(index=False, name=None)
    for key, part in zip(keys, frame[_PART], strict=True):
        parts.setdefault(str(part), []).append(tuple(str(v) for v in key))
    return Split(parts, by=by, scheme=scheme, seed=seed)

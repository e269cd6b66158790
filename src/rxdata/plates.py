"""The RxRx1 plate design, and predictions constrained by it.

RxRx1's 1,108 treatment siRNAs come in **4 groups of 277**: every plate of an experiment
holds exactly one group (plus the same 31 control wells: 30 positive controls, classes
1108..1137, and the untreated well, class 1138), and the 4 plates of an experiment hold
the 4 different groups. Several top-10 Kaggle solutions used this to turn per-well class
probabilities into a much better labelling:

1. :func:`plate_groups` derives the groups from labeled metadata (siRNAs that share a
   plate are in one group: the connected components of the siRNA-plate graph) and the
   group of every labeled plate. On the real training metadata it finds 4 groups of 277.
2. :func:`infer_plate_group` finds the group of unlabeled plates from predictions: the
   group holding most of the predicted probability mass, optionally with the constraint
   that the plates of one experiment hold different groups.
3. :func:`assign_plate` masks the classes outside the plate's group and assigns siRNAs to
   wells with :func:`scipy.optimize.linear_sum_assignment`, so each siRNA is used at most
   once per plate (exactly once for a complete plate); :func:`assign_plates` does both
   steps for every plate of a prediction table keyed by ``id_code``.

:func:`training_sites` picks the labeled sites to train on: treatments, the controls as
extra classes 1108..1138, and optionally the test set's controls, whose labels are public.

Everything here is numpy/pandas/scipy; nothing imports TensorFlow.

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    >>> probs.argmax(axis=1).tolist()  # two wells both get class 0
    [0, 0, 2]
    >>> assign_plate(probs, classes=[0, 1, 2]).tolist()  # each class used once
    [1, 0, 2]
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.special import log_softmax

from rxdata.errors import MetadataError, SubmissionError
from rxdata.naming import NUM_CLASSES, NUM_TREATMENTS

__all__ = [
    "CONTROL_IDS",
    "PlateGroups",
    "assign_plate",
    "assign_plates",
    "infer_plate_group",
    "plate_groups",
    "training_sites",
]

Kind = Literal["probs", "logits"]
PlateKey = tuple[str, int]

#: Class ids of the controls (1108..1137 positive, 1138 negative): on every plate.
CONTROL_IDS: range = range(NUM_TREATMENTS, NUM_CLASSES)

# Probabilities are clipped to this before taking logs: a class a model gives exactly 0
# stays assignable (at a huge cost) instead of making the cost matrix infinite.
_EPS = 1e-12
_WELL_KEY = r"^(?P<experiment>[^_]+)_(?P<plate>\d+)_(?P<well>[A-Za-z]\d{2})(?:_(?P<site>\d+))?$"


@dataclass(frozen=True)
class PlateGroups:
    """The siRNA groups of the RxRx1 plate design and the group of each labeled plate.

    Attributes:
        groups: group number -> the sorted treatment class ids (``sirna_id``) of the group.
            Groups are numbered by their smallest class id, so the numbering does not
            depend on plate order.
        plates: ``(experiment, plate)`` -> group number, for every plate the groups were
            derived from. Read-only.

    Raises:
        MetadataError: a class id in two groups, or a plate mapped to a group that does not
            exist.

    Example:
        >>> groups = PlateGroups(((0, 2), (1, 3)), {("HEPG2-01", 1): 1})
        >>> groups.group_of(3), groups.plate_group("HEPG2-01", 1), groups.sizes
        (1, 1, (2, 2))
    """

    groups: tuple[tuple[int, ...], ...]
    plates: Mapping[PlateKey, int] = field(default_factory=dict)
    _group_of: Mapping[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = tuple(tuple(sorted(int(c) for c in g)) for g in self.groups)
        owner: dict[int, int] = {}
        for number, members in enumerate(groups):
            if not members:
                raise MetadataError(f"plate group {number} is empty")
            for cls in members:
                if cls in owner:
                    raise MetadataError(
                        f"class {cls} is in plate groups {owner[cls]} and {number}; a siRNA "
                        "belongs to one group"
                    )
                owner[cls] = number
        plates = {(str(e), int(p)): int(g) for (e, p), g in self.plates.items()}
        bad = {k: g for k, g in plates.items() if not 0 <= g < len(groups)}
        if bad:
            raise MetadataError(f"plates mapped to unknown groups (have {len(groups)}): {bad}")
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "plates", MappingProxyType(plates))
        object.__setattr__(self, "_group_of", MappingProxyType(owner))

    def __hash__(self) -> int:
        return hash((self.groups, frozenset(self.plates.items())))

    def __repr__(self) -> str:
        return f"PlateGroups(sizes={self.sizes}, plates={len(self.plates)})"

    @property
    def sizes(self) -> tuple[int, ...]:
        """The number of siRNAs in each group."""
        return tuple(len(g) for g in self.groups)

    def group_of(self, sirna_id: int) -> int:
        """The group of a treatment class id (raises ``KeyError`` for one in no group)."""
        return self._group_of[int(sirna_id)]

    def plate_group(self, experiment: str, plate: int) -> int | None:
        """The group of a labeled plate, or ``None`` for a plate the groups do not know."""
        return self.plates.get((str(experiment), int(plate)))

    def classes(self, group: int, *, controls: bool = False) -> NDArray[np.int64]:
        """The class ids of one group (plus the 31 controls with ``controls=True``)."""
        if not 0 <= group < len(self.groups):
            raise IndexError(f"group {group} does not exist; groups are 0..{len(self.groups) - 1}")
        ids = np.array(self.groups[group], dtype=np.int64)
        if controls:
            ids = np.concatenate([ids, np.arange(CONTROL_IDS.start, CONTROL_IDS.stop)])
        return ids

    def mask(
        self, group: int, *, n_classes: int = NUM_CLASSES, controls: bool = False
    ) -> NDArray[np.bool_]:
        """A boolean vector over ``n_classes``: True for the classes a plate of ``group`` holds.

        Example:
            >>> PlateGroups(((0, 2), (1, 3))).mask(0, n_classes=4).tolist()
            [True, False, True, False]
        """
        ids = self.classes(group, controls=controls)
        if ids.size and ids.max() >= n_classes:
            raise IndexError(f"group {group} holds class {ids.max()} >= n_classes={n_classes}")
        out = np.zeros(n_classes, dtype=bool)
        out[ids] = True
        return out

    def sirna_table(self) -> pd.DataFrame:
        """One row per treatment class: ``sirna_id``, ``group``."""
        ids = [c for g in self.groups for c in g]
        numbers = [n for n, g in enumerate(self.groups) for _ in g]
        frame = pd.DataFrame({"sirna_id": ids, "group": numbers}).astype("int64")
        return cast("pd.DataFrame", frame.sort_values("sirna_id", ignore_index=True))

    def plate_table(self) -> pd.DataFrame:
        """One row per known plate: ``experiment``, ``plate``, ``group`` (sorted)."""
        rows = [(e, p, g) for (e, p), g in sorted(self.plates.items())]
        frame = pd.DataFrame(rows, columns=["experiment", "plate", "group"])
        dtypes = {"experiment": "string", "plate": "int64", "group": "int64"}
        return cast("pd.DataFrame", frame.astype(dtypes))


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MetadataError(f"{what} needs columns {missing}; the table has {list(frame.columns)}")


def plate_groups(metadata: pd.DataFrame, *, min_coverage: float = 0.5) -> PlateGroups:
    """Derive the siRNA groups of the plate design from labeled treatment wells.

    Two siRNAs are in one group when some plate holds both; the groups are the connected
    components of that relation (:func:`scipy.sparse.csgraph.connected_components`), so
    incomplete plates (real plates miss up to 6 of their 277 wells) still join up. On the
    real Kaggle training metadata this gives 4 groups of 277 and the group of each of the
    132 training plates.

    Args:
        metadata: the site (or well) table; uses ``experiment``, ``plate``, ``well_type``
            and ``sirna_id`` of the rows with ``well_type == "treatment"`` and a label.
        min_coverage: every plate must hold at least this share of its group's siRNAs. A
            single mislabeled well links two groups into one component twice the size, and
            then each plate covers only about half of it: that is reported instead of
            silently returning a merged group. Default 0.5 (real plates cover > 97%).

    Returns:
        The :class:`PlateGroups`.

    Raises:
        MetadataError: missing columns, no labeled treatment wells, a treatment label
            outside 0..1107, or a plate covering less than ``min_coverage`` of its group
            (the message names the plate).

    Example:
        >>> import pandas as pd
        >>> meta = pd.DataFrame({
        ...     "experiment": ["A-01"] * 4 + ["A-02"] * 4,
        ...     "plate": [1, 1, 2, 2, 1, 1, 2, 2],
        ...     "well_type": ["treatment"] * 8,
        ...     "sirna_id": [5, 7, 6, 8, 6, 8, 5, 7],
        ... })
        >>> groups = plate_groups(meta)
        >>> groups.groups, groups.plate_group("A-02", 1)
        (((5, 7), (6, 8)), 1)
    """
    _require(metadata, ("experiment", "plate", "well_type", "sirna_id"), "plate_groups")
    if not 0.0 < min_coverage <= 1.0:
        raise MetadataError(f"min_coverage must be in (0, 1], got {min_coverage!r}")
    labeled = metadata[
        (metadata["well_type"].astype("string") == "treatment") & metadata["sirna_id"].notna()
    ]
    if labeled.empty:
        raise MetadataError(
            "plate_groups needs labeled treatment wells; the table has none (Kaggle test "
            "treatments are unlabeled: pass the training metadata)"
        )
    ids = labeled["sirna_id"].to_numpy(dtype=np.int64)
    bad = (ids < 0) | (ids >= NUM_TREATMENTS)
    if bad.any():
        row = labeled.iloc[int(np.argmax(bad))]
        raise MetadataError(
            f"treatment well {row.get('id_code', row.name)!r} has sirna_id {int(ids[bad][0])}; "
            f"treatments are 0..{NUM_TREATMENTS - 1}"
        )
    plate_keys = pd.MultiIndex.from_arrays(
        [labeled["experiment"].astype("string"), labeled["plate"].astype("int64")]
    )
    plate_codes, plate_index = pd.factorize(plate_keys)
    class_values, class_codes = np.unique(ids, return_inverse=True)
    n_cls, n_plates = len(class_values), len(plate_index)
    # Bipartite graph classes <-> plates; its components are the groups.
    graph = sparse.coo_matrix(
        (np.ones(len(ids)), (class_codes, n_cls + plate_codes)),
        shape=(n_cls + n_plates, n_cls + n_plates),
    )
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for cls, comp in zip(class_values.tolist(), component[:n_cls].tolist(), strict=True):
        members.setdefault(comp, []).append(cls)
    # Number the groups by their smallest class id.
    order = sorted(members, key=lambda c: min(members[c]))
    number = {comp: i for i, comp in enumerate(order)}
    groups = tuple(tuple(sorted(members[c])) for c in order)
    plates: dict[PlateKey, int] = {}
    per_plate = pd.Series(class_codes).groupby(plate_codes).nunique()
    for code, key in enumerate(plate_index):
        group = number[int(component[n_cls + code])]
        experiment, plate = str(key[0]), int(key[1])
        covered = int(per_plate.loc[code]) / len(groups[group])
        if covered < min_coverage:
            raise MetadataError(
                f"plate {experiment} {plate} holds only {covered:.0%} of the {len(groups[group])} "
                f"siRNAs linked to it; below min_coverage={min_coverage}. A mislabeled well "
                "probably links two plate groups"
            )
        plates[(experiment, plate)] = group
    return PlateGroups(groups, plates)


def _log_scores(values: ArrayLike, kind: Kind, what: str) -> NDArray[np.float64]:
    """Per-row log-probabilities (up to a per-row constant) from probabilities or logits."""
    if kind not in ("probs", "logits"):
        raise SubmissionError(f"kind must be 'probs' or 'logits', got {kind!r}")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise SubmissionError(f"{what} must be 2-D (wells x classes), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise SubmissionError(f"{what} holds NaN or infinite values")
    if kind == "probs":
        if (arr < 0).any():
            raise SubmissionError(f"{what} has negative probabilities; use kind='logits'?")
        return cast("NDArray[np.float64]", np.log(np.clip(arr, _EPS, None)))
    return cast("NDArray[np.float64]", log_softmax(arr, axis=1))


def _check_classes(classes: NDArray[np.int64], n_classes: int) -> None:
    if classes.size == 0:
        raise SubmissionError("no classes to assign")
    if classes.min() < 0 or classes.max() >= n_classes:
        raise SubmissionError(
            f"classes {classes.min()}..{classes.max()} fall outside the {n_classes} prediction "
            "columns"
        )
    if np.unique(classes).size != classes.size:
        raise SubmissionError("classes holds duplicate class ids")


def _group_scores(logp: NDArray[np.float64], groups: PlateGroups) -> NDArray[np.float64]:
    """Rows x groups: log of each row's probability mass in each group (over treatments)."""
    n_classes = logp.shape[1]
    # Work with treatment classes only: control mass is the same for every group.
    masses = []
    for g in range(len(groups.groups)):
        ids = groups.classes(g)
        ids = ids[ids < n_classes]
        masses.append(
            np.logaddexp.reduce(logp[:, ids], axis=1) if ids.size else np.full(len(logp), -np.inf)
        )
    stacked = np.stack(masses, axis=1)
    # Normalize over the groups so rows with little treatment mass do not dominate.
    return cast(
        "NDArray[np.float64]", stacked - np.logaddexp.reduce(stacked, axis=1, keepdims=True)
    )


def _well_keys(index: pd.Index, what: str) -> pd.DataFrame:
    keys = pd.Series(index.astype("string"), dtype="string").str.extract(_WELL_KEY)
    bad = keys["experiment"].isna().to_numpy()
    if bad.any():
        raise SubmissionError(
            f"{what}: index values such as {str(index[int(np.argmax(bad))])!r} are not id_codes "
            "('{experiment}_{plate}_{well}') or site_ids"
        )
    out = pd.DataFrame(
        {"experiment": keys["experiment"].astype("string"), "plate": keys["plate"].astype("int64")}
    )
    return cast("pd.DataFrame", out)


def _as_frame(predictions: pd.DataFrame | pd.Series, what: str) -> pd.DataFrame:
    if not isinstance(predictions, pd.DataFrame):
        raise SubmissionError(
            f"{what} must be a DataFrame indexed by id_code (one column per class, as "
            f"average_sites returns), got {type(predictions).__name__}"
        )
    cols: list[object] = list(predictions.columns)
    if cols != list(range(len(cols))):
        raise SubmissionError(
            f"{what}: columns must be the class ids 0..{len(cols) - 1} in order, got {cols[:5]}..."
        )
    if predictions.index.has_duplicates:
        dup = predictions.index[predictions.index.duplicated()].unique().tolist()
        raise SubmissionError(f"{what}: duplicate index values {dup[:8]}")
    return predictions


def infer_plate_group(
    predictions: pd.DataFrame,
    groups: PlateGroups,
    *,
    kind: Kind = "probs",
    distinct_per_experiment: bool = True,
) -> pd.DataFrame:
    """Infer the siRNA group of each plate from per-well (or per-site) predictions.

    For every row the probability mass of each group is computed over the treatment
    classes; a plate's score for a group is the sum over its rows of the log of that mass
    (the log-likelihood that all its wells come from the group). The plate takes the best
    group; with ``distinct_per_experiment`` the plates of one experiment take different
    groups (a linear assignment over plates x groups), as in the real design.

    Args:
        predictions: DataFrame indexed by ``id_code`` (or ``site_id``), one column per
            class id ``0..C-1`` (``average_sites`` returns this). Only rows of
            treatment wells should be passed; controls carry no group information.
        groups: from :func:`plate_groups` on labeled metadata.
        kind: ``"probs"`` or ``"logits"`` (log-softmax is applied).
        distinct_per_experiment: give the plates of one experiment different groups.

    Returns:
        One row per plate: ``experiment``, ``plate``, ``group``, ``wells`` (rows used) and
        ``margin``: the log-likelihood of the chosen group minus that of the best other
        group (large is confident; near 0 or negative means the plate is ambiguous).

    Raises:
        SubmissionError: bad shapes, non-finite values, index values that are not ids, or
            an experiment with more plates than there are groups.

    Example:
        >>> import numpy as np, pandas as pd
        >>> groups = PlateGroups(((0, 1), (2, 3)))
        >>> probs = pd.DataFrame(
        ...     [[0.5, 0.4, 0.05, 0.05], [0.1, 0.1, 0.1, 0.7]],
        ...     index=["A-01_1_B03", "A-01_2_B03"])
        >>> infer_plate_group(probs, groups)[["plate", "group"]].to_dict("list")
        {'plate': [1, 2], 'group': [0, 1]}
    """
    frame = _as_frame(predictions, "infer_plate_group: predictions")
    logp = _log_scores(frame.to_numpy(), kind, "predictions")
    keys = _well_keys(frame.index, "infer_plate_group")
    row_scores = _group_scores(logp, groups)
    n_groups = len(groups.groups)
    plate_codes, plate_index = pd.factorize(
        pd.MultiIndex.from_arrays([keys["experiment"], keys["plate"]])
    )
    totals = np.zeros((len(plate_index), n_groups))
    np.add.at(totals, plate_codes, row_scores)
    wells = np.bincount(plate_codes, minlength=len(plate_index))
    chosen = totals.argmax(axis=1)
    experiments = np.array([str(k[0]) for k in plate_index], dtype=object)
    if distinct_per_experiment:
        for exp in pd.unique(experiments):
            rows = np.flatnonzero(experiments == exp)
            if len(rows) > n_groups:
                raise SubmissionError(
                    f"experiment {exp} has {len(rows)} plates but there are {n_groups} groups; "
                    "pass distinct_per_experiment=False"
                )
            plate_rows, group_cols = linear_sum_assignment(-totals[rows])
            chosen[rows[plate_rows]] = group_cols
    best = totals[np.arange(len(chosen)), chosen]
    others = totals.copy()
    others[np.arange(len(chosen)), chosen] = -np.inf
    margin = best - others.max(axis=1) if n_groups > 1 else np.full(len(chosen), np.inf)
    result = pd.DataFrame(
        {
            "experiment": pd.array(experiments, dtype="string"),
            "plate": np.array([int(k[1]) for k in plate_index], dtype=np.int64),
            "group": chosen.astype(np.int64),
            "wells": wells.astype(np.int64),
            "margin": margin,
        }
    )
    return cast("pd.DataFrame", result.sort_values(["experiment", "plate"], ignore_index=True))


def assign_plate(
    predictions: ArrayLike,
    groups: PlateGroups | None = None,
    *,
    group: int | None = None,
    classes: Collection[int] | None = None,
    kind: Kind = "probs",
) -> NDArray[np.int64]:
    """Label the wells of one plate so that each siRNA is used at most once.

    The allowed classes are ``classes`` if given, else the plate's ``group`` of
    ``groups`` (inferred from the predictions when ``group`` is ``None``), else all
    treatment classes. The labelling maximizes the summed log-probability of the chosen
    classes subject to "one well per class" (:func:`scipy.optimize.linear_sum_assignment`
    on ``-log p``). A plate may have fewer wells than allowed classes (real plates miss up
    to 6 wells): then some classes go unused.

    Args:
        predictions: wells x classes array of probabilities or logits (columns are class
            ids, ``0..C-1``).
        groups: the plate groups (from :func:`plate_groups`).
        group: this plate's group number, if known.
        classes: explicit allowed class ids (overrides ``groups``/``group``).
        kind: ``"probs"`` or ``"logits"``.

    Returns:
        The class id of each well (int64, one per row).

    Raises:
        SubmissionError: bad shapes or values, or more wells than allowed classes.

    Example:
        >>> import numpy as np
        >>> groups = PlateGroups(((0, 2), (1, 3)))
        >>> probs = np.array([[0.1, 0.5, 0.3, 0.1], [0.1, 0.6, 0.2, 0.1]])
        >>> assign_plate(probs, groups).tolist()  # group 1 fits best: classes 1 and 3
        [3, 1]
        >>> assign_plate(probs, groups, group=0).tolist()
        [2, 0]
    """
    logp = _log_scores(predictions, kind, "predictions")
    n_wells, n_classes = logp.shape
    if classes is not None:
        allowed = np.array(sorted(int(c) for c in classes), dtype=np.int64)
    elif groups is not None:
        if group is None:
            group = int(_group_scores(logp, groups).sum(axis=0).argmax())
        allowed = groups.classes(group)
    else:
        allowed = np.arange(min(NUM_TREATMENTS, n_classes), dtype=np.int64)
    _check_classes(allowed, n_classes)
    if n_wells > allowed.size:
        raise SubmissionError(
            f"a plate with {n_wells} wells cannot use {allowed.size} classes once each; "
            "pass only one plate's treatment wells"
        )
    if n_wells == 0:
        return np.zeros(0, dtype=np.int64)
    rows, cols = linear_sum_assignment(-logp[:, allowed])
    labels = np.empty(n_wells, dtype=np.int64)
    labels[rows] = allowed[cols]
    return labels


def assign_plates(
    predictions: pd.DataFrame,
    groups: PlateGroups,
    *,
    kind: Kind = "probs",
    plate_group: pd.DataFrame | None = None,
) -> pd.Series:
    """Plate-constrained labels for every well of a prediction table keyed by ``id_code``.

    Infers each plate's group (:func:`infer_plate_group`, distinct groups per
    experiment) unless ``plate_group`` gives them, then runs :func:`assign_plate` per
    plate.

    Args:
        predictions: DataFrame indexed by ``id_code``, one column per class id (the
            treatment wells of the test set, after :func:`rxdata.average_sites`).
        groups: from :func:`plate_groups` on labeled metadata.
        kind: ``"probs"`` or ``"logits"``.
        plate_group: optional table ``experiment, plate, group`` fixing the groups.

    Returns:
        A Series ``id_code -> class id`` (int64), in the order of ``predictions``; ready
        for :func:`rxdata.write_submission`.

    Example:
        >>> import pandas as pd
        >>> groups = PlateGroups(((0, 1), (2, 3)))
        >>> probs = pd.DataFrame(
        ...     [[0.4, 0.3, 0.2, 0.1], [0.5, 0.1, 0.3, 0.1]],
        ...     index=["A-01_1_B03", "A-01_1_B04"])
        >>> assign_plates(probs, groups).to_dict()
        {'A-01_1_B03': 1, 'A-01_1_B04': 0}
    """
    frame = _as_frame(predictions, "assign_plates: predictions")
    keys = _well_keys(frame.index, "assign_plates")
    if plate_group is None:
        plate_group = infer_plate_group(frame, groups, kind=kind)
    _require(plate_group, ("experiment", "plate", "group"), "assign_plates: plate_group")
    lookup = {
        (str(e), int(p)): int(g)
        for e, p, g in plate_group[["experiment", "plate", "group"]].itertuples(index=False)
    }
    values = frame.to_numpy()
    labels = np.empty(len(frame), dtype=np.int64)
    plate_keys = list(zip(keys["experiment"].tolist(), keys["plate"].tolist(), strict=True))
    codes, uniques = pd.factorize(pd.Series([f"{e}\0{p}" for e, p in plate_keys]))
    for code, text in enumerate(uniques):
        exp, plate_s = str(text).split("\0")
        key = (exp, int(plate_s))
        if key not in lookup:
            raise SubmissionError(f"plate_group has no group for plate {exp} {plate_s}")
        rows = np.flatnonzero(codes == code)
        labels[rows] = assign_plate(values[rows], groups, group=lookup[key], kind=kind)
    return cast("pd.Series", pd.Series(labels, index=frame.index, name="sirna_id"))


def training_sites(
    metadata: pd.DataFrame,
    *,
    controls: bool = True,
    test_controls: bool = False,
) -> pd.DataFrame:
    """The labeled sites to train on.

    Args:
        metadata: the site table from :func:`rxdata.read_metadata`.
        controls: keep the training set's control wells (classes 1108..1138, a model
            with 1,139 outputs learns them as extra classes).
        test_controls: also keep the *test* set's control wells, whose labels are public
            (``test_controls.csv``): they show the model the test experiments' batch
            effects without leaking any treatment label.

    Returns:
        The selected rows (all columns, original order), every one with a ``sirna_id``.

    Example:
        >>> import pandas as pd
        >>> meta = pd.DataFrame({
        ...     "dataset": ["train", "train", "test", "test"],
        ...     "well_type": ["treatment", "negative_control", "negative_control", "treatment"],
        ...     "sirna_id": pd.array([5, 1138, 1138, None], dtype="Int16"),
        ... })
        >>> training_sites(meta, test_controls=True).index.tolist()
        [0, 1, 2]
    """
    _require(metadata, ("dataset", "well_type", "sirna_id"), "training_sites")
    labeled = metadata["sirna_id"].notna()
    dataset = metadata["dataset"].astype("string")
    is_control = metadata["well_type"].astype("string") != "treatment"
    keep = (dataset == "train") & (controls | ~is_control)
    if test_controls:
        keep |= (dataset == "test") & is_control
    return cast("pd.DataFrame", metadata[(keep & labeled).fillna(False).astype(bool)])

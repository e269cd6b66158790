"""Accuracy as WILDS reports it for RxRx1 (numpy and pandas only, no TensorFlow).

Contract: predictions and true labels are 1-D integer arrays of equal length, one entry
per site (or per well after :func:`rxdata.average_sites`), with a grouping array (the
cell type) of the same length. :func:`accuracy_report` returns the figures WILDS prints
for RxRx1 (Koh et al. 2021, ``wilds/datasets/rxrx1_dataset.py``): the average accuracy,
the accuracy of every cell type, and the worst of them. Compare held-in (ID) with
held-out (OOD) experiments by calling it once on each. :func:`paired_differences`
compares methods scored on the same runs (data sets, held-out choices, model seeds): the
mean difference to a baseline and its 95% t interval.

Example:
    >>> r = accuracy_report([1, 2, 3, 4], [1, 2, 0, 4], ["HUVEC", "HUVEC", "RPE", "RPE"])
    >>> r["acc_avg"], r["acc_worst_cell_type"], r["acc_cell_type:HUVEC"]
    (0.75, 0.5, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from rxdata.errors import OptionsError

__all__ = ["accuracy_by_group", "accuracy_report", "paired_differences"]


def accuracy_by_group(predicted: ArrayLike, truth: ArrayLike, groups: ArrayLike) -> pd.DataFrame:
    """Accuracy and count per group (e.g. cell type), sorted by group name.

    Args:
        predicted: ``(n,)`` predicted labels.
        truth: ``(n,)`` true labels.
        groups: ``(n,)`` group of each entry.

    Returns:
        A DataFrame indexed by group with columns ``n`` and ``accuracy``.

    Raises:
        OptionsError: The arrays are not 1-D of one length, or are empty.

    Example:
        >>> accuracy_by_group([0, 1, 1], [0, 0, 1], ["a", "b", "b"]).to_dict("index")
        {'a': {'n': 1.0, 'accuracy': 1.0}, 'b': {'n': 2.0, 'accuracy': 0.5}}
    """
    p, t, g = (np.asarray(v) for v in (predicted, truth, groups))
    if p.ndim != 1 or p.shape != t.shape or p.shape != g.shape:
        raise OptionsError(
            f"predicted {p.shape}, truth {t.shape} and groups {g.shape} must be 1-D arrays "
            "of one length"
        )
    if len(p) == 0:
        raise OptionsError("no predictions to score (empty arrays)")
    frame = pd.DataFrame({"group": g, "correct": (p == t).astype(float)})
    table = frame.groupby("group").correct.agg(["size", "mean"])
    table.columns = pd.Index(["n", "accuracy"])
    table.index.name = None
    result: pd.DataFrame = table.astype(float).sort_index()
    return result


def accuracy_report(
    predicted: ArrayLike, truth: ArrayLike, cell_types: ArrayLike
) -> dict[str, float]:
    """WILDS-style accuracy: the average, per cell type, and the worst cell type.

    Args:
        predicted: ``(n,)`` predicted labels.
        truth: ``(n,)`` true labels.
        cell_types: ``(n,)`` cell type of each entry.

    Returns:
        ``{"acc_avg", "acc_worst_cell_type", "acc_cell_type:<CT>" for each cell type}``;
        ``acc_avg`` weighs every entry equally, as WILDS does.

    Raises:
        OptionsError: The arrays are not 1-D of one length, or are empty.

    Example:
        >>> accuracy_report([0, 1], [0, 1], ["U2OS", "U2OS"])
        {'acc_avg': 1.0, 'acc_worst_cell_type': 1.0, 'acc_cell_type:U2OS': 1.0}
    """
    table = accuracy_by_group(predicted, truth, cell_types)
    p, t = np.asarray(predicted), np.asarray(truth)
    report = {
        "acc_avg": float((p == t).mean()),
        "acc_worst_cell_type": float(table["accuracy"].min()),
    }
    report.update({f"acc_cell_type:{ct}": float(a) for ct, a in table["accuracy"].items()})
    return report


def paired_differences(
    frame: pd.DataFrame, metric: str, baseline: str, *, on: Sequence[str], by: str = "method"
) -> pd.DataFrame:
    """Each method's mean paired difference to ``baseline`` with a 95% t interval.

    Rows are paired on the columns ``on`` (for example data seed, held-out choice and
    model seed): each method's ``metric`` minus the baseline's in the same run. The
    interval is the mean difference plus or minus Student's t (two-sided 95%, ``n - 1``
    degrees of freedom) times the standard error; a difference is ``established`` when
    its interval excludes 0.

    Args:
        frame: One row per method and run.
        metric: The column compared (e.g. ``"ood_site_acc"``).
        baseline: The ``by`` value every method is compared with.
        on: The columns that identify a run.
        by: The column naming the method.

    Returns:
        A DataFrame indexed by method (in order of first appearance) with columns ``n``,
        ``mean``, ``low``, ``high`` and ``established``; the baseline's row is all 0 and
        not established. With one pair the interval is unbounded (``-inf``/``inf``).

    Raises:
        OptionsError: A column is missing, the baseline is absent, a run lacks the
            baseline, or a method appears twice in one run.

    Example:
        >>> f = pd.DataFrame({"method": ["a", "b"] * 3, "run": [0, 0, 1, 1, 2, 2],
        ...                   "acc": [0.5, 0.6, 0.4, 0.52, 0.6, 0.69]})
        >>> d = paired_differences(f, "acc", "a", on=["run"])
        >>> b = d.loc["b"]
        >>> int(b["n"]), round(float(b["mean"]), 4), bool(b["established"])
        (3, 0.1033, True)
    """
    from scipy.stats import t as student_t

    missing = [c for c in (metric, by, *on) if c not in frame.columns]
    if missing:
        raise OptionsError(f"paired_differences: columns {missing} are not in the table")
    keys = [by, *on]
    if frame.duplicated(keys).any():
        row = frame.loc[frame.duplicated(keys)].iloc[0]
        raise OptionsError(f"paired_differences: {dict(row[keys])} appears more than once")
    wide = frame.pivot(index=list(on), columns=by, values=metric)
    if baseline not in wide.columns:
        raise OptionsError(f"paired_differences: baseline {baseline!r} is not in {by!r}")
    if wide[baseline].isna().any():
        raise OptionsError(
            f"paired_differences: {int(wide[baseline].isna().sum())} run(s) lack the "
            f"baseline {baseline!r}"
        )
    rows = {}
    for method in frame[by].drop_duplicates():
        diff = (wide[method] - wide[baseline]).dropna().to_numpy(dtype=float)
        n = len(diff)
        mean = float(diff.mean()) if n else float("nan")
        if n > 1:
            half = float(student_t.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n))
        else:
            half = float("inf")
        if method == baseline:
            half = 0.0
        low, high = mean - half, mean + half
        rows[method] = {
            "n": n,
            "mean": mean,
            "low": low,
            "high": high,
            "established": bool(method != baseline and (low > 0 or high < 0)),
        }
    result: pd.DataFrame = pd.DataFrame.from_dict(rows, orient="index")
    return result

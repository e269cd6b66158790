"""Accuracy as WILDS reports it for RxRx1 (numpy and pandas only, no TensorFlow).

Contract: predictions and true labels are 1-D integer arrays of equal length, one entry
per site (or per well after :func:`rxdata.average_sites`), with a grouping array (the
cell type) of the same length. :func:`accuracy_report` returns the figures WILDS prints
for RxRx1 (Koh et al. 2021, ``wilds/datasets/rxrx1_dataset.py``): the average accuracy,
the accuracy of every cell type, and the worst of them. Compare held-in (ID) with
held-out (OOD) experiments by calling it once on each.

Example:
    >>> r = accuracy_report([1, 2, 3, 4], [1, 2, 0, 4], ["HUVEC", "HUVEC", "RPE", "RPE"])
    >>> r["acc_avg"], r["acc_worst_cell_type"], r["acc_cell_type:HUVEC"]
    (0.75, 0.5, 1.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from rxdata.errors import OptionsError

__all__ = ["accuracy_by_group", "accuracy_report"]


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

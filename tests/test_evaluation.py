"""WILDS-style accuracy reports."""

from __future__ import annotations

import numpy as np
import pytest

from rxdata.errors import OptionsError
from rxdata.evaluation import accuracy_by_group, accuracy_report


def test_report_has_average_per_cell_type_and_worst() -> None:
    truth = np.array([0, 1, 2, 3, 4, 5])
    predicted = np.array([0, 1, 9, 3, 9, 9])
    cts = np.array(["HEPG2", "HEPG2", "HUVEC", "HUVEC", "U2OS", "U2OS"])
    r = accuracy_report(predicted, truth, cts)
    assert r["acc_avg"] == pytest.approx(0.5)
    assert r["acc_cell_type:HEPG2"] == 1.0
    assert r["acc_cell_type:HUVEC"] == 0.5
    assert r["acc_cell_type:U2OS"] == 0.0
    assert r["acc_worst_cell_type"] == 0.0


def test_average_weighs_entries_not_groups() -> None:
    r = accuracy_report([0, 0, 0, 1], [0, 0, 0, 0], ["a", "a", "a", "b"])
    assert r["acc_avg"] == 0.75  # not (1 + 0) / 2


def test_counts_per_group() -> None:
    t = accuracy_by_group([1, 1, 1], [1, 0, 1], ["x", "y", "y"])
    assert t.loc["y", "n"] == 2 and t.loc["y", "accuracy"] == 0.5


@pytest.mark.parametrize(
    ("p", "t", "g"),
    [([1, 2], [1], ["a", "a"]), ([], [], []), ([[1]], [[1]], [["a"]])],
    ids=["lengths", "empty", "2-d"],
)
def test_bad_inputs(p: list[int], t: list[int], g: list[str]) -> None:
    with pytest.raises(OptionsError):
        accuracy_report(p, t, g)

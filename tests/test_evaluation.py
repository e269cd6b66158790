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


def test_paired_differences_pair_runs_and_give_a_t_interval() -> None:
    import pandas as pd
    from scipy.stats import t

    from rxdata.evaluation import paired_differences

    runs = [(d, h) for d in range(3) for h in range(2)]
    base = [0.5, 0.6, 0.4, 0.55, 0.45, 0.5]  # varies a lot between runs
    gain = [0.02, 0.03, 0.01, 0.02, 0.03, 0.02]  # a small, consistent gain
    rows = []
    for (d, h), b, g in zip(runs, base, gain, strict=True):
        rows += [
            {"method": "controls", "data_seed": d, "heldout": h, "acc": b},
            {"method": "better", "data_seed": d, "heldout": h, "acc": b + g},
            {"method": "noise", "data_seed": d, "heldout": h, "acc": b + (0.05 if h else -0.05)},
        ]
    out = paired_differences(pd.DataFrame(rows), "acc", "controls", on=["data_seed", "heldout"])
    diff = np.array(gain)
    half = t.ppf(0.975, 5) * diff.std(ddof=1) / np.sqrt(6)
    assert out.loc["better", "n"] == 6
    np.testing.assert_allclose(
        out.loc["better", ["low", "high"]].astype(float), [diff.mean() - half, diff.mean() + half]
    )
    assert out.loc["better", "established"]  # paired: the runs' spread cancels
    assert not out.loc["noise", "established"] and not out.loc["controls", "established"]
    assert out.loc["controls", "mean"] == 0.0


def test_paired_differences_refuse_unpaired_tables() -> None:
    import pandas as pd

    from rxdata.evaluation import paired_differences

    f = pd.DataFrame({"method": ["a", "b", "b"], "run": [0, 0, 1], "acc": [0.1, 0.2, 0.3]})
    with pytest.raises(OptionsError, match="lack the baseline"):
        paired_differences(f, "acc", "a", on=["run"])
    with pytest.raises(OptionsError, match="more than once"):
        paired_differences(pd.concat([f, f]), "acc", "a", on=["run"])
    with pytest.raises(OptionsError, match="not in the table"):
        paired_differences(f, "nope", "a", on=["run"])

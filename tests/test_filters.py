"""Tests for rxdata.filters: which sites a dataset keeps, checked before any record is read."""

from __future__ import annotations

import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError
from rxdata.filters import experiment_spelling, feature_in, in_set, split_keys, value_list
from rxdata.naming import CELL_TYPES, WELL_TYPES
from rxdata.splits import Split


@given(st.sampled_from(CELL_TYPES), st.integers(1, 99), st.booleans())
def test_experiments_take_the_records_spelling(cell_type: str, batch: int, padded: bool) -> None:
    given_name = f"{cell_type}-{batch:02d}" if padded else f"{cell_type}-{batch}"
    assert experiment_spelling(given_name, "experiments") == f"{cell_type}-{batch:02d}"


@pytest.mark.parametrize(
    ("name", "message"),
    [("HEPG2_01", "experiments='HEPG2_01'"), ("MCF7-01", "no RxRx1 cell type")],
    ids=["not-an-experiment", "unknown-cell-type"],
)
def test_bad_experiments_name_the_argument(name: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        experiment_spelling(name, "experiments")


def test_value_list_checks_each_kind_against_rxdata() -> None:
    assert value_list(None, "experiments") is None
    assert value_list("RPE-3", "experiments") == ["RPE-03"]
    assert value_list(("HUVEC", "U2OS"), "cell_types") == ["HUVEC", "U2OS"]
    assert value_list(list(WELL_TYPES), "well_types") == list(WELL_TYPES)
    with pytest.raises(OptionsError, match="cell_types is empty; pass None"):
        value_list([], "cell_types")
    with pytest.raises(OptionsError, match=r"cell_types='hepg2': no record holds it"):
        value_list(["hepg2"], "cell_types")  # case matters: the records say HEPG2
    with pytest.raises(OptionsError, match=r"well_types='control'.*negative_control"):
        value_list("control", "well_types")


def test_in_set_and_feature_in_keep_only_the_values() -> None:
    wells = tf.constant(["treatment", "negative_control", "positive_control"])
    assert in_set(wells, ["treatment"]).numpy().tolist() == [True, False, False]
    keep = feature_in(tfr.WELL_TYPE, ["treatment", "positive_control"])
    assert keep({tfr.WELL_TYPE: wells}).numpy().tolist() == [True, False, True]
    # inside tf.data, on one record at a time
    records = tf.data.Dataset.from_tensor_slices({tfr.WELL_TYPE: wells})
    kept = [r[tfr.WELL_TYPE].numpy().decode() for r in records.filter(keep)]
    assert kept == ["treatment", "positive_control"]


def test_split_keys_join_columns_and_spell_experiments() -> None:
    split = Split({"train": {"HEPG2-1", "RPE-02"}, "val": {"U2OS-1"}})
    assert split_keys(split, "train") == (["experiment"], ["HEPG2-01", "RPE-02"])
    assert split_keys(split, ["train", "val"])[1] == ["HEPG2-01", "RPE-02", "U2OS-01"]
    by_plate = Split({"a": {("HEPG2-1", 2)}}, by=("experiment", "plate"))
    assert split_keys(by_plate, "a") == (["experiment", "plate"], ["HEPG2-01\x1f2"])


def test_split_keys_refuse_parts_and_columns_the_records_lack() -> None:
    split = Split({"train": {"HEPG2-01"}})
    with pytest.raises(OptionsError, match=r"part \['test'\] is not in the split's parts"):
        split_keys(split, "test")
    by_row = Split({"a": {"B"}}, by=("row",))
    with pytest.raises(OptionsError, match=r"split groups by \['row'\].*usable"):
        split_keys(by_row, "a")

"""Tests for rxdata.labels: the re-release's ``sirna_N`` names against the class ids."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxdata.errors import MetadataError, ParseError
from rxdata.labels import (
    REREL_NAME_PATTERN,
    from_rerelease_names,
    label_release_of,
    rerelease_ids,
    rerelease_names,
    to_rerelease_names,
)
from rxdata.naming import NEGATIVE_CONTROL_ID, NUM_CLASSES, NUM_TREATMENTS

class_ids = st.lists(st.integers(0, NUM_CLASSES - 1), max_size=50)


def test_every_class_has_one_distinct_name() -> None:
    names = rerelease_names()
    assert len(names) == NUM_CLASSES == len(set(names))
    assert all(re.fullmatch(REREL_NAME_PATTERN, n) for n in names)
    assert names[NEGATIVE_CONTROL_ID] == "UNTREATED"
    assert names.count("UNTREATED") == 1


def test_sirna_n_is_not_class_n() -> None:
    """The re-release renumbered every label: reading ``sirna_N`` as class N is wrong."""
    names = rerelease_names()
    same = [i for i, n in enumerate(names) if n == f"sirna_{i}"]
    assert len(same) < NUM_CLASSES // 10, same[:10]
    assert names[0] == "sirna_332" and names[1109] == "sirna_852"


def test_ids_mapping_is_the_inverse_and_read_only() -> None:
    ids = rerelease_ids()
    assert all(ids[name] == i for i, name in enumerate(rerelease_names()))
    with pytest.raises(TypeError):
        ids["sirna_1"] = 3  # type: ignore[index]


@given(class_ids)
def test_names_round_trip(ids: list[int]) -> None:
    names = to_rerelease_names(ids)
    assert names.dtype == object and len(names) == len(ids)
    np.testing.assert_array_equal(from_rerelease_names(names), np.asarray(ids, np.int64))


def test_numpy_integers_and_arrays_are_accepted() -> None:
    ids = np.array([[0, NUM_TREATMENTS], [NEGATIVE_CONTROL_ID, 5]], dtype=np.int16)
    names = to_rerelease_names(ids)
    assert names.shape == (4,)  # flattened, in order
    assert names[2] == "UNTREATED"
    assert from_rerelease_names(names).tolist() == [0, NUM_TREATMENTS, NEGATIVE_CONTROL_ID, 5]


@pytest.mark.parametrize(
    "bad",
    [[-1], [NUM_CLASSES], [True], [1.0], ["7"], [None]],
    ids=["negative", "too-large", "bool", "float", "str", "none"],
)
def test_bad_class_ids_are_named(bad: list[object]) -> None:
    with pytest.raises(ParseError, match=re.escape(repr(bad[0]))) as err:
        to_rerelease_names(bad)
    assert f"0..{NUM_CLASSES - 1}" in str(err.value)


@pytest.mark.parametrize("bad", ["sirna_99999", "sirna_", "untreated", 332, None])
def test_bad_names_are_named_with_what_was_expected(bad: object) -> None:
    with pytest.raises(ParseError, match=re.escape(repr(bad))) as err:
        from_rerelease_names(["sirna_332", bad])
    assert "rerelease_names()" in str(err.value)


@given(
    st.lists(st.sampled_from([None, "", "UNTREATED", "sirna_332", "sirna_1"]), max_size=8),
    st.lists(st.sampled_from([None, "", "513", "0", "s21721"]), max_size=8),
)
def test_label_space_of_a_column(names: list[str | None], others: list[str | None]) -> None:
    named = any(n for n in names)
    given_other = any(o for o in others)
    if named and given_other:
        with pytest.raises(MetadataError, match="two label spaces"):
            label_release_of(names + others)
        return
    expected = "rerelease" if named else "competition" if given_other else None
    assert label_release_of(pd.Series(names + others, dtype="string")) == expected

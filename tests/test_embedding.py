"""Center-scale and typical variation normalization of embeddings against controls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxdata.embedding import center_scale, tvn
from rxdata.errors import OptionsError, StatsError


def _batches(seed: int, n_groups: int = 3, n: int = 40, d: int = 4) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    # a well-conditioned mixing (rotation x scales 0.5-2): a near-singular one made the
    # data rank-deficient, and tvn rightly dropped the direction (hypothesis found seed 151)
    rotation = np.linalg.qr(rng.normal(size=(d, d)))[0]
    x = rng.normal(size=(n_groups * n, d)) @ (rotation * rng.uniform(0.5, 2.0, size=d))
    groups = np.repeat([f"P{i}" for i in range(n_groups)], n)
    x += np.repeat(rng.normal(scale=5.0, size=(n_groups, d)), n, axis=0)  # batch shifts
    x *= np.repeat(rng.uniform(0.5, 3.0, size=(n_groups, 1)), n, axis=0)  # batch gains
    controls = rng.random(len(x)) < 0.5
    controls[::n] = True  # at least one control per batch
    controls[1::n] = True
    return x, groups, controls


def test_center_scale_gives_each_batchs_controls_zero_mean_unit_sd() -> None:
    x, g, c = _batches(0)
    z = center_scale(x, g, c)
    for group in np.unique(g):
        ref = z[(g == group) & c]
        np.testing.assert_allclose(ref.mean(0), 0.0, atol=1e-9)
        np.testing.assert_allclose(ref.std(0), 1.0, atol=1e-9)


def test_center_scale_removes_a_batch_shift_and_gain_exactly() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(30, 3))
    c = np.arange(30) % 3 == 0
    shifted = base * 4.0 + 7.0
    a = center_scale(base, np.zeros(30), c)
    b = center_scale(shifted, np.zeros(30), c)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_center_only_keeps_the_scale() -> None:
    x, g, c = _batches(2)
    z = center_scale(x, g, c, scale=False)
    for group in np.unique(g):
        rows = g == group
        np.testing.assert_allclose(z[rows], x[rows] - x[rows & c].mean(0))


def test_a_dimension_constant_on_a_batchs_controls_is_centered_not_blown_up() -> None:
    """A ReLU unit silent on every control of one plate: divide by 1 (as StandardScaler).

    Flooring the sd at EPSILON instead multiplied the treatments' values by 1e6, which
    wrecked the benchmark's TVN row; this is the attack that found it.
    """
    rng = np.random.default_rng(6)
    x = np.abs(rng.normal(size=(20, 3)))
    c = np.arange(20) < 10
    x[c, 1] = 0.0  # the unit never fires on this plate's controls
    z = center_scale(x, np.zeros(20), c)
    np.testing.assert_allclose(z[:, 1], x[:, 1])  # centered on 0, not scaled
    assert np.abs(z).max() < 100
    other = x.copy()
    other[c, 1] = np.abs(rng.normal(size=10))  # on another plate its controls do vary
    zt = tvn(np.vstack([x, other]), np.repeat(["a", "b"], 20), np.tile(c, 2))
    assert np.abs(zt).max() < 1e3


def test_inputs_are_not_modified() -> None:
    x, g, c = _batches(3)
    before = x.copy()
    tvn(x, g, c)
    np.testing.assert_array_equal(x, before)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 6), groups=st.integers(1, 4))
def test_tvn_whitens_the_control_embeddings(seed: int, d: int, groups: int) -> None:
    x, g, c = _batches(seed, n_groups=groups, n=10 * d + 20, d=d)
    z = tvn(x, g, c)
    ref = z[c]
    np.testing.assert_allclose(ref.mean(0), 0.0, atol=1e-7)
    np.testing.assert_allclose(np.cov(ref.T, bias=True).reshape(d, d), np.eye(d), atol=1e-6)


def test_tvn_makes_a_direction_controls_never_vary_in_stand_out() -> None:
    rng = np.random.default_rng(4)
    controls = rng.normal(size=(200, 2)) * [10.0, 0.1]  # typical variation along axis 0
    treated = np.array([[10.0, 0.0], [0.0, 1.0]])  # equal raw distance from the controls
    z = tvn(np.vstack([controls, treated]), np.zeros(202), np.arange(202) < 200)
    norms = np.linalg.norm(z[-2:], axis=1)
    assert norms[1] > 5 * norms[0]  # the atypical change is the larger one after TVN


def test_a_batch_without_controls_is_an_error_naming_it() -> None:
    x, g, c = _batches(5)
    c[g == "P1"] = False
    with pytest.raises(StatsError, match="'P1'"):
        center_scale(x, g, c)


@pytest.mark.parametrize(
    ("x", "g", "c", "match"),
    [
        (np.zeros(3), ["a"] * 3, [True] * 3, r"\(n, d\)"),
        (np.zeros((3, 2)), ["a"] * 2, [True] * 3, "one entry per"),
        (np.zeros((3, 2)), ["a"] * 3, [1, 1, 1], "boolean"),
        (np.array([[0.0], [np.nan]]), ["a"] * 2, [True] * 2, "row 1"),
    ],
    ids=["1-d", "short-groups", "int-mask", "nan"],
)
def test_bad_inputs_are_rejected(x: np.ndarray, g: list[str], c: list[bool], match: str) -> None:
    with pytest.raises(OptionsError, match=match):
        center_scale(x, g, c)


def test_tvn_drops_directions_controls_do_not_span() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 8))
    controls = np.zeros(50, bool)
    controls[:5] = True  # 5 controls in 8 dimensions: rank 4 after centering
    z = tvn(x, np.zeros(50), controls)
    assert z.shape == (50, 4)
    np.testing.assert_allclose(np.cov(z[controls].T, bias=True), np.eye(4), atol=1e-6)
    assert np.isfinite(z).all() and np.abs(z).max() < 1e3  # nothing divided by ~0


def test_tvn_needs_two_controls() -> None:
    with pytest.raises(OptionsError, match="at least 2"):
        tvn(np.ones((3, 2)), ["a"] * 3, [True, False, False])

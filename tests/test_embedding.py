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


def test_a_dimension_constant_on_a_batchs_controls_is_floored_not_blown_up() -> None:
    """A ReLU unit silent on every control of one plate: divide by the floor, not by ~0.

    Flooring the sd at EPSILON multiplied the treatments' values by 1e6, which wrecked the
    benchmark's TVN row; this is the attack that found it.
    """
    rng = np.random.default_rng(6)
    x = np.abs(rng.normal(size=(20, 3)))
    c = np.arange(20) < 10
    x[c, 1] = 0.0  # the unit never fires on this plate's controls
    z = center_scale(x, np.zeros(20), c)
    np.testing.assert_allclose(z[:, 1], x[:, 1] / (0.1 * x[:, 1].std()))  # the floor (1 batch)
    assert np.abs(z).max() < 100
    other = x.copy()
    other[c, 1] = np.abs(rng.normal(size=10))  # on another plate its controls do vary
    zt = tvn(np.vstack([x, other]), np.repeat(["a", "b"], 20), np.tile(c, 2))
    assert np.abs(zt).max() < 1e3


def test_a_dimension_constant_everywhere_is_centered_not_scaled() -> None:
    x = np.ones((6, 2))
    x[:, 0] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    z = center_scale(x, np.zeros(6), np.arange(6) < 3)
    np.testing.assert_allclose(z[:, 1], 0.0)


def test_a_unit_firing_on_one_control_is_floored_not_blown_up() -> None:
    """The seed-0 TVN collapse of the batch-effect benchmark, in miniature.

    A ReLU unit fired weakly (1e-5) on 1 of a plate's 62 control sites, so its control
    sd there was 1.4e-6, just above EPSILON; a treatment value of 0.66 became 458,441
    and TVN's whitening spread it over every component (held-out accuracy 0.80 -> 0.20).
    """
    rng = np.random.default_rng(8)
    x = np.abs(rng.normal(size=(200, 3))) * (rng.random((200, 3)) < 0.3)  # sparse ReLU
    g = np.repeat(["a", "b"], 100)
    c = np.tile(np.arange(100) < 62, 2)
    x[:62, 1] = 0.0
    x[0, 1] = 1e-5  # plate a: one control barely fires
    x[70, 1] = 0.66  # a treatment on plate a uses the unit
    unfloored = center_scale(x, g, c, variance_floor=0.0)
    assert np.abs(unfloored).max() > 1e4  # what the floor prevents
    z = center_scale(x, g, c)
    within = np.sqrt((x[:100].var(0) + x[100:].var(0)) / 2)
    assert (np.abs(z) <= np.abs(x).max(0) / (0.1 * within) + 1e-9).all()
    b_rows = g == "b"
    np.testing.assert_allclose(z[b_rows, 0], unfloored[b_rows, 0])  # above the floor: as is
    assert np.isfinite(tvn(x, g, c)).all() and np.abs(tvn(x, g, c)).max() < 1e3


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), groups=st.integers(1, 4))
def test_the_floor_changes_nothing_when_controls_vary_like_the_rest(seed: int, groups: int) -> None:
    x, g, c = _batches(seed, n_groups=groups)  # batch gains 0.5-3: variances within 36x
    np.testing.assert_allclose(center_scale(x, g, c), center_scale(x, g, c, variance_floor=0))


@pytest.mark.parametrize("floor", [-0.1, 1.5, float("nan"), True, "0.01"])
def test_bad_variance_floor_is_rejected(floor: object) -> None:
    x, g, c = _batches(0)
    with pytest.raises(OptionsError, match="variance_floor"):
        center_scale(x, g, c, variance_floor=floor)  # type: ignore[arg-type]


def test_inputs_are_not_modified() -> None:
    x, g, c = _batches(3)
    before = x.copy()
    tvn(x, g, c)
    np.testing.assert_array_equal(x, before)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 6), groups=st.integers(1, 4))
def test_tvn_whitens_the_control_embeddings(seed: int, d: int, groups: int) -> None:
    x, g, c = _batches(seed, n_groups=groups, n=10 * d + 20, d=d)
    z = tvn(x, g, c, align=False)  # the first variant: pooled whitening is the last step
    ref = z[c]
    np.testing.assert_allclose(ref.mean(0), 0.0, atol=1e-7)
    np.testing.assert_allclose(np.cov(ref.T, bias=True).reshape(d, d), np.eye(d), atol=1e-6)


def test_tvn_makes_a_direction_controls_never_vary_in_stand_out() -> None:
    rng = np.random.default_rng(4)
    controls = rng.normal(size=(200, 2)) * [10.0, 0.1]  # typical variation along axis 0
    treated = np.array([[10.0, 0.0], [0.0, 1.0]])  # equal raw distance from the controls
    z = tvn(np.vstack([controls, treated]), np.zeros(202), np.arange(202) < 200)
    assert np.linalg.norm(z[-1]) > 5 * np.linalg.norm(z[-2])  # also after the alignment
    z = tvn(np.vstack([controls, treated]), np.zeros(202), np.arange(202) < 200, align=False)
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
    assert tvn(x, np.zeros(50), controls).shape == (50, 4)
    z = tvn(x, np.zeros(50), controls, align=False)
    assert z.shape == (50, 4)
    np.testing.assert_allclose(np.cov(z[controls].T, bias=True), np.eye(4), atol=1e-6)
    assert np.isfinite(z).all() and np.abs(z).max() < 1e3  # nothing divided by ~0


def test_tvn_needs_two_controls() -> None:
    with pytest.raises(OptionsError, match="at least 2"):
        tvn(np.ones((3, 2)), ["a"] * 3, [True, False, False])


def _efaar_reference(x: np.ndarray, g: np.ndarray, c: np.ndarray, ridge: float) -> np.ndarray:
    """EFAAR's steps written out plainly: PCA whitening on controls, then per batch
    standardize on its controls and multiply by (cov + ridge I) ** -0.5 (no floor)."""
    ref = x[c] - x[c].mean(0)
    w, v = np.linalg.eigh(ref.T @ ref / len(ref))
    w, v = w[::-1], v[:, ::-1]  # by decreasing variance, as tvn orders its components
    z = (x - x[c].mean(0)) @ (v / np.sqrt(w))
    out = np.empty_like(z)
    for b in np.unique(g):
        rows = g == b
        ctrl = z[rows & c]
        s = (z[rows] - ctrl.mean(0)) / ctrl.std(0)
        cov = np.cov(s[c[rows]], rowvar=False) + ridge * np.eye(z.shape[1])
        w2, v2 = np.linalg.eigh(cov)
        out[rows] = s @ (v2 / np.sqrt(w2)) @ v2.T
    return out


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ridge=st.sampled_from([0.1, 0.5, 2.0]))
def test_tvn_follows_the_efaar_steps(seed: int, ridge: float) -> None:
    x, g, c = _batches(seed, n_groups=3, n=60, d=3)
    z = tvn(x, g, c, ridge=ridge, variance_floor=0.0)
    ref = _efaar_reference(x, g, c, ridge)
    # the eigenvector signs may differ: compare up to the sign of each component
    signs = np.sign((z * ref).sum(0))
    np.testing.assert_allclose(z, ref * signs, atol=1e-8)


def test_tvn_alignment_decorrelates_each_batchs_controls() -> None:
    """Two batches whose controls are correlated in different dimensions (a batch effect
    in the covariance, which neither per-batch centering and scaling nor one pooled
    whitening can remove) are decorrelated by the CORAL step, fully as the ridge -> 0."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 3)) @ np.array([[1.0, 0, 0], [0, 1.0, 0.9], [0, 0, 0.45]])
    b = rng.normal(size=(300, 3)) @ np.array([[1.0, 0.9, 0], [0.0, 0.45, 0], [0, 0, 1.0]])
    x, g, c = np.vstack([a, b]), np.repeat(["a", "b"], 300), np.ones(600, bool)

    def correlation(z: np.ndarray) -> float:  # the largest within one batch
        r = [np.abs(np.corrcoef(z[rows].T) - np.eye(3)).max() for rows in (g == "a", g == "b")]
        return float(max(r))

    assert correlation(tvn(x, g, c, align=False)) > 0.7
    assert correlation(tvn(x, g, c)) < 0.5  # EFAAR's ridge 0.5 shrinks, not removes
    assert correlation(tvn(x, g, c, ridge=1e-4)) < 0.01


def test_a_batch_with_one_control_row_is_aligned_by_the_ridge_alone() -> None:
    x, g, c = _batches(4)
    c[g == "P0"] = False
    c[np.flatnonzero(g == "P0")[0]] = True
    assert np.isfinite(tvn(x, g, c)).all()


@pytest.mark.parametrize("ridge", [0, -1.0, True, float("nan"), "0.5"])
def test_bad_ridge_is_rejected(ridge: object) -> None:
    x, g, c = _batches(0)
    with pytest.raises(OptionsError, match="ridge"):
        tvn(x, g, c, ridge=ridge)  # type: ignore[arg-type]

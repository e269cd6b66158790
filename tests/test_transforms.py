"""Tests for rxdata.transforms: the batch arithmetic of make_dataset, each function alone,
against the numpy twins in rxdata.normalization where there is one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError
from rxdata.normalization import ChannelStats, Normalizer
from rxdata.transforms import (
    compiled,
    image_moments,
    jitter_stats,
    random_dihedral,
    standardize,
    standardize_as,
    stats_function,
)

RNG = np.random.default_rng(3)
BATCH = RNG.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)


def _pixel_stats() -> pd.DataFrame:
    rows = [
        {"id_code": f"{e}_{p}_B02", "experiment": e, "plate": p, "well": "B02", "site": 1}
        | {"channel": c, "mean": 10.0 * c + p, "std": 1.0 + c}
        for e in ("HEPG2-01", "U2OS-01")
        for p in (1, 2)
        for c in (1, 2, 3)
    ]
    return pd.DataFrame(rows)


def test_standardize_is_numpy_arithmetic_per_example_and_channel() -> None:
    mean = RNG.uniform(0, 255, (4, 3)).astype(np.float32)
    std = RNG.uniform(1, 50, (4, 3)).astype(np.float32)
    out = standardize(tf.constant(BATCH), tf.constant(mean), tf.constant(std)).numpy()
    expected = (BATCH.astype(np.float32) - mean[:, None, None, :]) / std[:, None, None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_standardize_as_casts_once_at_the_end(dtype: str) -> None:
    mean, std = tf.fill([4, 3], 100.0), tf.fill([4, 3], 7.0)
    out = standardize_as(dtype)(tf.constant(BATCH), mean, std)
    assert out.dtype == tf.as_dtype(dtype)
    np.testing.assert_allclose(
        tf.cast(out, tf.float32).numpy(), standardize(BATCH, mean, std).numpy(), rtol=1e-2
    )


def test_compiled_gives_the_same_numbers() -> None:
    mean, std = tf.fill([4, 3], 3.0), tf.fill([4, 3], 2.0)
    eager = standardize(tf.constant(BATCH), mean, std).numpy()
    jit = compiled(standardize, True)(tf.constant(BATCH), mean, std).numpy()
    np.testing.assert_allclose(jit, eager, rtol=1e-6)


def test_image_moments_match_the_numpy_per_image_normalizer() -> None:
    mean, std = (t.numpy() for t in image_moments(tf.constant(BATCH)))
    np.testing.assert_allclose(mean, BATCH.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(std, BATCH.std(axis=(1, 2)), rtol=1e-4)
    z = standardize(BATCH, mean, std).numpy()
    for i in range(len(BATCH)):
        np.testing.assert_allclose(z[i], Normalizer.per_image().normalize(BATCH[i]), atol=1e-4)


def test_image_moments_floor_a_flat_image_std() -> None:
    flat = np.full((1, 4, 5, 2), 9, np.uint8)
    mean, std = image_moments(tf.constant(flat))
    np.testing.assert_allclose(mean.numpy(), 9.0)
    np.testing.assert_allclose(std.numpy(), 1 / np.sqrt(20.0), rtol=1e-6)  # never a 0 divisor


def test_stats_function_kinds() -> None:
    parsed = {tfr.EXPERIMENT: tf.constant(["HEPG2-01"] * 4), tfr.PLATE: tf.constant([2] * 4)}
    assert stats_function(None, None, 3, "uint8") is None  # no arithmetic for raw bytes
    unit = stats_function(None, None, 3, "float32", jit=False)
    mean, std = unit(parsed, tf.constant(BATCH))
    assert mean.numpy().tolist() == [[0.0] * 3] * 4 and std.numpy().max() == 255.0
    per_image = stats_function(Normalizer.per_image(), (1, 3), 6, "float32", jit=False)
    np.testing.assert_allclose(
        per_image(parsed, tf.constant(BATCH[..., :2]))[0].numpy(),
        BATCH[..., :2].mean(axis=(1, 2)),
        rtol=1e-5,
    )


def test_stats_function_looks_up_each_sites_plate() -> None:
    normalizer = Normalizer.from_pixel_stats(_pixel_stats(), mode="plate")
    by_plate = stats_function(normalizer, (1, 3), 3, "float32", jit=False)
    parsed = {
        tfr.EXPERIMENT: tf.constant(["HEPG2-01", "U2OS-01"]),
        tfr.PLATE: tf.constant([1, 2], tf.int64),
    }
    mean, std = by_plate(parsed, tf.constant(BATCH[:2, ..., :2]))
    for row, (experiment, plate) in enumerate([("HEPG2-01", 1), ("U2OS-01", 2)]):
        expected: ChannelStats = normalizer.stats_for(experiment, plate, (1, 3))
        np.testing.assert_allclose(mean.numpy()[row], expected.mean, rtol=1e-6)
        np.testing.assert_allclose(std.numpy()[row], expected.std, rtol=1e-6)


def test_stats_function_refuses_what_it_cannot_serve() -> None:
    with pytest.raises(OptionsError, match=r"must be an rxdata\.Normalizer"):
        stats_function("plate", None, 3, "float32")  # type: ignore[arg-type]
    normalizer = Normalizer.from_pixel_stats(_pixel_stats(), mode="plate")
    with pytest.raises(OptionsError, match=r"channels \(1, 2, 3\), not \[5\]"):
        stats_function(normalizer, (1, 5), 6, "float32")


def test_random_dihedral_gives_a_symmetry_of_each_image() -> None:
    square = RNG.integers(0, 256, (64, 5, 5, 2), dtype=np.uint8)
    out = random_dihedral(tf.constant(square)).numpy()
    seen = set()
    for x, y in zip(square, out, strict=True):
        views = [np.rot90(x, k, axes=(0, 1)) for k in range(4)]
        views += [np.flip(v, axis=0) for v in views]
        matches = [i for i, v in enumerate(views) if np.array_equal(v, y)]
        assert matches, "not one of the 8 symmetries of the square"
        seen.add(matches[0])
    assert len(seen) >= 4  # 64 images: every symmetry is about as likely


def test_jitter_folds_an_affine_change_into_the_statistics() -> None:
    tf.random.set_seed(5)
    mean, std = tf.fill([8, 3], 50.0), tf.fill([8, 3], 10.0)
    new_mean, new_std = jitter_stats(mean, std, scale=0.2, shift=0.5)
    a = std.numpy() / new_std.numpy()
    b = (mean.numpy() - new_mean.numpy()) * a / std.numpy()
    assert ((a >= 0.8) & (a <= 1.2)).all() and (np.abs(b) <= 0.5).all()
    assert len(np.unique(a)) > 1  # per example and channel, not one draw
    x = tf.constant(BATCH[:1].repeat(8, axis=0)[..., :3])
    z = standardize(x, mean, std).numpy()
    np.testing.assert_allclose(
        standardize(x, new_mean, new_std).numpy(),
        a[:, None, None, :] * z + b[:, None, None, :],
        rtol=1e-4,
        atol=1e-4,
    )
    _, same = jitter_stats(mean, std, scale=0.0, shift=0.0)
    np.testing.assert_allclose(same.numpy(), std.numpy())

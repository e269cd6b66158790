"""Tests for rxdata.transforms: the TensorFlow normalization math and the batch arithmetic
of make_dataset, each function alone, against the numpy twins in rxdata.normalization."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from helpers import plate_stats
from rxdata import tfrecord as tfr
from rxdata import transforms
from rxdata.errors import OptionsError, StatsError
from rxdata.normalization import (
    GLOBAL_PIXEL_STATS,
    ChannelStats,
    Normalizer,
)
from rxdata.normalization import standardize_image as np_standardize_image
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


# --- moved from rxdata.layers: statistics lookups, normalize_fn, standardize_image -------


# --- statistics lookups and normalization --------------------------------------------------


@pytest.mark.parametrize("mode", ["global", "experiment", "plate"])
def test_stats_lookup_matches_numpy(mode):
    n = Normalizer.from_pixel_stats(plate_stats(), mode=mode)
    lookup = transforms.stats_lookup(n, channels=[5, 2])
    exps = ["HEPG2-01", "RPE-03", "U2OS-77", "RPE-03"]
    plates = [2, 3, 1, 9]  # U2OS-77 and RPE-03/9 are unseen: global fallback
    mean, std = lookup(tf.constant(exps), tf.constant(plates, tf.int64))
    assert mean.shape == std.shape == (4, 2)
    for i, (e, p) in enumerate(zip(exps, plates, strict=True)):
        want = n.stats_for(e, p, channels=[5, 2])
        np.testing.assert_array_equal(mean[i].numpy(), want.mean.astype(np.float32))
        np.testing.assert_array_equal(std[i].numpy(), want.std.astype(np.float32))
    m1, _ = lookup(tf.constant("HEPG2-01"), tf.constant(2, tf.int32))
    assert m1.shape == (2,)


def test_stats_lookup_fallback_raise():
    n = Normalizer.from_pixel_stats(plate_stats(), mode="plate", fallback="raise")
    lookup = transforms.stats_lookup(n)
    lookup(tf.constant("RPE-03"), tf.constant(1))  # known: fine
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"fallback='raise'"):
        lookup(tf.constant("RPE-03"), tf.constant(4))
    with pytest.raises(StatsError, match=r"mode='image'"):
        transforms.stats_lookup(Normalizer.per_image())


@pytest.mark.parametrize("mode", ["global", "experiment", "plate", "image"])
def test_normalize_fn_equals_numpy_in_dataset(mode):
    n = Normalizer.from_pixel_stats(plate_stats(), mode=mode)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (4, 6, 5, 6), dtype=np.uint8)
    exps = np.array(["HEPG2-01", "RPE-03", "RPE-03", "HEPG2-09"])
    plates = np.array([1, 2, 3, 1], np.int64)
    fn = transforms.normalize_fn(n)
    ds = tf.data.Dataset.from_tensor_slices((images, exps, plates)).map(fn)
    for got, img, e, p in zip(ds, images, exps, plates, strict=True):
        want = n.normalize(img, str(e), int(p))
        if mode == "image":
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(got.numpy(), want)
    batched = fn(tf.constant(images), tf.constant(exps), tf.constant(plates)).numpy()
    assert batched.shape == images.shape
    np.testing.assert_allclose(batched[1], n.normalize(images[1], "RPE-03", 2), rtol=1e-5)


def test_standardize_image_twin():
    x = np.random.default_rng(3).integers(0, 256, (2, 12, 7, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        transforms.standardize_image(x).numpy(), np_standardize_image(x), rtol=1e-5, atol=1e-5
    )


def test_global_lookup_uses_published_stats():
    mean, std = transforms.stats_lookup(Normalizer.global_())(
        tf.constant(["a", "b"]), tf.constant([1, 2])
    )
    np.testing.assert_array_equal(mean.numpy()[1], GLOBAL_PIXEL_STATS.mean.astype(np.float32))
    np.testing.assert_array_equal(std.numpy()[0], GLOBAL_PIXEL_STATS.std.astype(np.float32))


# --- one home for the arithmetic ------------------------------------------------------------


def test_transforms_does_not_import_layers():
    """The tf.data math lives here; the Keras layers module is never needed to run it."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(transforms.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        f"{node.module}.{alias.name}" if node.module else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert not [name for name in imported if "layers" in name or name.startswith("keras")]


@pytest.mark.parametrize("shape", [(5, 4, 3), (2, 5, 4, 3)], ids=["site", "batch"])
def test_standardize_broadcasts_statistics_of_sites_and_batches(shape):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    mean = rng.uniform(1, 50, (*shape[:-3], 3)).astype(np.float32)
    std = rng.uniform(1, 9, (*shape[:-3], 3)).astype(np.float32)
    got = transforms.standardize(tf.constant(x), tf.constant(mean), tf.constant(std)).numpy()
    want = (x.astype(np.float32) - mean[..., None, None, :]) / std[..., None, None, :]
    np.testing.assert_array_equal(got, want)


def test_image_moments_of_a_site_equal_those_of_a_batch_of_one():
    x = np.random.default_rng(6).integers(0, 256, (7, 5, 2), dtype=np.uint8)
    one = [t.numpy() for t in transforms.image_moments(tf.constant(x))]
    batch = [t.numpy()[0] for t in transforms.image_moments(tf.constant(x[None]))]
    np.testing.assert_array_equal(one[0], batch[0])
    np.testing.assert_array_equal(one[1], batch[1])


@pytest.mark.parametrize("mode", ["global", "plate", "image"])
def test_stats_function_equals_numpy_statistics(mode):
    n = Normalizer.from_pixel_stats(plate_stats(), mode=mode)
    images = np.random.default_rng(7).integers(0, 256, (2, 6, 6, 2), dtype=np.uint8)
    parsed = {"experiment": tf.constant(["RPE-03", "HEPG2-01"]), "plate": tf.constant([2, 1])}
    fn = transforms.stats_function(n, (3, 5), 6, "float32", jit=False)
    mean, std = fn(parsed, tf.constant(images))
    for i, (e, p) in enumerate([("RPE-03", 2), ("HEPG2-01", 1)]):
        want = n.normalize(images[i], e, p, channels=[3, 5]) if mode != "image" else None
        got = transforms.standardize(images[i], mean[i], std[i]).numpy()
        if want is None:
            np.testing.assert_allclose(got, np_standardize_image(images[i]), rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, want)

"""Tests for rxdata.transforms: the TensorFlow normalization math equals the numpy one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from rxdata import transforms
from rxdata.errors import OptionsError, StatsError
from rxdata.normalization import GLOBAL_PIXEL_STATS, Normalizer, standardize_image


def plate_stats() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for exp in ("HEPG2-01", "RPE-03"):
        for plate in (1, 2, 3):
            for ch in range(1, 7):
                rows.append(
                    {
                        "id_code": f"{exp}_{plate}_B02",
                        "experiment": exp,
                        "plate": plate,
                        "well": "B02",
                        "site": 1,
                        "channel": ch,
                        "mean": rng.uniform(2, 40),
                        "std": rng.uniform(1, 9),
                    }
                )
    return pd.DataFrame(rows)


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
        transforms.standardize_image(x).numpy(), standardize_image(x), rtol=1e-5, atol=1e-5
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


def test_image_moments_floor_keeps_blank_channels_finite():
    blank = tf.fill([2, 4, 4, 1], tf.constant(9, tf.uint8))
    mean, std = transforms.image_moments(blank)
    np.testing.assert_array_equal(mean.numpy(), [[9.0], [9.0]])
    np.testing.assert_allclose(std.numpy(), [[0.25], [0.25]])  # 1/sqrt(4*4)
    np.testing.assert_array_equal(transforms.standardize_image(blank).numpy(), 0.0)


def test_image_moments_of_a_site_equal_those_of_a_batch_of_one():
    x = np.random.default_rng(6).integers(0, 256, (7, 5, 2), dtype=np.uint8)
    one = [t.numpy() for t in transforms.image_moments(tf.constant(x))]
    batch = [t.numpy()[0] for t in transforms.image_moments(tf.constant(x[None]))]
    np.testing.assert_array_equal(one[0], batch[0])
    np.testing.assert_array_equal(one[1], batch[1])


def test_stats_function_checks_the_normalizer():
    with pytest.raises(OptionsError, match=r"must be an rxdata\.Normalizer"):
        transforms.stats_function("plate", None, 6, "float32")  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match=r"channels .*not \[7\]"):
        transforms.stats_function(Normalizer.global_(), (1, 7), 7, "float32")
    assert transforms.stats_function(Normalizer.global_(), None, 6, "uint8") is None


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
            np.testing.assert_allclose(got, standardize_image(images[i]), rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, want)


def test_jitter_stats_is_the_affine_map_of_the_normalized_pixels():
    tf.random.set_seed(0)
    mean, std = tf.constant([[10.0, 20.0]]), tf.constant([[2.0, 4.0]])
    new_mean, new_std = transforms.jitter_stats(mean, std, 0.2, 0.5)
    x = tf.constant([[[[14.0, 12.0]]]])
    z = transforms.standardize(x, mean, std)
    z2 = transforms.standardize(x, new_mean, new_std)
    a = (std / new_std).numpy()  # the scale drawn
    b = (z2 - a[:, None, None, :] * z).numpy()  # and the shift
    assert np.all((a >= 0.8) & (a <= 1.2))
    assert np.all(np.abs(b) <= 0.5 + 1e-6)

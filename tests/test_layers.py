"""Tests for rxdata.layers: the TensorFlow twins agree with the numpy functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import rxdata
from rxdata import layers
from rxdata.color import RGB_MAP
from rxdata.errors import StatsError
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


# --- rgb ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels", [(1, 2, 3, 4, 5, 6), (4, 2), (6,)], ids=["all", "subset", "one"]
)
def test_rgb_equals_numpy_on_batches(channels):
    rng = np.random.default_rng(len(channels))
    batch = rng.integers(0, 256, (3, 17, 9, len(channels)), dtype=np.uint8)
    want = rxdata.convert_tensor_to_rgb(batch, channels)
    got = layers.rgb(batch, channels).numpy()
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(layers.rgb(batch[0], channels).numpy(), want[0])


def test_rgb_in_dataset_and_xla():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (2, 8, 8, 6), dtype=np.uint8)
    want = rxdata.convert_tensor_to_rgb(batch)
    ds = tf.data.Dataset.from_tensor_slices(batch).map(layers.rgb).batch(2)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), want)
    jitted = tf.function(layers.rgb, jit_compile=True)
    np.testing.assert_array_equal(jitted(tf.constant(batch)).numpy(), want)


def test_rgb_custom_map_and_errors():
    custom = {1: {"rgb": (255, 255, 255), "range": (0, 20)}}
    x = np.array([[[0], [10], [30]]], np.uint8)
    np.testing.assert_array_equal(
        layers.rgb(x, (1,), rgb_map=custom).numpy(),
        rxdata.convert_tensor_to_rgb(x, (1,), rgb_map=custom),
    )
    with pytest.raises(TypeError, match=r"uint8"):
        layers.rgb(np.zeros((2, 2, 6), np.float32))
    with pytest.raises(ValueError, match=r"channels"):
        layers.rgb(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(rxdata.errors.OptionsError, match=r"channel 9"):
        layers.rgb(np.zeros((2, 2, 1), np.uint8), (9,), rgb_map=RGB_MAP)


# --- statistics lookups and normalization --------------------------------------------------


@pytest.mark.parametrize("mode", ["global", "experiment", "plate"])
def test_stats_lookup_matches_numpy(mode):
    n = Normalizer.from_pixel_stats(plate_stats(), mode=mode)
    lookup = layers.stats_lookup(n, channels=[5, 2])
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
    lookup = layers.stats_lookup(n)
    lookup(tf.constant("RPE-03"), tf.constant(1))  # known: fine
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"fallback='raise'"):
        lookup(tf.constant("RPE-03"), tf.constant(4))
    with pytest.raises(StatsError, match=r"mode='image'"):
        layers.stats_lookup(Normalizer.per_image())


@pytest.mark.parametrize("mode", ["global", "experiment", "plate", "image"])
def test_normalize_fn_equals_numpy_in_dataset(mode):
    n = Normalizer.from_pixel_stats(plate_stats(), mode=mode)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (4, 6, 5, 6), dtype=np.uint8)
    exps = np.array(["HEPG2-01", "RPE-03", "RPE-03", "HEPG2-09"])
    plates = np.array([1, 2, 3, 1], np.int64)
    fn = layers.normalize_fn(n)
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
        layers.standardize_image(x).numpy(), standardize_image(x), rtol=1e-5, atol=1e-5
    )


def test_standardize_layer_equals_cpu_path_and_serializes(tmp_path):
    import keras

    n = Normalizer.from_pixel_stats(plate_stats(), mode="plate")
    lookup = layers.stats_lookup(n)
    images = np.random.default_rng(4).integers(0, 256, (3, 8, 8, 6), dtype=np.uint8)
    exps, plates = tf.constant(["RPE-03", "HEPG2-01", "RPE-03"]), tf.constant([1, 2, 3])
    mean, std = lookup(exps, plates)
    cpu = layers.normalize_fn(n)(tf.constant(images), exps, plates).numpy()
    out = layers.Standardize()([tf.constant(images), mean, std])
    np.testing.assert_array_equal(out.numpy(), cpu)

    inp = keras.Input((8, 8, 6), dtype="uint8")
    m_in, s_in = keras.Input((6,)), keras.Input((6,))
    model = keras.Model(
        [inp, m_in, s_in], layers.Standardize(dtype="mixed_float16")([inp, m_in, s_in])
    )
    half = model([tf.constant(images), mean, std])
    assert half.dtype == "float16"
    np.testing.assert_allclose(np.asarray(half, np.float32), cpu, rtol=1e-3, atol=1e-3)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_array_equal(
        np.asarray(again([tf.constant(images), mean, std])), np.asarray(half)
    )


def test_global_lookup_uses_published_stats():
    mean, std = layers.stats_lookup(Normalizer.global_())(
        tf.constant(["a", "b"]), tf.constant([1, 2])
    )
    np.testing.assert_array_equal(mean.numpy()[1], GLOBAL_PIXEL_STATS.mean.astype(np.float32))
    np.testing.assert_array_equal(std.numpy()[0], GLOBAL_PIXEL_STATS.std.astype(np.float32))

"""Tests for rxdata.layers: the Keras layers agree with the numpy functions and the
tf.data path (rxdata.transforms)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import rxdata
from helpers import plate_stats
from rxdata import layers, transforms
from rxdata.color import RGB_MAP
from rxdata.normalization import Normalizer

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


# --- the Standardize layer ----------------------------------------------------------------


def test_standardize_layer_equals_cpu_path_and_serializes(tmp_path):
    import keras

    n = Normalizer.from_pixel_stats(plate_stats(), mode="plate")
    lookup = transforms.stats_lookup(n)
    images = np.random.default_rng(4).integers(0, 256, (3, 8, 8, 6), dtype=np.uint8)
    exps, plates = tf.constant(["RPE-03", "HEPG2-01", "RPE-03"]), tf.constant([1, 2, 3])
    mean, std = lookup(exps, plates)
    cpu = transforms.normalize_fn(n)(tf.constant(images), exps, plates).numpy()
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

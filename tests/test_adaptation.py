"""AdaBN per group and dihedral test-time augmentation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from rxdata import tfrecord
from rxdata.adaptation import adapt_batchnorm, dihedral_tta, predict_per_group
from rxdata.errors import OptionsError
from rxdata.pipeline import make_dataset


def _bn_model(nested: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inp, out)
    if nested:
        outer_in = keras.Input((8, 8, 3))
        return keras.Model(outer_in, model(outer_in))
    return model


def _images(seed: int, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(16, 8, 8, 3)) * 2.0 + shift).astype("float32")


def _weights(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: v.numpy().copy() for v in model.weights}


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_adabn_changes_batchnorm_statistics_and_nothing_else(nested: bool) -> None:
    model = _bn_model(nested)
    before = _weights(model)
    momenta = {layer.name: layer.momentum for layer in model.layers if hasattr(layer, "momentum")}
    adapt_batchnorm(model, [_images(1, 5.0), _images(2, 5.0)])
    after = _weights(model)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    moving = {k for k in before if "moving_" in k}
    assert changed == moving and len(moving) == 4
    assert momenta == {
        layer.name: layer.momentum for layer in model.layers if hasattr(layer, "momentum")
    }


def test_adabn_statistics_are_the_plates_population_statistics() -> None:
    """The issue's toy: a plate of 40 sorted values read in batches of 16, 16 and 8.

    Averaging the three batches' statistics (what AdaBN did before) gives the wrong mean
    (the short last batch weighs as much as a full one) and a far too small variance
    (each sorted batch varies little); Li et al.'s AdaBN uses the plate's population
    mean and variance.
    """
    inp = keras.Input((1,))
    model = keras.Model(inp, keras.layers.BatchNormalization()(inp))
    plate = np.sort(np.random.default_rng(0).gamma(1.0, 1.6, size=40)).astype("float32")
    batches = [plate[:16, None], plate[16:32, None], plate[32:, None]]
    adapt_batchnorm(model, batches)
    bn = model.layers[1]
    np.testing.assert_allclose(bn.moving_mean.numpy(), [plate.mean()], rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), [plate.var()], rtol=1e-4)
    averaged_mean = np.mean([b.mean() for b in batches])
    averaged_variance = np.mean([b.var() for b in batches])
    assert abs(averaged_mean - plate.mean()) > 0.1  # the old answer was measurably off
    assert averaged_variance < 0.5 * plate.var()


def test_adabn_adapts_every_layer_with_the_earlier_layers_already_adapted() -> None:
    """The second BatchNorm's statistics are those of its inputs in inference mode,
    after the first layer got the plate's statistics: a second adaptation changes
    nothing, and its outputs on the plate are standardized."""
    model = _bn_model()
    plate = [_images(11, 3.0), _images(12, 3.0), _images(13, 3.0)[:5]]
    adapt_batchnorm(model, plate)
    once = _weights(model)
    adapt_batchnorm(model, iter(plate))  # a one-shot iterator works too
    for key, value in _weights(model).items():
        np.testing.assert_allclose(value, once[key], rtol=1e-4, atol=1e-5)
    x = np.concatenate(plate)
    inner = keras.Model(model.inputs, model.get_layer("bn1").output)
    out = inner(x, training=False).numpy()
    bn1 = model.get_layer("bn1")
    expected_mean = bn1.beta.numpy()  # standardized, then scaled and shifted
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), expected_mean, atol=1e-3)


def test_adabn_adapts_frozen_layers_and_refreezes_them() -> None:
    model = _bn_model()
    model.get_layer("bn1").trainable = False
    before = model.get_layer("bn1").moving_mean.numpy().copy()
    adapt_batchnorm(model, [_images(3, 5.0)])
    assert not np.array_equal(before, model.get_layer("bn1").moving_mean.numpy())
    assert model.get_layer("bn1").trainable is False


def test_adabn_undoes_an_input_shift() -> None:
    model = _bn_model()
    adapt_batchnorm(model, [_images(4)])
    reference = model.predict(_images(5), verbose=0)
    adapt_batchnorm(model, [_images(4, 3.0)])
    shifted = model.predict(_images(5, 3.0), verbose=0)
    np.testing.assert_allclose(reference, shifted, atol=1e-4)


def test_adabn_errors() -> None:
    inp = keras.Input((3,))
    with pytest.raises(OptionsError, match="no BatchNormalization"):
        adapt_batchnorm(keras.Model(inp, keras.layers.Dense(2)(inp)), [np.zeros((1, 3))])
    with pytest.raises(OptionsError, match="no batches"):
        adapt_batchnorm(_bn_model(), [])


def test_predict_per_group_adapts_each_group_and_restores_the_model(tmp_path: object) -> None:
    datasets = {}
    for plate, level in ((1, 10), (2, 200)):
        path = f"{tmp_path}/p{plate}.tfrecord"
        rows = []
        for s in (1, 2):
            meta = {"experiment": "RPE-01", "plate": plate, "well": "B02", "site": s}
            rows.append(
                tfrecord.encode_example(meta, image=np.full((8, 8, 3), level + s, np.uint8))
            )
        tfrecord.write_shard(path, rows)
        datasets[f"RPE-01/{plate}"] = make_dataset(path, batch_size=2, training=False, label=None)
    model = _bn_model()
    before = _weights(model)
    ids, out = predict_per_group(model, datasets)
    assert ids["group"].tolist() == ["RPE-01/1"] * 2 + ["RPE-01/2"] * 2
    # each plate normalized by its own statistics: the two plates predict alike
    np.testing.assert_allclose(out[:2], out[2:], atol=1e-3)
    after = _weights(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_tta_of_a_rotation_invariant_model_changes_nothing() -> None:
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(5, 1, activation="relu")(inp)  # 1x1 conv + global pool:
    x = keras.layers.GlobalAveragePooling2D()(x)  # invariant to every dihedral transform
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))
    images = _images(6)
    np.testing.assert_allclose(
        dihedral_tta(model).predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


def test_tta_averages_over_eight_distinct_views() -> None:
    inp = keras.Input((3, 3, 1))
    model = keras.Model(inp, keras.layers.Flatten()(inp))  # every pixel: not invariant
    image = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    out = dihedral_tta(model).predict(image, verbose=0).reshape(3, 3)
    views = [np.rot90(image[0, :, :, 0], k) for k in range(4)]
    views += [np.fliplr(v) for v in views]
    np.testing.assert_allclose(out, np.mean(views, axis=0), atol=1e-6)


def test_tta_rejects_non_square_inputs() -> None:
    inp = keras.Input((4, 6, 1))
    with pytest.raises(OptionsError, match="square"):
        dihedral_tta(keras.Model(inp, keras.layers.Flatten()(inp)))


def test_tta_rejects_several_inputs() -> None:
    a, b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    model = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(OptionsError, match="one image input"):
        dihedral_tta(model)


def test_adabn_restores_the_layers_when_a_batch_fails() -> None:
    model = _bn_model()
    bn1 = model.get_layer("bn1")
    momentum, call = bn1.momentum, bn1.call
    with pytest.raises(ValueError):  # a batch of the wrong shape fails inside the model
        adapt_batchnorm(model, [_images(7), np.zeros((2, 5, 5, 3), "float32")])
    assert bn1.momentum == momentum and "call" not in vars(bn1) and bn1.call == call

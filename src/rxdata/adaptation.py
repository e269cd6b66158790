"""Test-time adaptation for Keras models: per-batch BatchNorm statistics and dihedral TTA.

Contract: the functions take a Keras 3 model (TensorFlow backend) and image batches (a
``tf.data.Dataset`` from :func:`rxdata.make_dataset` or arrays) and never change a
model's trainable weights.

* :func:`adapt_batchnorm` (AdaBN, Li et al., "Revisiting batch normalization for
  practical domain adaptation", 2016): replace every BatchNormalization layer's moving
  mean and variance by the population mean and variance of its inputs over all the given
  images (one plate's or one experiment's), so that a batch effect the layers' inputs
  still carry is normalized away by the group's own statistics. The 5th-place RxRx1
  solution recomputed BatchNorm statistics per plate.
* :func:`predict_per_group`: predict every group (plate or experiment) with statistics
  adapted to that group, then restore the model's own statistics.
* :func:`dihedral_tta`: a model that averages another model's outputs over the 8
  symmetries of the square (flips and 90-degree rotations), the test-time augmentation
  of the RxRx1 winners.

Example:
    >>> import keras, numpy as np
    >>> inp = keras.Input((4, 4, 1))
    >>> model = keras.Model(inp, keras.layers.BatchNormalization()(inp))
    >>> _ = adapt_batchnorm(model, [np.full((2, 4, 4, 1), 3.0, "float32")])
    >>> float(model.layers[1].moving_mean.numpy()[0])
    3.0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from rxdata.errors import OptionsError
from rxdata.pipeline import predict

__all__ = ["adapt_batchnorm", "dihedral_tta", "predict_per_group"]


def _sublayers(layer: Any) -> Iterable[Any]:
    for sub in getattr(layer, "layers", ()):  # nested models (e.g. a ResNet backbone)
        yield sub
        yield from _sublayers(sub)


def _batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    found = [
        layer for layer in _sublayers(model) if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not found:
        raise OptionsError(
            f"model {model.name!r} has no BatchNormalization layer: there are no statistics "
            "to adapt (add BatchNormalization layers, or normalize the input per plate instead)"
        )
    return found


def _images(batch: Any) -> Any:
    """The model input of a batch: ``x`` of ``(x, y[, meta])`` tuples or the batch itself."""
    if isinstance(batch, tuple):
        return batch[0]
    if isinstance(batch, dict) and "image" in batch:
        keys = [k for k in ("image", "mean", "std") if k in batch]
        return batch["image"] if keys == ["image"] else {k: batch[k] for k in keys}
    return batch


class _Moments:
    """Per-channel count, sum and sum of squares of a BatchNormalization layer's inputs."""

    def __init__(self, layer: keras.layers.BatchNormalization) -> None:
        self.layer = layer
        self.count = 0.0
        self.total = np.zeros(0)
        self.squares = np.zeros(0)

    def add(self, inputs: Any) -> None:
        x = np.asarray(keras.ops.convert_to_numpy(inputs), dtype=np.float64)
        axis = self.layer.axis % x.ndim
        x = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
        total, squares = x.sum(axis=0), (x * x).sum(axis=0)
        self.count += len(x)
        self.total = self.total + total if self.total.size else total
        self.squares = self.squares + squares if self.squares.size else squares

    def assign(self) -> None:
        mean = self.total / self.count
        variance = np.maximum(self.squares / self.count - mean * mean, 0.0)
        self.layer.moving_mean.assign(mean.astype(self.layer.moving_mean.dtype))
        self.layer.moving_variance.assign(variance.astype(self.layer.moving_variance.dtype))


def _population_statistics(model: keras.Model, layer: Any, batches: Iterable[Any]) -> bool:
    """Set ``layer``'s moving statistics to its inputs' moments over ``batches``.

    The model runs in inference mode (earlier layers use the statistics already
    assigned); the layer's own ``call`` is wrapped for the pass to record its inputs.
    Returns False when ``batches`` held nothing.
    """
    moments = _Moments(layer)
    original = layer.call

    def recording(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        moments.add(inputs)
        return original(inputs, *args, **kwargs)

    object.__setattr__(layer, "call", recording)
    try:
        for batch in batches:
            model(_images(batch), training=False)
    finally:
        object.__delattr__(layer, "call")
    if moments.count == 0:
        return False
    moments.assign()
    return True


def adapt_batchnorm(model: keras.Model, batches: Iterable[Any]) -> keras.Model:
    """Set every BatchNormalization layer's moving statistics to those of ``batches``.

    AdaBN as Li et al. define it: each layer's moving mean and variance become the
    population mean and (biased) variance of that layer's inputs over *all* the images
    in ``batches``, accumulated batch by batch as sums, so a last short batch or batches
    that differ from each other weigh by their number of values, not as equal averages.
    Layers are adapted in order, one pass over ``batches`` each, with the model in
    inference mode, so a layer's inputs are those it will see when predicting (earlier
    layers already adapted). Only ``moving_mean`` and ``moving_variance`` change:
    weights, biases, the BatchNorm scale and offset and the optimizer state do not.

    Args:
        model: A Keras model with at least one BatchNormalization layer.
        batches: Input batches of one group (a plate or an experiment): a dataset of
            ``(images, ...)`` tuples or dicts from :func:`rxdata.make_dataset`, or arrays.
            Read once per BatchNormalization layer; a one-shot iterator is read into
            memory first.

    Returns:
        ``model`` itself, adapted in place.

    Raises:
        OptionsError: The model has no BatchNormalization layer, or ``batches`` is empty.

    Example:
        >>> import keras, numpy as np
        >>> inp = keras.Input((1,))
        >>> m = keras.Model(inp, keras.layers.BatchNormalization()(inp))
        >>> plate = np.arange(5, dtype="float32").reshape(5, 1)  # 0..4: mean 2, var 2
        >>> _ = adapt_batchnorm(m, [plate[:4], plate[4:]])  # batches of 4 and 1
        >>> m.layers[1].moving_mean.numpy().tolist(), m.layers[1].moving_variance.numpy().tolist()
        ([2.0], [2.0])
    """
    layers = _batchnorm_layers(model)
    if iter(batches) is batches:  # a one-shot iterator: every layer needs its own pass
        batches = list(batches)
    for layer in layers:
        if not _population_statistics(model, layer, batches):
            raise OptionsError("adapt_batchnorm got no batches: the group has no images")
    return model


def predict_per_group(
    model: keras.Model, datasets: Mapping[str, tf.data.Dataset]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Predict each group with BatchNorm statistics adapted to it (AdaBN per plate).

    For every group the model's statistics are recomputed on the group's own images
    (:func:`adapt_batchnorm`: one pass per BatchNormalization layer), the group is
    predicted (:func:`rxdata.pipeline.predict`), and finally the model's original
    statistics are restored, so the model is unchanged.

    Args:
        model: A Keras model with BatchNormalization layers.
        datasets: Group name -> evaluation dataset of that group
            (``make_dataset(..., training=False, experiments=...)``); each is read once
            per BatchNormalization layer and once to predict.

    Returns:
        ``(ids, predictions)`` as :func:`rxdata.pipeline.predict` returns them, groups in
        the mapping's order, with a ``group`` column added to ``ids``.

    Raises:
        OptionsError: No groups, or the model has no BatchNormalization layer.

    Example:
        >>> import keras, numpy as np
        >>> from rxdata import tfrecord
        >>> from rxdata.pipeline import make_dataset
        >>> _ = tfrecord.write_shard("g.tfrecord", [tfrecord.encode_example(
        ...     {"experiment": "RPE-01", "plate": 1, "well": "B02", "site": s},
        ...     image=np.full((2, 2, 1), 10 * s, np.uint8)) for s in (1, 2)])
        >>> inp = keras.Input((2, 2, 1))
        >>> m = keras.Model(inp, keras.layers.BatchNormalization()(inp))
        >>> ds = make_dataset("g.tfrecord", batch_size=2, training=False, label=None)
        >>> ids, out = predict_per_group(m, {"RPE-01/1": ds})
        >>> ids["group"].tolist(), float(m.layers[1].moving_mean.numpy()[0])
        (['RPE-01/1', 'RPE-01/1'], 0.0)
    """
    if not datasets:
        raise OptionsError("predict_per_group needs at least one group")
    layers = _batchnorm_layers(model)
    original = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    frames, outputs = [], []
    try:
        for group, dataset in datasets.items():
            adapt_batchnorm(model, dataset)
            ids, out = predict(model, dataset)
            frames.append(ids.assign(group=group))
            outputs.append(out)
    finally:
        for layer, (mean, variance) in zip(layers, original, strict=True):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    return pd.concat(frames, ignore_index=True), np.concatenate(outputs)


def _dihedral(images: tf.Tensor) -> list[tf.Tensor]:
    """The 8 symmetries of the square applied to ``(batch, h, w, c)`` images."""
    rotations = [tf.image.rot90(images, k) for k in range(4)]
    return rotations + [tf.image.flip_left_right(r) for r in rotations]


class _DihedralMean(keras.layers.Layer):  # type: ignore[misc]
    """Average a model's outputs over the 8 dihedral transforms of its image input."""

    def __init__(self, model: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def call(self, images: tf.Tensor) -> tf.Tensor:
        outputs = [self.model(x, training=False) for x in _dihedral(images)]
        return tf.add_n(outputs) / float(len(outputs))


def dihedral_tta(model: keras.Model) -> keras.Model:
    """A model that predicts the mean of ``model`` over the 8 dihedral views of each image.

    The views are the 4 rotations by 90 degrees and their mirror images; for square
    fluorescence images none changes the biology, so averaging over them removes the
    model's orientation noise (the RxRx1 winners' test-time augmentation). The result
    costs 8 forward passes per image and shares ``model``'s weights.

    Args:
        model: A Keras model with one square image input ``(h, h, c)``.

    Returns:
        A Keras model with the same input and output shapes.

    Raises:
        OptionsError: The model has several inputs or non-square images.

    Example:
        >>> import keras, numpy as np
        >>> inp = keras.Input((2, 2, 1))
        >>> corner = keras.Model(inp, keras.layers.Flatten()(inp)[:, :1])  # top-left pixel
        >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
        >>> dihedral_tta(corner).predict(x, verbose=0).tolist()  # mean of the 4 corners
        [[1.5]]
    """
    if len(model.inputs) != 1:
        raise OptionsError(
            f"dihedral_tta needs a model with one image input, {model.name!r} has "
            f"{len(model.inputs)} (normalize on the CPU for test-time augmentation)"
        )
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] != shape[1]:
        raise OptionsError(f"dihedral_tta needs square (h, h, c) images; the input is {shape}")
    inp = keras.Input(shape, name=model.inputs[0].name.split(":")[0])
    out = _DihedralMean(model, name="dihedral_mean")(inp)
    return keras.Model(inp, out, name=f"{model.name}_tta")

"""Keras layers for rxdata models, written in ``keras.ops`` for every Keras 3 backend.

Contract: :func:`rgb`, :class:`RGB` and :class:`Standardize` use ``keras.ops`` only, so they
run inside a model on the TensorFlow, JAX and PyTorch backends with the same results: the
numpy values of :func:`rxdata.color.convert_tensor_to_rgb` (bit-identical) and of
``(x - mean) / std`` in ``float32`` (:meth:`rxdata.normalization.Normalizer.normalize`).
The backend is the one Keras was imported with (``KERAS_BACKEND``); these names never import
TensorFlow themselves. See docs/training.md, "Backends".

* :func:`rgb` colours ``uint8`` sites by gathering the lookup tables of
  :func:`rxdata.color.rgb_tables` (exact rxrx1-utils values); :class:`RGB` is the same as
  a layer, for a model's input.
* :class:`Standardize` computes ``(x - mean) / std`` from ``uint8`` images plus
  per-example statistics, so that normalization runs on the accelerator and the input
  pipeline ships 4x smaller ``uint8`` tensors.

The statistics themselves come from the tf.data side (the pipeline's in-graph lookup),
which is TensorFlow's whatever the model's backend: tf.data only feeds the model.

Example:
    >>> import numpy as np
    >>> x = np.zeros((1, 2, 2, 6), np.uint8); x[..., 0] = 51
    >>> np.asarray(RGB()(x))[0, 0, 0].tolist()
    [19, 0, 249]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rxdata.color import DEFAULT_CHANNELS, RGB_MAP, RgbMap, rgb_tables
from rxdata.errors import StatsError
from rxdata.normalization import Normalizer

__all__ = ["RGB", "Standardize", "normalize_fn", "rgb", "standardize_image", "stats_lookup"]

StatsFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def rgb(
    images: Any,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    vmax: float = 255,
    rgb_map: RgbMap = RGB_MAP,
) -> Any:
    """Colour ``uint8`` sites ``(..., H, W, C)`` as RGB ``(..., H, W, 3) uint8``.

    Same values as :func:`rxdata.color.convert_tensor_to_rgb` (hence as rxrx1-utils): one
    ``keras.ops.take`` of the same per-channel lookup tables, a sum over channels and a
    clip at 255, in the current Keras backend (a numpy array comes back as that backend's
    tensor). On the TensorFlow backend it also works in ``tf.data`` maps and under
    ``tf.function(jit_compile=True)``; on JAX under ``jax.jit``.

    Raises:
        TypeError: ``images`` are not ``uint8``.
        ValueError: Their last axis is not ``len(channels)`` long.
        OptionsError: A channel missing from ``rgb_map``, or a bad ``vmax``.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((1, 2, 2, 6), np.uint8); x[..., 0] = 51
        >>> np.asarray(rgb(x))[0, 0, 0].tolist()
        [19, 0, 249]
    """
    ops = keras.ops
    chans = tuple(int(c) for c in channels)
    tables = rgb_tables(chans, vmax, rgb_map)  # validates channels, map and vmax
    x = ops.convert_to_tensor(images)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype != "uint8":
        raise TypeError(f"rgb() expects uint8 images, got {dtype}")
    shape = tuple(x.shape)
    if shape and shape[-1] is not None and shape[-1] != len(chans):
        raise ValueError(f"images have {shape[-1]} channels (shape {shape}) but channels={chans!r}")
    flat = ops.convert_to_tensor(tables.reshape(-1, 3).astype(np.int32))  # row = i*256 + v
    offsets = ops.convert_to_tensor(np.arange(len(chans), dtype=np.int32) * 256)
    index = ops.cast(x, "int32") + offsets
    summed = ops.sum(ops.take(flat, index, axis=0), axis=-2)
    return ops.cast(ops.minimum(summed, 255), "uint8")


@keras.saving.register_keras_serializable(package="rxdata")
class RGB(keras.layers.Layer):  # type: ignore[misc]
    """:func:`rgb` as a Keras layer: ``uint8`` ``(B, H, W, C)`` -> ``uint8`` ``(B, H, W, 3)``.

    Args:
        channels: The channel numbers of the input's last axis, in order.
        vmax: The input's full-scale value (255 for ``uint8`` sites).
        rgb_map: The colour map (default rxrx1-utils').
        **kwargs: Passed to ``keras.layers.Layer`` (``name``, ...).

    Raises:
        OptionsError: A channel missing from ``rgb_map``, or a bad ``vmax`` (when the
            layer is built, not at its first call).

    Example:
        >>> import numpy as np
        >>> layer = RGB(channels=(1, 2))
        >>> np.asarray(layer(np.full((1, 1, 1, 2), 255, np.uint8))).tolist()
        [[[[61, 255, 255]]]]
    """

    def __init__(
        self,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        vmax: float = 255,
        rgb_map: RgbMap = RGB_MAP,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.channels = tuple(int(c) for c in channels)
        # a saved config holds JSON, whose keys are text: "1" is channel 1 again
        mapping = {int(c) if str(c).isdigit() else c: e for c, e in rgb_map.items()}
        rgb_tables(self.channels, vmax, mapping)  # fail here, not at the first call
        self.vmax = float(vmax)
        # the used channels' entries as plain lists, which get_config saves as JSON
        self.rgb_map = {
            c: {"rgb": list(mapping[c]["rgb"]), "range": list(mapping[c]["range"])}
            for c in self.channels
        }

    def call(self, images: Any) -> Any:
        """Colour ``images``."""
        return rgb(images, self.channels, self.vmax, self.rgb_map)

    def compute_output_shape(self, input_shape: Sequence[Any]) -> Any:
        """The input's shape with 3 channels."""
        return (*tuple(input_shape)[:-1], 3)

    def get_config(self) -> dict[str, Any]:
        """The layer's arguments (saved with the model)."""
        config: dict[str, Any] = super().get_config()
        rgb_map = {str(c): entry for c, entry in self.rgb_map.items()}  # JSON keys are text
        config.update(channels=list(self.channels), vmax=self.vmax, rgb_map=rgb_map)
        return config


def _group_keys(normalizer: Normalizer, experiment: tf.Tensor, plate: tf.Tensor) -> tf.Tensor:
    """In-graph twin of :meth:`Normalizer.group_key`."""
    experiment = tf.convert_to_tensor(experiment, dtype=tf.string)
    if normalizer.mode == "experiment":
        return experiment
    plate = tf.convert_to_tensor(plate)
    if plate.dtype not in (tf.int8, tf.int16, tf.int32, tf.int64):
        plate = tf.cast(plate, tf.int64)
    return tf.strings.join([experiment, tf.strings.as_string(plate)], separator="/")


def stats_lookup(normalizer: Normalizer, channels: Sequence[int] | None = None) -> StatsFn:
    """An in-graph ``(experiment, plate) -> (mean (C,), std (C,))`` lookup, ``float32``.

    Built on a ``tf.lookup.StaticHashTable`` from :meth:`Normalizer.table`; inputs may be
    scalars (one site) or vectors (a batch: outputs ``(B, C)``). Unseen groups get the
    normalizer's global statistics (``fallback="global"``) or fail the step with an
    ``InvalidArgumentError`` naming the policy (``fallback="raise"``).

    Args:
        normalizer: Any mode except ``image`` (whose statistics come from each image).
        channels: Channel numbers of the images, default all of ``normalizer.channels``.

    Raises:
        StatsError: Mode ``image``, or ``channels`` not covered by the statistics.

    Example:
        >>> import pandas as pd, tensorflow as tf
        >>> ps = pd.DataFrame({"id_code": ["A-1_2_B02"], "experiment": ["A-1"],
        ...     "plate": [2], "well": ["B02"], "site": [1], "channel": [1],
        ...     "mean": [3.0], "std": [2.0]})
        >>> lookup = stats_lookup(Normalizer.from_pixel_stats(ps, mode="plate"))
        >>> [t.numpy().tolist() for t in lookup(tf.constant(["A-1"]), tf.constant([2]))]
        [[[3.0]], [[2.0]]]
    """
    if normalizer.mode == "image":
        raise StatsError("mode='image' has no stored statistics; use normalize_fn()")
    global_stats = normalizer.global_stats.select(channels)
    g_mean = tf.constant(global_stats.mean, tf.float32)
    g_std = tf.constant(global_stats.std, tf.float32)
    if normalizer.mode == "global":

        def global_lookup(experiment: tf.Tensor, plate: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            shape = tf.concat([tf.shape(experiment), [len(global_stats)]], axis=0)
            return tf.broadcast_to(g_mean, shape), tf.broadcast_to(g_std, shape)

        return global_lookup

    keys, means, stds = normalizer.table(channels)
    n = len(keys)
    all_means = tf.constant(np.vstack([means, global_stats.mean]), tf.float32)
    all_stds = tf.constant(np.vstack([stds, global_stats.std]), tf.float32)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.string), tf.range(n, dtype=tf.int64)
        ),
        default_value=-1,
    )
    fallback = normalizer.fallback
    mode = normalizer.mode

    def lookup(experiment: tf.Tensor, plate: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        key = _group_keys(normalizer, experiment, plate)
        index = table.lookup(key)
        if fallback == "raise":
            check = tf.debugging.assert_non_negative(
                index,
                message=f"rxdata: no {mode} statistics for this experiment/plate and "
                "fallback='raise' (StatsError)",
            )
            with tf.control_dependencies([check]):
                index = tf.identity(index)
        else:
            index = tf.where(index < 0, tf.constant(n, tf.int64), index)
        return tf.gather(all_means, index), tf.gather(all_stds, index)

    lookup.table = table  # type: ignore[attr-defined]  # keep the resource alive
    return lookup


def standardize_image(images: tf.Tensor) -> tf.Tensor:
    """Twin of :func:`rxdata.normalization.standardize_image`, for ``(..., H, W, C)``.

    Per image and channel, ``(x - mean) / max(std, 1/sqrt(H*W))`` in ``float32``.

    Example:
        >>> import numpy as np
        >>> standardize_image(np.array([[[0], [2]]], np.uint8))[..., 0].numpy().tolist()
        [[-1.0, 1.0]]
    """
    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    shape = tf.shape(x)
    pixels = tf.cast(shape[-3] * shape[-2], tf.float32)
    mean = tf.reduce_mean(x, axis=[-3, -2], keepdims=True)
    std = tf.sqrt(tf.reduce_mean(tf.square(x - mean), axis=[-3, -2], keepdims=True))
    return (x - mean) / tf.maximum(std, 1.0 / tf.sqrt(pixels))


def normalize_fn(
    normalizer: Normalizer, channels: Sequence[int] | None = None
) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]:
    """A tf.data-ready ``fn(image, experiment, plate) -> float32 image``.

    ``image`` is ``uint8`` ``(H, W, C)`` (or a batch with vector ``experiment`` and
    ``plate``); the result equals :meth:`Normalizer.normalize` on the same site.

    Example:
        >>> import numpy as np, tensorflow as tf
        >>> fn = normalize_fn(Normalizer.global_(), channels=[1])
        >>> x = fn(tf.zeros((1, 1, 1), tf.uint8), tf.constant("U2OS-01"), tf.constant(1))
        >>> round(float(x[0, 0, 0]), 4)
        -0.8477
    """
    if normalizer.mode == "image":

        def per_image(image: tf.Tensor, experiment: tf.Tensor, plate: tf.Tensor) -> tf.Tensor:
            return standardize_image(image)

        return per_image
    lookup = stats_lookup(normalizer, channels)

    def apply(image: tf.Tensor, experiment: tf.Tensor, plate: tf.Tensor) -> tf.Tensor:
        mean, std = lookup(experiment, plate)
        x = tf.cast(image, tf.float32)
        rank = tf.rank(mean)  # (C,) for one site, (B, C) for a batch
        shape = tf.concat(
            [tf.shape(mean)[:-1], tf.ones([tf.rank(x) - rank], tf.int32), tf.shape(mean)[-1:]],
            axis=0,
        )
        return (x - tf.reshape(mean, shape)) / tf.reshape(std, shape)

    apply.lookup = lookup  # type: ignore[attr-defined]
    return apply


@keras.saving.register_keras_serializable(package="rxdata")
class Standardize(keras.layers.Layer):  # type: ignore[misc]
    """``(images - mean) / std`` on the accelerator, in the layer's compute dtype.

    Inputs: ``[images, mean, std]`` with ``images`` ``(B, H, W, C)`` (``uint8`` or any real
    dtype) and ``mean``, ``std`` ``(B, C)`` per example (e.g. from the pipeline's in-graph
    statistics lookup, ``make_dataset(..., normalize_on="accelerator")``). The arithmetic
    runs in ``float32`` (inputs are not autocast, so statistics keep full precision under
    mixed precision) and the result is cast to the compute dtype: with ``float32`` it
    equals :meth:`rxdata.normalization.Normalizer.normalize` exactly, on every backend.

    Example:
        >>> import numpy as np
        >>> layer = Standardize()
        >>> out = layer([np.full((1, 1, 1, 2), 10, np.uint8),
        ...              np.array([[8.0, 12.0]], np.float32), np.array([[2.0, 4.0]], np.float32)])
        >>> np.asarray(out).ravel().tolist()
        [1.0, -0.5]
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, inputs: Sequence[Any]) -> Any:
        """Standardize ``inputs = [images, mean, std]``."""
        if len(inputs) != 3:
            raise ValueError(f"Standardize takes [images, mean, std], got {len(inputs)} inputs")
        images, mean, std = inputs
        ops = keras.ops
        x = ops.cast(images, "float32")
        # (B, C) -> (B, 1, 1, C): one statistic per example and channel
        mean = ops.expand_dims(ops.expand_dims(ops.cast(mean, "float32"), 1), 1)
        std = ops.expand_dims(ops.expand_dims(ops.cast(std, "float32"), 1), 1)
        return ops.cast((x - mean) / std, self.compute_dtype)

    def compute_output_shape(self, input_shape: Sequence[Any]) -> Any:
        """The images' shape."""
        return tuple(input_shape[0])

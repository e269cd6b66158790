"""TensorFlow twins of :mod:`rxdata.color` and :mod:`rxdata.normalization`.

Contract: every function here performs the same arithmetic as its numpy twin and gives the
same values (bit-identical for :func:`rgb` and the stored-statistics normalization; equal
to float32 rounding for per-image standardization, whose reductions may sum in another
order). All of them work inside ``tf.data`` maps, on single sites ``(H, W, C)`` and on
batches ``(B, H, W, C)``.

* :func:`rgb` colours sites by gathering the lookup tables of
  :func:`rxdata.color.rgb_tables` (exact rxrx1-utils values, ``uint8``).
* :func:`stats_lookup` turns a :class:`~rxdata.normalization.Normalizer` into an in-graph
  ``tf.lookup.StaticHashTable``: ``(experiment, plate) -> (mean, std)``, keyed by
  :meth:`Normalizer.group_key <rxdata.normalization.Normalizer.group_key>` built in-graph.
* :func:`normalize_fn` returns ``fn(image, experiment, plate) -> float32`` for a tf.data
  map (mode ``image`` computes each image's statistics in-graph).
* :class:`Standardize` is a Keras layer computing ``(x - mean) / std`` from ``uint8``
  images plus per-example statistics, so that normalization runs on the accelerator and
  the input pipeline ships 4x smaller ``uint8`` tensors.

Example:
    >>> import numpy as np, tensorflow as tf
    >>> from rxdata.normalization import Normalizer
    >>> lookup = stats_lookup(Normalizer.global_(), channels=[1, 2])
    >>> mean, std = lookup(tf.constant("HEPG2-01"), tf.constant(1))
    >>> np.round(mean.numpy(), 3).tolist()
    [6.747, 14.746]
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

__all__ = ["Standardize", "normalize_fn", "rgb", "standardize_image", "stats_lookup"]

StatsFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def rgb(
    images: tf.Tensor | np.ndarray,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    vmax: float = 255,
    rgb_map: RgbMap = RGB_MAP,
) -> tf.Tensor:
    """Colour ``uint8`` sites ``(..., H, W, C)`` as RGB ``(..., H, W, 3) uint8``.

    Same values as :func:`rxdata.color.convert_tensor_to_rgb` (hence as rxrx1-utils): one
    ``tf.gather`` of the same per-channel lookup tables, a sum over channels and a clip at
    255. Works eagerly, in ``tf.data`` maps and under ``tf.function(jit_compile=True)``.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((1, 2, 2, 6), np.uint8); x[..., 0] = 51
        >>> rgb(x)[0, 0, 0].numpy().tolist()
        [19, 0, 249]
    """
    chans = tuple(int(c) for c in channels)
    tables = rgb_tables(chans, vmax, rgb_map)  # validates channels, map and vmax
    flat = tf.constant(tables.reshape(-1, 3).astype(np.int32))  # row = i * 256 + value
    x = tf.convert_to_tensor(images)
    if x.dtype != tf.uint8:
        raise TypeError(f"rgb() expects uint8 images, got {x.dtype.name}")
    if x.shape.rank is not None and x.shape[-1] is not None and x.shape[-1] != len(chans):
        raise ValueError(
            f"images have {x.shape[-1]} channels (shape {x.shape}) but channels={chans!r}"
        )
    index = tf.cast(x, tf.int32) + tf.range(len(chans), dtype=tf.int32) * 256
    summed = tf.reduce_sum(tf.gather(flat, index), axis=-2)
    return tf.cast(tf.minimum(summed, 255), tf.uint8)


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
    dtype) and ``mean``, ``std`` ``(B, C)`` per example (e.g. from :func:`stats_lookup` in
    the input pipeline). The arithmetic runs in ``float32`` (inputs are not autocast, so
    statistics keep full precision under mixed precision) and the result is cast to the
    compute dtype: with ``float32`` it equals :func:`normalize_fn` exactly.

    Example:
        >>> import numpy as np
        >>> layer = Standardize()
        >>> out = layer([np.full((1, 1, 1, 2), 10, np.uint8),
        ...              np.array([[8.0, 12.0]], np.float32), np.array([[2.0, 4.0]], np.float32)])
        >>> out.numpy().ravel().tolist()
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
        mean = ops.cast(mean, "float32")[:, None, None, :]
        std = ops.cast(std, "float32")[:, None, None, :]
        return ops.cast((x - mean) / std, self.compute_dtype)

    def compute_output_shape(self, input_shape: Sequence[Any]) -> Any:
        """The images' shape."""
        return tuple(input_shape[0])

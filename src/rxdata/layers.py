"""Keras layers: the model-side twins of :mod:`rxdata.color` and :mod:`rxdata.normalization`.

Contract: every function here performs the same arithmetic as its numpy twin and gives the
same values (bit-identical for :func:`rgb`; :class:`Standardize` equals the tf.data path of
:mod:`rxdata.transforms`, which owns the TensorFlow normalization math: statistics lookups,
``standardize``, ``normalize_fn``).

* :func:`rgb` colours sites by gathering the lookup tables of
  :func:`rxdata.color.rgb_tables` (exact rxrx1-utils values, ``uint8``).
* :class:`Standardize` is a Keras layer computing ``(x - mean) / std`` from ``uint8``
  images plus per-example statistics, so that normalization runs on the accelerator and
  the input pipeline ships 4x smaller ``uint8`` tensors.

Example:
    >>> import numpy as np
    >>> x = np.zeros((1, 2, 2, 6), np.uint8); x[..., 0] = 51
    >>> rgb(x)[0, 0, 0].numpy().tolist()
    [19, 0, 249]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rxdata.color import DEFAULT_CHANNELS, RGB_MAP, RgbMap, rgb_tables

__all__ = ["Standardize", "rgb"]


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

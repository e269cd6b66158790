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

The statistics themselves come from the tf.data side: :mod:`rxdata.transforms` owns the
TensorFlow normalization math (statistics lookups, ``standardize``, ``normalize_fn``),
which is TensorFlow's whatever the model's backend, since tf.data only feeds the model.

Example:
    >>> import numpy as np
    >>> x = np.zeros((1, 2, 2, 6), np.uint8); x[..., 0] = 51
    >>> np.asarray(RGB()(x))[0, 0, 0].tolist()
    [19, 0, 249]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from rxdata.color import DEFAULT_CHANNELS, RGB_MAP, RgbMap, rgb_tables

__all__ = ["RGB", "Standardize", "rgb"]


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

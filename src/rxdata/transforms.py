"""Batch transforms of uint8 site batches in TensorFlow: the arithmetic of ``make_dataset``.

Each is a plain function on tensors, testable alone and composed by
:func:`rxdata.pipeline.make_dataset`: per-site normalization statistics
(:func:`stats_function`, looked up per experiment and plate or measured per image),
:func:`standardize`, the 8 symmetries of the square (:func:`random_dihedral`) and
intensity jitter folded into the statistics (:func:`jitter_stats`).

Example:
    >>> import tensorflow as tf
    >>> x = tf.constant([[[[10, 20]]]], tf.uint8)
    >>> standardize(x, tf.constant([[4.0, 5.0]]), tf.constant([[2.0, 3.0]])).numpy()
    array([[[[3., 5.]]]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError

if TYPE_CHECKING:
    from rxdata.normalization import Normalizer

__all__ = [
    "StatsFn",
    "compiled",
    "image_moments",
    "jitter_stats",
    "random_dihedral",
    "standardize",
    "standardize_as",
    "stats_function",
]

#: ``(parsed batch dict, uint8 images [B, H, W, C]) -> (mean [B, C], std [B, C])``.
StatsFn = Any  # (parsed batch dict, uint8 images [B, H, W, C]) -> (mean [B, C], std [B, C])


def compiled(fn: Callable[..., Any], jit: bool) -> Callable[..., Any]:
    """``fn`` as an XLA-compiled ``tf.function`` when ``jit``, else ``fn`` itself.

    Example:
        >>> compiled(standardize, False) is standardize
        True
    """
    return tf.function(fn, jit_compile=True, reduce_retracing=True, autograph=False) if jit else fn


def image_moments(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per image and channel mean and ``max(std, 1/sqrt(H*W))`` (mode ``image``)."""
    x = tf.cast(images, tf.float32)
    mean = tf.reduce_mean(x, axis=[1, 2])
    var = tf.reduce_mean(tf.square(x - mean[:, None, None, :]), axis=[1, 2])
    pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
    return mean, tf.maximum(tf.sqrt(var), 1.0 / tf.sqrt(pixels))


def stats_function(
    normalizer: Normalizer | None,
    channels: tuple[int, ...] | None,
    stored: int,
    dtype: str,
    jit: bool = True,
) -> StatsFn | None:
    """Per-example (mean, std) for a batch, in float32; ``None`` for ``dtype="uint8"``."""
    if dtype == "uint8":
        return None
    picked = list(channels) if channels is not None else list(range(1, stored + 1))
    n = len(picked)
    if normalizer is None:

        def unit(parsed: dict[str, tf.Tensor], images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            b = tf.shape(images)[0]
            return tf.zeros([b, n], tf.float32), tf.fill([b, n], tf.constant(255.0))

        return unit
    from rxdata.normalization import Normalizer

    if not isinstance(normalizer, Normalizer):
        raise OptionsError(f"normalizer must be an rxdata.Normalizer, got {normalizer!r}")
    missing = [c for c in picked if c not in normalizer.channels]
    if missing:
        raise OptionsError(
            f"the normalizer has statistics for channels {normalizer.channels}, not {missing}"
        )
    if normalizer.mode == "image":
        moments = compiled(image_moments, jit)

        def per_image(
            parsed: dict[str, tf.Tensor], images: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor]:
            return moments(images)  # type: ignore[no-any-return]

        return per_image
    from rxdata import layers

    lookup = layers.stats_lookup(normalizer, channels=picked)

    def by_group(parsed: dict[str, tf.Tensor], images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        mean, std = lookup(parsed[tfr.EXPERIMENT], parsed[tfr.PLATE])
        return tf.cast(mean, tf.float32), tf.cast(std, tf.float32)

    return by_group


def standardize(images: tf.Tensor, mean: tf.Tensor, std: tf.Tensor) -> tf.Tensor:
    """``(images - mean) / std`` in float32, per example and channel.

    The arithmetic of the CPU path; :class:`rxdata.layers.Standardize` does the same on
    the accelerator.

    Args:
        images: ``[B, H, W, C]`` (any real dtype).
        mean: ``[B, C]``.
        std: ``[B, C]``.

    Example:
        >>> x = tf.constant([[[[10, 20]]]], tf.uint8)
        >>> standardize(x, tf.constant([[4.0, 5.0]]), tf.constant([[2.0, 3.0]])).numpy()
        array([[[[3., 5.]]]], dtype=float32)
    """
    x = tf.cast(images, tf.float32)
    return (x - mean[:, None, None, :]) / std[:, None, None, :]


def standardize_as(dtype: str) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]:
    """:func:`standardize`, cast to ``dtype`` (the batches' dtype under mixed precision).

    Example:
        >>> x = tf.constant([[[[10]]]], tf.uint8)
        >>> standardize_as("float16")(x, tf.constant([[4.0]]), tf.constant([[2.0]])).dtype
        tf.float16
    """

    def fn(images: tf.Tensor, mean: tf.Tensor, std: tf.Tensor) -> tf.Tensor:
        return tf.cast(standardize(images, mean, std), dtype)

    return fn


def random_dihedral(images: tf.Tensor) -> tf.Tensor:
    """Apply one of the 8 symmetries of the square to each image of a square batch."""
    b = tf.shape(images)[0]
    coins = tf.random.uniform([3, b], 0, 2, dtype=tf.int32) > 0

    def where(flag: tf.Tensor, a: tf.Tensor, other: tf.Tensor) -> tf.Tensor:
        return tf.where(flag[:, None, None, None], a, other)

    images = where(coins[0], tf.transpose(images, [0, 2, 1, 3]), images)
    images = where(coins[1], tf.reverse(images, [1]), images)
    return where(coins[2], tf.reverse(images, [2]), images)


def jitter_stats(
    mean: tf.Tensor, std: tf.Tensor, scale: float, shift: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Fold ``z' = a * z + b`` (per example and channel) into the statistics.

    ``a * (x - m) / s + b == (x - (m - b * s / a)) / (s / a)``.
    """
    shape = tf.shape(mean)
    a = tf.random.uniform(shape, 1.0 - scale, 1.0 + scale)
    b = tf.random.uniform(shape, -shift, shift) if shift > 0 else tf.zeros(shape)
    return mean - b * std / a, std / a

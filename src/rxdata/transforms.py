"""TensorFlow normalization and augmentation arithmetic: the one home of the tf.data math.

Each is a plain function on tensors, testable alone and composed by
:func:`rxdata.pipeline.make_dataset`. The numpy twins live in
:mod:`rxdata.normalization`; the tests check both agree.

* Statistics: :func:`stats_lookup` turns a :class:`~rxdata.normalization.Normalizer`
  into an in-graph ``tf.lookup.StaticHashTable``: ``(experiment, plate) -> (mean, std)``,
  keyed as :meth:`Normalizer.group_key <rxdata.normalization.Normalizer.group_key>` keys;
  :func:`image_moments` measures each image's own (mode ``image``);
  :func:`stats_function` picks one of them for a batch.
* Arithmetic: :func:`standardize` is THE ``(x - mean) / std`` (per example or per site,
  float32); :func:`standardize_image` and :func:`normalize_fn` are built on it.
  (:class:`rxdata.layers.Standardize` does the same in the model, in ``keras.ops``.)
* Augmentation: the 8 symmetries of the square (:func:`random_dihedral`) and intensity
  jitter folded into the statistics (:func:`jitter_stats`).

Example:
    >>> import tensorflow as tf
    >>> x = tf.constant([[[[10, 20]]]], tf.uint8)
    >>> standardize(x, tf.constant([[4.0, 5.0]]), tf.constant([[2.0, 3.0]])).numpy()
    array([[[[3., 5.]]]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError, StatsError
from rxdata.normalization import Normalizer

__all__ = [
    "LookupFn",
    "StatsFn",
    "compiled",
    "image_moments",
    "jitter_stats",
    "normalize_fn",
    "random_dihedral",
    "standardize",
    "standardize_as",
    "standardize_image",
    "stats_function",
    "stats_lookup",
]

#: ``(parsed batch dict, uint8 images [B, H, W, C]) -> (mean [B, C], std [B, C])``.
StatsFn = Any  # (parsed batch dict, uint8 images [B, H, W, C]) -> (mean [B, C], std [B, C])
#: ``(experiment, plate) -> (mean, std)``: scalars give ``(C,)``, vectors ``(B, C)``.
LookupFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def compiled(fn: Callable[..., Any], jit: bool) -> Callable[..., Any]:
    """``fn`` as an XLA-compiled ``tf.function`` when ``jit``, else ``fn`` itself.

    Example:
        >>> compiled(standardize, False) is standardize
        True
    """
    return tf.function(fn, jit_compile=True, reduce_retracing=True, autograph=False) if jit else fn


# ---------------------------------------------------------------------------------------
# The arithmetic
# ---------------------------------------------------------------------------------------
def standardize(images: tf.Tensor, mean: tf.Tensor, std: tf.Tensor) -> tf.Tensor:
    """``(images - mean) / std`` in float32, per image (or batch entry) and channel.

    The one place of this arithmetic on the tf.data side: the CPU path of
    :func:`rxdata.pipeline.make_dataset`, :func:`standardize_image` and
    :func:`normalize_fn` all call it. :class:`rxdata.layers.Standardize` does the same
    in the model.

    Args:
        images: ``[B, H, W, C]`` or one site ``[H, W, C]`` (any real dtype).
        mean: ``[B, C]`` (or ``[C]``): the statistics' leading axes match the images'.
        std: Same shape as ``mean``.

    Example:
        >>> x = tf.constant([[[[10, 20]]]], tf.uint8)
        >>> standardize(x, tf.constant([[4.0, 5.0]]), tf.constant([[2.0, 3.0]])).numpy()
        array([[[[3., 5.]]]], dtype=float32)
        >>> standardize(x[0], tf.constant([4.0, 5.0]), tf.constant([2.0, 3.0])).shape
        TensorShape([1, 1, 2])
    """
    x = tf.cast(images, tf.float32)
    return (x - mean[..., None, None, :]) / std[..., None, None, :]


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


def image_moments(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per image and channel mean and ``max(std, 1/sqrt(H*W))`` (mode ``image``).

    The floor keeps a blank channel finite, as :func:`rxdata.normalization.standardize_image`
    does; this is the only place of that rule on the TensorFlow side.

    Args:
        images: ``[..., H, W, C]`` (a batch or one site).

    Returns:
        ``(mean, std)``, each ``[..., C]`` in float32.

    Example:
        >>> mean, std = image_moments(tf.constant([[[0], [2]]], tf.uint8))
        >>> mean.numpy().tolist(), std.numpy().tolist()
        ([1.0], [1.0])
    """
    x = tf.cast(images, tf.float32)
    mean = tf.reduce_mean(x, axis=[-3, -2])
    var = tf.reduce_mean(tf.square(x - mean[..., None, None, :]), axis=[-3, -2])
    shape = tf.shape(x)
    pixels = tf.cast(shape[-3] * shape[-2], tf.float32)
    return mean, tf.maximum(tf.sqrt(var), 1.0 / tf.sqrt(pixels))


def standardize_image(images: tf.Tensor | np.ndarray) -> tf.Tensor:
    """Twin of :func:`rxdata.normalization.standardize_image`, for ``(..., H, W, C)``.

    Per image and channel, ``(x - mean) / max(std, 1/sqrt(H*W))`` in ``float32``
    (:func:`image_moments`, then :func:`standardize`).

    Example:
        >>> import numpy as np
        >>> standardize_image(np.array([[[0], [2]]], np.uint8))[..., 0].numpy().tolist()
        [[-1.0, 1.0]]
    """
    x = tf.convert_to_tensor(images)
    mean, std = image_moments(x)
    return standardize(x, mean, std)


# ---------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------
def _group_keys(normalizer: Normalizer, experiment: tf.Tensor, plate: tf.Tensor) -> tf.Tensor:
    """In-graph twin of :meth:`Normalizer.group_key`."""
    experiment = tf.convert_to_tensor(experiment, dtype=tf.string)
    if normalizer.mode == "experiment":
        return experiment
    plate = tf.convert_to_tensor(plate)
    if plate.dtype not in (tf.int8, tf.int16, tf.int32, tf.int64):
        plate = tf.cast(plate, tf.int64)
    return tf.strings.join([experiment, tf.strings.as_string(plate)], separator="/")


def stats_lookup(normalizer: Normalizer, channels: Sequence[int] | None = None) -> LookupFn:
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
        return standardize(image, *lookup(experiment, plate))

    apply.lookup = lookup  # type: ignore[attr-defined]
    return apply


def stats_function(
    normalizer: Normalizer | None,
    channels: tuple[int, ...] | None,
    stored: int,
    dtype: str,
    jit: bool = True,
) -> StatsFn | None:
    """Per-example (mean, std) for a batch, in float32; ``None`` for ``dtype="uint8"``.

    ``normalizer=None`` gives ``(0, 255)``: pixels scaled to ``[0, 1]``.

    Raises:
        OptionsError: ``normalizer`` is not a :class:`~rxdata.normalization.Normalizer`,
            or lacks statistics for one of ``channels``.

    Example:
        >>> fn = stats_function(None, None, stored=2, dtype="float32")
        >>> [t.numpy().tolist() for t in fn({}, tf.zeros([1, 4, 4, 2], tf.uint8))]
        [[[0.0, 0.0]], [[255.0, 255.0]]]
    """
    if dtype == "uint8":
        return None
    picked = list(channels) if channels is not None else list(range(1, stored + 1))
    n = len(picked)
    if normalizer is None:

        def unit(parsed: dict[str, tf.Tensor], images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            b = tf.shape(images)[0]
            return tf.zeros([b, n], tf.float32), tf.fill([b, n], tf.constant(255.0))

        return unit
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
    lookup = stats_lookup(normalizer, channels=picked)

    def by_group(parsed: dict[str, tf.Tensor], images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        mean, std = lookup(parsed[tfr.EXPERIMENT], parsed[tfr.PLATE])
        return tf.cast(mean, tf.float32), tf.cast(std, tf.float32)

    return by_group


# ---------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------
def random_dihedral(images: tf.Tensor) -> tf.Tensor:
    """Apply one of the 8 symmetries of the square to each image of a square batch.

    Example:
        >>> x = tf.reshape(tf.range(4), [1, 2, 2, 1])
        >>> sorted(random_dihedral(x).numpy().ravel().tolist())
        [0, 1, 2, 3]
    """
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

    ``a * (x - m) / s + b == (x - (m - b * s / a)) / (s / a)``, with
    ``a ~ U(1 - scale, 1 + scale)`` and ``b ~ U(-shift, shift)``.

    Example:
        >>> mean, std = jitter_stats(tf.constant([[1.0]]), tf.constant([[2.0]]), 0.0, 0.0)
        >>> mean.numpy().tolist(), std.numpy().tolist()
        ([[1.0]], [[2.0]])
    """
    shape = tf.shape(mean)
    a = tf.random.uniform(shape, 1.0 - scale, 1.0 + scale)
    b = tf.random.uniform(shape, -shift, shift) if shift > 0 else tf.zeros(shape)
    return mean - b * std / a, std / a

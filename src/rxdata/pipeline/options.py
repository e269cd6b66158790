"""The options of :func:`~rxdata.pipeline.make_dataset`, one small group per concern.

Each group is a frozen dataclass that checks its own fields (raising
:class:`~rxdata.errors.OptionsError` naming the field, the value and what is allowed) and
says next to each default why it was chosen. A stage of the pipeline takes only the group
it needs, so it can be tested with that group alone:

=====================  ============================================================
:class:`ReadOptions`   how shards are read: compression, bad records, buffers, threads
:class:`OrderOptions`  the order of sites and their grouping into batches
:class:`AugmentOptions`  crops, resizing, dihedral symmetries, intensity jitter
:class:`PlacementOptions`  channels, dtype, and where normalization runs (CPU/accelerator)
:class:`DistributeOptions`  the tf.data service that may run the per-record work
=====================  ============================================================

:class:`PipelineOptions` is every group at once, spelled flat as users always wrote it
(``PipelineOptions(dtype="bfloat16", dihedral=True)``): it *is* a ``ReadOptions``, an
``AugmentOptions``, ... so any stage accepts it.

Example:
    >>> opts = PipelineOptions(on_error="skip", crop_size=256)
    >>> isinstance(opts, ReadOptions), opts.on_error, opts.crop
    (True, 'skip', (256, 256))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import tensorflow as tf

from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError
from rxdata.service import DEFAULT_TIMEOUT_S, check_seconds

__all__ = [
    "AUTOTUNE",
    "AugmentOptions",
    "DistributeOptions",
    "OrderOptions",
    "PipelineOptions",
    "PlacementOptions",
    "ReadOptions",
]

AUTOTUNE = tf.data.AUTOTUNE
_DTYPES = ("float32", "bfloat16", "float16", "uint8")
_COMPRESSIONS = ("auto", *tfr.COMPRESSIONS)
_SERVICE = re.compile(r"^(grpc://)?[^:/\s]+:[0-9]{1,5}$")


def _pair(value: int | Sequence[int] | None, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair
    ):
        raise OptionsError(f"{name}={value!r}; expected a positive int or (height, width)")
    return int(pair[0]), int(pair[1])


def _check_flag(value: object, name: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, bool):
        allowed = "True, False or None" if optional else "True or False"
        raise OptionsError(f"{name}={value!r}; expected {allowed}")


def _check_count(value: object, name: str, minimum: int, expected: str) -> None:
    """``value`` is an int >= ``minimum`` (not a bool); else an error saying ``expected``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionsError(f"{name}={value!r}; expected {expected}")


def _check_choice(value: object, name: str, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise OptionsError(f"{name}={value!r}; allowed: {', '.join(map(str, allowed))}")


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """How shards are read: compression, bad records, read buffers and parallelism.

    Attributes:
        compression: ``"auto"`` (detect per file) or a fixed one for every file.
        on_error: ``"raise"`` a TensorFlow error on a corrupt/truncated shard or a bad
            record; ``"skip"`` bad records (a corrupt or truncated shard ends at the
            damage; in a GZIP/ZLIB shard TensorFlow may also lose up to 256 KiB of
            inflated records before it, see docs/pipeline.md); ``"warn"``: skip and log
            each error. Use :func:`rxdata.read_tfrecord` to find, count and salvage bad
            records in a file. Not about layouts: shards of different layouts raise.
        read_buffer_bytes: Read buffer per shard; ``None`` is TF's default locally and
            16 MiB for remote (``gs://``) files.
        cycle_length: Shards read at once by ``interleave``; ``None``: min(#files, 16).
        num_parallel_calls: Parallelism of parse/decode/transform maps.
        prefetch: Batches prefetched (``AUTOTUNE`` by default).

    Example:
        >>> ReadOptions(on_error="skip").tolerant
        True
        >>> ReadOptions(prefetch=-3)
        Traceback (most recent call last):
        ...
        rxdata.errors.OptionsError: prefetch=-3; expected an int >= 0 or AUTOTUNE
    """

    compression: Literal["auto", "none", "gzip", "zlib"] = "auto"  # no flag to get wrong
    on_error: Literal["raise", "skip", "warn"] = "raise"  # silent data loss is worse
    read_buffer_bytes: int | None = None  # TF's 256 KiB is fine on local disks; object
    # stores need large reads to reach their bandwidth
    cycle_length: int | None = None  # min(#files, 16): enough open shards to mix well and
    # overlap reads, few enough to bound memory (one read buffer each)
    num_parallel_calls: int = AUTOTUNE  # tf.data sizes the thread pool to the machine
    prefetch: int = AUTOTUNE  # overlap input with the training step

    def __post_init__(self) -> None:
        _check_choice(self.compression, "compression", _COMPRESSIONS)
        _check_choice(self.on_error, "on_error", ("raise", "skip", "warn"))
        if self.read_buffer_bytes is not None and (
            not isinstance(self.read_buffer_bytes, int) or self.read_buffer_bytes < 1
        ):
            raise OptionsError(f"read_buffer_bytes={self.read_buffer_bytes!r}; expected int >= 1")
        for name in ("cycle_length", "num_parallel_calls"):
            value = getattr(self, name)
            if value is not None and value != AUTOTUNE:
                _check_count(value, name, 1, "a positive int, AUTOTUNE or None")
        if self.prefetch != AUTOTUNE:
            _check_count(self.prefetch, "prefetch", 0, "an int >= 0 or AUTOTUNE")

    @property
    def tolerant(self) -> bool:
        """Whether bad records are dropped (``on_error`` is ``"skip"`` or ``"warn"``)."""
        return self.on_error != "raise"


@dataclass(frozen=True, kw_only=True)
class OrderOptions:
    """The order of sites and how they are grouped into batches.

    Attributes:
        shuffle_buffer: Serialized records in the shuffle buffer (training).
        seed: Seed of file-order and record shuffles (``None``: nondeterministic). A
            reproducible training order also needs ``deterministic=True`` (parallel
            reads otherwise let faster shards run ahead); augmentation draws are not
            seeded.
        deterministic: Force a deterministic element order; ``None`` means only when not
            training.
        repeat: Repeat the (reshuffled) data forever in training.
        drop_remainder: Drop the last partial batch; ``None`` means training only.
        batch_by: ``"plate"`` or ``"experiment"``: every batch holds sites of a single
            plate (or experiment), as the 5th-place RxRx1 solution trained, so that
            BatchNorm statistics are those of one batch of the assay. Each group keeps
            up to one partial batch in memory (decoded, for png records); a group's last
            partial batch is dropped when batches are. ``None``: batches mix groups.

    Example:
        >>> order = OrderOptions()
        >>> order.is_deterministic(training=True), order.drops_remainder(training=True)
        (False, True)
    """

    shuffle_buffer: int = 256  # records, not sites decoded: ~0.4 GB of raw 512x512x6
    # records; file-order shuffling and interleave already mix shards (and the random
    # conversion strategy mixes sites within a shard), so a small buffer suffices
    seed: int | None = None  # a fresh order each run, as training wants by default
    deterministic: bool | None = None  # training: let faster shards run ahead
    repeat: bool = False  # finite epochs for Keras `fit(epochs=...)`; True + steps_per_epoch
    # keeps one iterator alive (tearing AUTOTUNE iterators down can stall for seconds)
    drop_remainder: bool | None = None  # static batch shapes in training (TPUs need them);
    # evaluation must see every site
    batch_by: Literal["plate", "experiment"] | None = None  # mixed batches: BatchNorm sees
    # the data set's statistics; group-pure batches are a training method, chosen per model

    def __post_init__(self) -> None:
        _check_count(self.shuffle_buffer, "shuffle_buffer", 1, "an int >= 1")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise OptionsError(f"seed={self.seed!r}; expected an int or None")
        _check_flag(self.drop_remainder, "drop_remainder", optional=True)
        _check_flag(self.deterministic, "deterministic", optional=True)
        _check_flag(self.repeat, "repeat")
        _check_choice(self.batch_by, "batch_by", (None, "plate", "experiment"))

    def is_deterministic(self, training: bool) -> bool:
        """``deterministic``, or when ``None``: only when not training."""
        return (not training) if self.deterministic is None else self.deterministic

    def drops_remainder(self, training: bool) -> bool:
        """``drop_remainder``, or when ``None``: in training only."""
        return training if self.drop_remainder is None else self.drop_remainder


@dataclass(frozen=True, kw_only=True)
class AugmentOptions:
    """Geometry and augmentation of the batches.

    Attributes:
        crop_size: Random crop (training) or centre crop (evaluation) to this size.
        resize_to: Resize (bilinear, after cropping) to this size; the result is rounded
            back to uint8, so both normalization paths see the same pixels.
        dihedral: Random flips and 90-degree rotations (the 8 symmetries of the square)
            in training. Needs square images.
        intensity_jitter: ``(scale, shift)``: in training each example's channels are
            multiplied by ``U(1 - scale, 1 + scale)`` and shifted by ``U(-shift, shift)``
            in normalized units. Applied through the mean/std, so it costs nothing and
            gives the same result on either normalization path.

    Example:
        >>> aug = AugmentOptions(crop_size=(96, 128), intensity_jitter=(0.1, 0))
        >>> aug.crop, aug.resize, aug.intensity_jitter
        ((96, 128), None, (0.1, 0.0))
    """

    crop_size: int | tuple[int, int] | None = None  # the full 512x512 field by default
    resize_to: int | tuple[int, int] | None = None  # the stored size: no resampling
    dihedral: bool = False  # augmentation is the model's choice, not the reader's
    intensity_jitter: tuple[float, float] = (0.0, 0.0)  # off, for the same reason
    crop: tuple[int, int] | None = field(init=False, repr=False, compare=False, default=None)
    resize: tuple[int, int] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop", _pair(self.crop_size, "crop_size"))
        object.__setattr__(self, "resize", _pair(self.resize_to, "resize_to"))
        _check_flag(self.dihedral, "dihedral")
        jitter = tuple(self.intensity_jitter)
        if len(jitter) != 2 or not all(isinstance(v, (int, float)) for v in jitter):
            raise OptionsError(
                f"intensity_jitter={self.intensity_jitter!r}; expected (scale, shift)"
            )
        if not (0 <= jitter[0] < 1 and jitter[1] >= 0):
            raise OptionsError(
                f"intensity_jitter={self.intensity_jitter!r}; need 0 <= scale < 1, shift >= 0"
            )
        object.__setattr__(self, "intensity_jitter", (float(jitter[0]), float(jitter[1])))


@dataclass(frozen=True, kw_only=True)
class PlacementOptions:
    """Which channels the batches hold, their dtype, and where normalization runs.

    Attributes:
        channels: Channel numbers (1-based, as in RxRx1's ``w1..w6``) to keep, in order;
            ``None`` keeps every stored channel. Stored channels are numbered 1..C. For
            png records only these channels are decoded.
        dtype: Image dtype of the batch: ``float32``, ``bfloat16``, ``float16``, or
            ``uint8`` (unnormalized pixels; no normalizer allowed).
        normalize_on: ``"cpu"`` (normalize in the pipeline) or ``"accelerator"`` (ship
            uint8 images plus ``mean``/``std``; see :mod:`rxdata.pipeline`).
        jit: Compile the per-batch normalization arithmetic with XLA (one fused pass over
            the pixels instead of three; the same values).

    Example:
        >>> PlacementOptions(channels=[3, 1]).channels
        (3, 1)
        >>> PlacementOptions(normalize_on="gpu")
        Traceback (most recent call last):
        ...
        rxdata.errors.OptionsError: normalize_on='gpu'; allowed: cpu, accelerator
    """

    channels: tuple[int, ...] | None = None  # all stored channels: the model decides
    dtype: Literal["float32", "bfloat16", "float16", "uint8"] = "float32"  # safe everywhere;
    # bfloat16 on TPUs, float16 on tensor-core GPUs halve host->device bytes
    normalize_on: Literal["cpu", "accelerator"] = "cpu"  # plain (images, labels) batches
    # that any model accepts; "accelerator" is the fast path (docs/performance.md)
    jit: bool = True  # XLA fuses cast + normalize into one pass: ~5x faster on CPU,
    # bit-identical results (docs/performance.md)

    def __post_init__(self) -> None:
        if self.channels is not None:
            channels = tuple(self.channels)
            if not channels or any(
                isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1
                for c in channels
            ):
                raise OptionsError(
                    f"channels={self.channels!r}; expected channel numbers >= 1 (RxRx1: 1..6)"
                )
            if len(set(channels)) != len(channels):
                raise OptionsError(f"channels={self.channels!r} repeats a channel")
            object.__setattr__(self, "channels", tuple(int(c) for c in channels))
        _check_choice(self.dtype, "dtype", _DTYPES)
        _check_choice(self.normalize_on, "normalize_on", ("cpu", "accelerator"))
        if self.normalize_on == "accelerator" and self.dtype == "uint8":
            raise OptionsError("normalize_on='accelerator' already ships uint8; keep dtype float")
        _check_flag(self.jit, "jit")


@dataclass(frozen=True, kw_only=True)
class DistributeOptions:
    """Where the per-record work runs.

    Attributes:
        data_service: Address of a tf.data service dispatcher (``"grpc://HOST:PORT"``,
            started with :mod:`rxdata.service`). Training only: the service's workers
            read, parse, decode, crop, augment, normalize and batch; shards are split
            among them dynamically (``ShardingPolicy.DYNAMIC``), so each epoch covers
            every site once. The shards must be readable from the workers at the same
            paths (shared disk or ``gs://``). See docs/pipeline.md.
        data_service_timeout: Seconds :func:`~rxdata.pipeline.make_dataset` waits for the
            dispatcher to accept a connection before raising
            :class:`~rxdata.errors.UnreachableError` naming the address (TensorFlow alone
            would retry forever). Only with ``data_service``, as ``dask_timeout`` only
            with ``dask_address`` in :class:`~rxdata.conversion.ConvertOptions`.

    Example:
        >>> DistributeOptions(data_service="cpu-0:5050").data_service
        'cpu-0:5050'
        >>> DistributeOptions(data_service="cpu-0:5050", data_service_timeout=60)
        DistributeOptions(data_service='cpu-0:5050', data_service_timeout=60.0)
    """

    data_service: str | None = None  # the per-record work runs on this host's CPUs unless
    # a tf.data service is named ("grpc://HOST:PORT"; see rxdata.service)
    data_service_timeout: float = DEFAULT_TIMEOUT_S  # 10 s: a connect takes milliseconds
    # even on a busy network; short enough that a wrong address fails before training

    def __post_init__(self) -> None:
        if self.data_service is not None and (
            not isinstance(self.data_service, str) or not _SERVICE.match(self.data_service)
        ):
            raise OptionsError(
                f"data_service={self.data_service!r}; expected the dispatcher address "
                "'grpc://HOST:PORT' (or 'HOST:PORT'), or None"
            )
        timeout = check_seconds("data_service_timeout", self.data_service_timeout)
        object.__setattr__(self, "data_service_timeout", timeout)
        if self.data_service is None and timeout != DEFAULT_TIMEOUT_S:
            raise OptionsError(
                f"data_service_timeout={self.data_service_timeout!r} has no effect without "
                "data_service (it bounds the wait for the dispatcher); pass both, or neither"
            )


_GROUPS = (ReadOptions, OrderOptions, AugmentOptions, PlacementOptions, DistributeOptions)


# Bases in reverse: a dataclass lists the fields of its last base first, so the fields
# read (and repr) in pipeline order: reading, order, augmentation, placement, distribution.
@dataclass(frozen=True, kw_only=True)
class PipelineOptions(
    DistributeOptions, PlacementOptions, AugmentOptions, OrderOptions, ReadOptions
):
    """How :func:`~rxdata.pipeline.make_dataset` reads, transforms and feeds examples.

    Every group's fields, spelled flat; each group checks its own (the field
    documentation and the reason for each default are on the groups:
    :class:`ReadOptions`, :class:`OrderOptions`, :class:`AugmentOptions`,
    :class:`PlacementOptions`, :class:`DistributeOptions`). The defaults are chosen for
    training on the full RxRx1 set (512x512x6 sites) on one host.

    Example:
        >>> opts = PipelineOptions(channels=(1, 2, 3), dtype="bfloat16", dihedral=True)
        >>> opts.channels, opts.dtype, opts.drop_remainder
        ((1, 2, 3), 'bfloat16', None)
        >>> PipelineOptions(channels=(0, 7))
        Traceback (most recent call last):
        ...
        rxdata.errors.OptionsError: ...
    """

    def __post_init__(self) -> None:
        for group in _GROUPS:
            group.__post_init__(self)

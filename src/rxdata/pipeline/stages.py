"""The stages of :func:`~rxdata.pipeline.make_dataset`, each a plain function.

In the order the pipeline runs them:

=====================  =================================================================
:func:`list_shards`    the source (globs, paths) -> the shard files, checked to exist
:func:`check_layout`   one record layout for every shard, and what the options make of it
:func:`read_records`   files -> serialized records (interleaved, sharded, bad ones dropped)
:func:`filter_sites`   keep the :class:`~rxdata.pipeline.selection.Selection`'s sites
:func:`shuffle`        a buffer of serialized records, in training
:func:`parse`          serialized -> feature dicts with decoded ``uint8`` images
:func:`batch`          mixed batches or one plate/experiment per batch
:func:`add_statistics`  each example's ``mean``/``std`` (of the full site)
:func:`augment`        crop, resize, dihedral symmetries, intensity jitter
:func:`normalize`      standardize on the CPU, or ship uint8 plus statistics
:func:`pack`           the batch structure (``tuple`` or ``dict``)
:func:`distribute`     hand everything above to the tf.data service
:func:`prefetch`       overlap input with the training step
=====================  =================================================================

Dataset stages take and return a ``tf.data.Dataset``; the per-batch stages
(:func:`add_statistics` .. :func:`pack`) take and return a batch dict and run inside one
``map`` (:class:`BatchTransform`), so that splitting them costs nothing at run time. Each
takes only the option group it needs (:mod:`rxdata.pipeline.options`), so a test builds
a stage with that group alone.

Example:
    >>> import tensorflow as tf
    >>> from rxdata.pipeline.options import AugmentOptions
    >>> from rxdata.reader import RecordLayout
    >>> geo = Geometry(RecordLayout("raw", 4, 4, 1), select=None, channels=1, size=(2, 2))
    >>> out = augment({"image": tf.zeros([3, 4, 4, 1], tf.uint8)}, geo,
    ...               AugmentOptions(crop_size=2), training=True)
    >>> out["image"].shape
    TensorShape([3, 2, 2, 1])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import tensorflow as tf

from rxdata import _io, reader
from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError
from rxdata.pipeline.options import (
    AUTOTUNE,
    AugmentOptions,
    DistributeOptions,
    OrderOptions,
    PlacementOptions,
    ReadOptions,
)
from rxdata.pipeline.selection import Predicate, Selection
from rxdata.reader import RecordLayout
from rxdata.service import check_reachable
from rxdata.transforms import StatsFn, compiled, jitter_stats, random_dihedral, standardize_as

__all__ = [
    "META_KEYS",
    "BatchTransform",
    "Geometry",
    "Source",
    "add_statistics",
    "augment",
    "batch",
    "check_layout",
    "check_service_use",
    "distribute",
    "filter_sites",
    "list_shards",
    "normalize",
    "pack",
    "parse",
    "prefetch",
    "read_records",
    "shuffle",
    "transform_batches",
]

#: What :func:`list_shards` accepts: a glob (local or ``gs://``) or a list of globs/paths.
Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
#: The site metadata every example carries in ``output="dict"``.
META_KEYS = (
    tfr.ID_CODE,
    tfr.SITE,
    tfr.EXPERIMENT,
    tfr.PLATE,
    tfr.WELL,
    tfr.CELL_TYPE,
    tfr.WELL_TYPE,
    tfr.DATASET,
    tfr.SIRNA_ID,
)
_TF_COMPRESSION = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}
# The functions handed to tf.data use Python control flow only while tracing, so AutoGraph
# has nothing to convert; skipping it saves tracing time and spurious warnings.
_F = TypeVar("_F", bound=Callable[..., Any])


def _no_autograph(fn: _F) -> _F:
    return cast("_F", tf.autograph.experimental.do_not_convert(fn))


# ---------------------------------------------------------------------------------------
# Build time: which files, which layout
# ---------------------------------------------------------------------------------------
def list_shards(source: Source) -> list[str]:
    """The shard files of ``source``, each a literal path (:func:`rxdata.reader.list_shards`).

    A path that names an existing file is read as itself, even if it holds glob
    characters (``plate[1].tfrecord``). This is the one place where a source becomes
    files: another kind of source (a conversion folder) is resolved here, and every
    later stage sees only the list of shard paths.

    Raises:
        FileNotFoundError: No file matches a pattern.

    Example:
        >>> import numpy as np
        >>> from rxdata import tfrecord
        >>> _ = tfrecord.write_shard("s.tfrecord", [tfrecord.encode_example(
        ...     {"experiment": "RPE-01", "plate": 1, "well": "B02", "site": 1},
        ...     image=np.zeros((2, 2, 6), np.uint8))])
        >>> list_shards("s.tfrec*")
        ['s.tfrecord']
    """
    return reader.list_shards(source)


@dataclass(frozen=True)
class Geometry:
    """What the batches hold: the shards' layout and what the options make of it.

    Attributes:
        layout: The shards' encoding, image size and stored channels.
        select: The 0-based stored channels to keep, in order; ``None``: all of them.
        channels: Channels per image in the batches.
        size: ``(height, width)`` of the images in the batches (after crop and resize).
    """

    layout: RecordLayout
    select: tuple[int, ...] | None
    channels: int
    size: tuple[int, int]


def check_layout(
    files: Sequence[str],
    read: ReadOptions,
    placement: PlacementOptions,
    augmentation: AugmentOptions,
    training: bool,
) -> Geometry:
    """The one layout of ``files``, and the geometry of the batches under the options.

    The layout is :func:`rxdata.reader.common_layout`'s: the first good record of each
    shard is read now, at build time.

    Raises:
        RecordError: No readable record, or shards of different layouts.
        OptionsError: ``channels`` the records do not hold, a crop larger than the
            images, or ``dihedral`` on images that are not square.
    """
    remote = any(_io.is_remote(f) for f in files)
    layout = reader.common_layout(files, read.on_error, remote, read.compression)
    stored = layout.channels
    select = None if placement.channels is None else tuple(c - 1 for c in placement.channels)
    if select is not None and max(select) >= stored:
        raise OptionsError(f"channels={placement.channels}; the records hold channels 1..{stored}")
    size = (layout.height, layout.width)
    if augmentation.crop is not None:
        if augmentation.crop[0] > layout.height or augmentation.crop[1] > layout.width:
            raise OptionsError(
                f"crop_size={augmentation.crop_size!r} is larger than the {layout.height}x"
                f"{layout.width} images"
            )
        size = augmentation.crop
    if augmentation.resize is not None:
        size = augmentation.resize
    if augmentation.dihedral and training and size[0] != size[1]:
        raise OptionsError(
            f"dihedral=True needs square images, these are {size[0]}x{size[1]}; set "
            "crop_size or resize_to to a square"
        )
    channels = stored if select is None else len(select)
    return Geometry(layout=layout, select=select, channels=channels, size=size)


# ---------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------
def _compressions(files: Sequence[str], read: ReadOptions, remote: bool) -> list[str]:
    """TensorFlow's compression name of each file."""
    if read.compression != "auto":
        return [_TF_COMPRESSION[read.compression]] * len(files)
    # a few bytes per file; threads hide object-store latency for many shards
    with ThreadPoolExecutor(max_workers=16 if remote else 4) as pool:
        return [_TF_COMPRESSION[c] for c in pool.map(tfr.detect_compression, files)]


def _valid_record(layout: RecordLayout) -> Callable[[tf.Tensor], tf.Tensor]:
    """Keep a raw record whose image has the data set's byte length.

    A record that does not parse raises instead, which ``ignore_errors`` drops.
    """
    nbytes = layout.height * layout.width * layout.channels

    @_no_autograph
    def valid(serialized: tf.Tensor) -> tf.Tensor:
        parsed = tfr.parse_example(
            serialized,
            encoding="raw",
            channels=layout.channels,
            keys=[tfr.IMAGE, tfr.ID_CODE, tfr.SITE, tfr.SIRNA_ID],
        )
        return tf.equal(tf.strings.length(parsed[tfr.IMAGE]), nbytes)

    return valid


def read_records(
    files: Sequence[str],
    layout: RecordLayout,
    read: ReadOptions,
    order: OrderOptions,
    *,
    training: bool,
    shard: tuple[int, int] = (1, 0),
    absolute: bool = False,
) -> tf.data.Dataset:
    """Serialized records of ``files``, read in parallel (``interleave``).

    In training the file order is shuffled (and repeated with ``order.repeat``); bad
    records are dropped when ``read.on_error`` tolerates them.

    Args:
        files: The shards (from :func:`list_shards`).
        layout: Their layout (from :func:`check_layout`).
        read: Compression, error policy, read buffers, interleave width.
        order: File-order seed, repeat, determinism.
        training: Shuffle (and repeat) the file order.
        shard: ``(count, index)``: this input pipeline reads every count-th shard (or
            every count-th record when there are fewer shards than pipelines).
        absolute: Make the paths absolute (tf.data service workers may run elsewhere).

    Example:
        >>> import numpy as np
        >>> from rxdata import tfrecord
        >>> from rxdata.pipeline.options import OrderOptions, ReadOptions
        >>> _ = tfrecord.write_shard("r.tfrecord", [tfrecord.encode_example(
        ...     {"experiment": "RPE-01", "plate": 1, "well": "B02", "site": s},
        ...     image=np.zeros((2, 2, 6), np.uint8)) for s in (1, 2)])
        >>> ds = read_records(["r.tfrecord"], RecordLayout("raw", 2, 2, 6), ReadOptions(),
        ...                   OrderOptions(), training=False)
        >>> len(list(ds))
        2
    """
    remote = any(_io.is_remote(f) for f in files)
    buffer = read.read_buffer_bytes or (16 << 20 if remote else None)
    compressions = _compressions(files, read, remote)
    paths = [_io.absolute(f) for f in files] if absolute else list(files)
    deterministic = order.is_deterministic(training)
    ds = tf.data.Dataset.from_tensor_slices((paths, compressions))
    count, index = shard
    shard_records = count > 1 and len(files) < count
    if count > 1 and not shard_records:
        ds = ds.shard(count, index)
    if training:
        ds = ds.shuffle(len(files), seed=order.seed, reshuffle_each_iteration=True)
        if order.repeat:
            ds = ds.repeat()
    cycle = read.cycle_length or min(len(files), 16)
    tolerant, log_errors = read.tolerant, read.on_error == "warn"

    @_no_autograph
    def read_file(path: tf.Tensor, compression: tf.Tensor) -> tf.data.Dataset:
        records = tf.data.TFRecordDataset(path, compression_type=compression, buffer_size=buffer)
        # a corrupt or truncated shard ends at the damage (framing cannot resynchronise)
        return records.ignore_errors(log_warning=log_errors) if tolerant else records

    ds = ds.interleave(
        read_file,
        cycle_length=cycle,
        block_length=1,
        num_parallel_calls=AUTOTUNE if cycle > 1 else None,
        deterministic=deterministic if cycle > 1 else None,
    )
    if shard_records:
        ds = ds.shard(count, index)
    if tolerant and layout.encoding == "raw":  # drop bad records before they spoil a batch
        ds = ds.filter(_valid_record(layout)).ignore_errors(log_warning=log_errors)
    return ds


def filter_sites(
    ds: tf.data.Dataset,
    selection: Selection,
    layout: RecordLayout,
    read: ReadOptions,
    *,
    label: str | None,
    training: bool,
) -> tf.data.Dataset:
    """Keep the sites of ``selection`` (and, training on ``sirna_id``, labelled sites).

    Filters parse only the small features they read, never the image; a record too
    broken to filter is a bad record (dropped when ``read.on_error`` tolerates them).

    Example:
        >>> import numpy as np
        >>> from rxdata import tfrecord
        >>> from rxdata.pipeline.options import ReadOptions
        >>> ds = tf.data.Dataset.from_tensor_slices([tfrecord.encode_example(
        ...     {"experiment": e, "plate": 1, "well": "B02", "site": 1},
        ...     image=np.zeros((2, 2, 6), np.uint8)) for e in ("RPE-01", "U2OS-01")])
        >>> kept = filter_sites(ds, Selection(cell_types="U2OS"), RecordLayout("raw", 2, 2, 6),
        ...                     ReadOptions(), label=None, training=False)
        >>> len(list(kept))
        1
    """
    predicates: list[Predicate] = []
    if label == tfr.SIRNA_ID and training:
        predicates.append((frozenset({tfr.SIRNA_ID}), lambda p: p[tfr.SIRNA_ID] >= 0))
    predicates += selection.predicates()
    if not predicates:
        return ds
    needed: set[str] = set().union(*(keys for keys, _ in predicates))

    @_no_autograph
    def keep(serialized: tf.Tensor) -> tf.Tensor:
        parsed = tfr.parse_example(
            serialized, encoding=layout.encoding, channels=layout.channels, keys=needed
        )
        result = tf.constant(True)
        for _, fn in predicates:
            result = tf.logical_and(result, fn(parsed))
        return result

    ds = ds.filter(keep)
    if read.tolerant:
        ds = ds.ignore_errors(log_warning=read.on_error == "warn")
    return ds


def shuffle(ds: tf.data.Dataset, order: OrderOptions, *, training: bool) -> tf.data.Dataset:
    """In training, shuffle serialized records in a buffer of ``order.shuffle_buffer``.

    Before decoding: a record costs its bytes, a decoded png site six times more.

    Example:
        >>> from rxdata.pipeline.options import OrderOptions
        >>> ds = tf.data.Dataset.range(4)
        >>> [int(x) for x in shuffle(ds, OrderOptions(), training=False)]
        [0, 1, 2, 3]
        >>> sorted(int(x) for x in shuffle(ds, OrderOptions(seed=1), training=True))
        [0, 1, 2, 3]
    """
    if not training:
        return ds
    return ds.shuffle(order.shuffle_buffer, seed=order.seed, reshuffle_each_iteration=True)


# ---------------------------------------------------------------------------------------
# Parsing and batching
# ---------------------------------------------------------------------------------------
def parse(
    ds: tf.data.Dataset,
    geometry: Geometry,
    read: ReadOptions,
    *,
    label: str | None,
    deterministic: bool,
) -> tf.data.Dataset:
    """Parse records (or batches of raw records) into feature dicts with ``uint8`` images.

    Only the kept channels of png records are decoded. A png site that does not parse
    or decode is dropped alone when ``read.on_error`` tolerates bad records (raw
    records were checked by :func:`read_records`).
    """
    layout = geometry.layout
    wanted = {*META_KEYS, tfr.IMAGE} | ({label} if label is not None else set())
    select = None if geometry.select is None else list(geometry.select)

    @_no_autograph
    def parse_and_decode(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tfr.parse_example(
            serialized, encoding=layout.encoding, channels=layout.channels, keys=wanted
        )
        parsed[tfr.IMAGE] = tfr.decode_image(
            parsed[tfr.IMAGE],
            encoding=layout.encoding,
            height=layout.height,
            width=layout.width,
            channels=layout.channels,
            select=select,
        )
        return parsed

    ds = ds.map(
        parse_and_decode, num_parallel_calls=read.num_parallel_calls, deterministic=deterministic
    )
    if read.tolerant and layout.encoding != "raw":
        ds = ds.ignore_errors(log_warning=read.on_error == "warn")
    return ds


def batch(
    ds: tf.data.Dataset,
    size: int,
    layout: RecordLayout,
    order: OrderOptions,
    *,
    training: bool,
) -> tf.data.Dataset:
    """Batch serialized records (raw) or parsed sites (png), mixed or one group per batch.

    Groups (``order.batch_by``) are keyed by a 62-bit hash of ``experiment`` (and
    ``plate``): two groups would share batches only on a hash collision (about 1 in
    10^14 for RxRx1's 204 plates).

    Example:
        >>> from rxdata.pipeline.options import OrderOptions
        >>> ds = tf.data.Dataset.range(5)
        >>> [len(b) for b in batch(ds, 2, RecordLayout("raw", 1, 1, 1), OrderOptions(),
        ...                        training=False)]
        [2, 2, 1]
    """
    drop_remainder = order.drops_remainder(training)
    if order.batch_by is None:
        return ds.batch(size, drop_remainder=drop_remainder)
    names = [tfr.EXPERIMENT] if order.batch_by == "experiment" else [tfr.EXPERIMENT, tfr.PLATE]

    def key(element: Any) -> tf.Tensor:
        if not isinstance(element, dict):  # a serialized raw record
            element = tfr.parse_example(
                element, encoding=layout.encoding, channels=layout.channels, keys=set(names)
            )
        parts = [tf.strings.as_string(element[n]) if n == tfr.PLATE else element[n] for n in names]
        return tf.strings.to_hash_bucket_fast(tf.strings.join(parts, "/"), 2**62)

    return ds.group_by_window(
        key_func=_no_autograph(key),
        reduce_func=lambda _, window: window.batch(size, drop_remainder=drop_remainder),
        window_size=size,
    )


# ---------------------------------------------------------------------------------------
# Per-batch stages: one map
# ---------------------------------------------------------------------------------------
Batch = dict[str, tf.Tensor]


def add_statistics(parsed: Batch, stats_fn: StatsFn | None) -> Batch:
    """Add each example's ``mean`` and ``std`` ``[B, C]``, of the full decoded site.

    Mode ``image`` uses the site's own pixels; ``stats_fn=None`` (uint8 batches) adds
    nothing.
    """
    if stats_fn is None:
        return parsed
    mean, std = stats_fn(parsed, parsed[tfr.IMAGE])
    return {**parsed, "mean": mean, "std": std}


def _crop_resize(
    images: tf.Tensor, geometry: Geometry, augmentation: AugmentOptions, training: bool
) -> tf.Tensor:
    crop, resize = augmentation.crop, augmentation.resize
    if crop is None and resize is None:
        return images
    height, width = geometry.layout.height, geometry.layout.width
    ch, cw = crop if crop is not None else (height, width)
    b = tf.shape(images)[0]
    if training and crop is not None:
        top = tf.random.uniform([b], 0, height - ch + 1, dtype=tf.int32)
        left = tf.random.uniform([b], 0, width - cw + 1, dtype=tf.int32)
    else:  # centre crop
        top = tf.fill([b], (height - ch) // 2)
        left = tf.fill([b], (width - cw) // 2)
    if resize is None:
        # Exact integer crops: gather rows then columns per example.
        rows = top[:, None] + tf.range(ch)[None, :]
        cols = left[:, None] + tf.range(cw)[None, :]
        images = tf.gather(images, rows, axis=1, batch_dims=1)
        return tf.gather(images, cols, axis=2, batch_dims=1)
    # Normalized box corners so that crop_and_resize samples the crop's pixel grid.
    hm1, wm1 = float(max(height - 1, 1)), float(max(width - 1, 1))
    top_f, left_f = tf.cast(top, tf.float32), tf.cast(left, tf.float32)
    boxes = tf.stack(
        [top_f / hm1, left_f / wm1, (top_f + ch - 1) / hm1, (left_f + cw - 1) / wm1], axis=1
    )
    resized = tf.image.crop_and_resize(
        tf.cast(images, tf.float32), boxes, tf.range(b), list(resize), method="bilinear"
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def augment(
    parsed: Batch,
    geometry: Geometry,
    augmentation: AugmentOptions,
    *,
    training: bool,
    batch_size: int | None = None,
) -> Batch:
    """Crop (random in training, centred otherwise), resize, and in training augment.

    Training augmentations are the dihedral symmetries and the intensity jitter (folded
    into ``mean``/``std``).

    The images come out with the static shape ``[batch_size, *geometry.size, C]``, the
    statistics (if any) with ``[batch_size, C]``.
    """
    images = _crop_resize(parsed[tfr.IMAGE], geometry, augmentation, training)
    out = dict(parsed)
    if training and augmentation.dihedral:
        images = random_dihedral(images)
    if training and "mean" in out and augmentation.intensity_jitter != (0.0, 0.0):
        out["mean"], out["std"] = jitter_stats(
            out["mean"], out["std"], *augmentation.intensity_jitter
        )
    out[tfr.IMAGE] = tf.ensure_shape(images, [batch_size, *geometry.size, geometry.channels])
    for key in ("mean", "std"):
        if key in out:
            out[key] = tf.ensure_shape(out[key], [batch_size, geometry.channels])
    return out


def normalize(parsed: Batch, placement: PlacementOptions) -> Batch:
    """``(x - mean) / std`` in ``placement.dtype`` on the CPU, dropping the statistics.

    With ``normalize_on="accelerator"`` the uint8 images and the statistics pass as they
    are (for :class:`rxdata.layers.Standardize`); so do batches without statistics
    (dtype ``uint8``).

    Example:
        >>> from rxdata.pipeline.options import PlacementOptions
        >>> out = normalize({"image": tf.fill([1, 1, 1, 1], tf.constant(10, tf.uint8)),
        ...                  "mean": tf.constant([[4.0]]), "std": tf.constant([[2.0]])},
        ...                 PlacementOptions(jit=False))
        >>> sorted(out), out["image"].numpy().ravel().tolist()
        (['image'], [3.0])
    """
    if "mean" not in parsed or placement.normalize_on == "accelerator":
        return parsed
    out = dict(parsed)
    mean, std = out.pop("mean"), out.pop("std")
    standardize = compiled(standardize_as(placement.dtype), placement.jit)
    out[tfr.IMAGE] = standardize(out[tfr.IMAGE], mean, std)
    return out


def pack(
    parsed: Batch,
    *,
    label: str | None,
    output: str,
    training: bool,
    batch_size: int | None = None,
) -> Any:
    """The batch structure of :mod:`rxdata.pipeline` (``output="tuple"`` or ``"dict"``).

    Example:
        >>> parsed = {"image": tf.zeros([2, 1, 1, 1]), "id_code": tf.constant(["a", "b"]),
        ...           "site": tf.constant([1, 2]), "sirna_id": tf.constant([3, 4])}
        >>> x, y, ids = pack(parsed, label="sirna_id", output="tuple", training=False)
        >>> y.numpy().tolist(), sorted(ids)
        ([3, 4], ['id_code', 'site'])
    """
    x = {k: parsed[k] for k in (tfr.IMAGE, "mean", "std") if k in parsed}  # + statistics
    # shipped to the accelerator
    if output == "dict":
        out = dict(x)
        for key in META_KEYS:
            out[key] = tf.ensure_shape(parsed[key], [batch_size])
        if label is not None:
            out["label"] = tf.ensure_shape(parsed[label], [batch_size])
        return out
    parts: list[Any] = [x[tfr.IMAGE] if len(x) == 1 else x]
    if label is not None:
        parts.append(tf.ensure_shape(parsed[label], [batch_size]))
    if not training:
        parts.append({tfr.ID_CODE: parsed[tfr.ID_CODE], tfr.SITE: parsed[tfr.SITE]})
    return parts[0] if len(parts) == 1 else tuple(parts)


@dataclass(frozen=True)
class BatchTransform:
    """The per-batch stages as one ``map`` function.

    :func:`add_statistics`, :func:`augment`, :func:`normalize`, :func:`pack`, in order.
    """

    stats_fn: StatsFn | None
    geometry: Geometry
    augmentation: AugmentOptions
    placement: PlacementOptions
    training: bool
    label: str | None
    output: str
    batch_size: int | None  # static batch dimension (None: the last batch may be partial)

    def __call__(self, parsed: Batch) -> Any:
        """Transform one batch."""
        parsed = add_statistics(parsed, self.stats_fn)
        parsed = augment(
            parsed,
            self.geometry,
            self.augmentation,
            training=self.training,
            batch_size=self.batch_size,
        )
        parsed = normalize(parsed, self.placement)
        return pack(
            parsed,
            label=self.label,
            output=self.output,
            training=self.training,
            batch_size=self.batch_size,
        )


def transform_batches(
    ds: tf.data.Dataset, transform: BatchTransform, read: ReadOptions, *, deterministic: bool
) -> tf.data.Dataset:
    """Map ``transform`` over the batches, in parallel."""
    return ds.map(
        _no_autograph(transform),
        num_parallel_calls=read.num_parallel_calls,
        deterministic=deterministic,
    )


# ---------------------------------------------------------------------------------------
# Distribution
# ---------------------------------------------------------------------------------------
def check_service_use(distribution: DistributeOptions, training: bool, input_context: Any) -> None:
    """Refuse a tf.data service where it cannot keep the dataset's promises.

    Raises:
        OptionsError: ``data_service`` with ``training=False`` or with ``input_context``.
    """
    if distribution.data_service is None:
        return
    if not training:
        raise OptionsError(
            "data_service is for training only: the service's dynamic sharding visits each "
            "site at most once (a worker that restarts loses the rest of its shard) and in "
            "no fixed order, while evaluation and prediction must see every site exactly "
            "once; build the evaluation dataset without data_service"
        )
    if input_context is not None:
        raise OptionsError(
            "data_service with input_context is not supported: the service already splits "
            "the shards among its workers; build one dataset (without input_context) and "
            "pass it to strategy.experimental_distribute_dataset"
        )


def distribute(ds: tf.data.Dataset, distribution: DistributeOptions) -> tf.data.Dataset:
    """Run everything above this point on the tf.data service's workers, if one is named.

    ``ShardingPolicy.DYNAMIC``: the dispatcher hands out the source's elements (one shard
    file each) to whichever worker asks next, so every shard is read by exactly one
    worker per epoch (at most once if a worker restarts) and fast workers take more.
    Static sharding (``FILE``/``DATA``) would need a fixed worker list and workers on
    the training hosts, which is what the service is meant to avoid.

    Example:
        >>> from rxdata.pipeline.options import DistributeOptions
        >>> ds = tf.data.Dataset.range(3)
        >>> distribute(ds, DistributeOptions()) is ds
        True
    """
    service = distribution.data_service
    if service is None:
        return ds
    # Bounded: tf.data would retry an unreachable dispatcher forever.
    check_reachable(service, distribution.data_service_timeout)
    return ds.apply(
        tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=service if "://" in service else f"grpc://{service}",
        )
    )


def prefetch(ds: tf.data.Dataset, read: ReadOptions, *, deterministic: bool) -> tf.data.Dataset:
    """Prefetch ``read.prefetch`` batches, and fix the element order's determinism.

    Example:
        >>> from rxdata.pipeline.options import ReadOptions
        >>> ds = prefetch(tf.data.Dataset.range(3), ReadOptions(prefetch=1), deterministic=True)
        >>> ds.options().deterministic, [int(x) for x in ds]
        (True, [0, 1, 2])
    """
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.prefetch(read.prefetch).with_options(options)

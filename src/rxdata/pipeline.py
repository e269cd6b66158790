"""The tf.data input pipeline over rxdata (and rxrx1-utils) TFRecord shards.

Contract:
    :func:`make_dataset` turns a file pattern into a ``tf.data.Dataset`` of batches:

    * ``training=True``: shuffled file order, parallel ``interleave`` over shards, a
      shuffle buffer of serialized records, parallel parse/decode, batching (with
      ``drop_remainder`` so every batch has a static shape), optional augmentation,
      ``prefetch``. Unlabelled sites are dropped when the label is ``sirna_id``.
    * ``training=False``: one pass, no shuffle, no augmentation, a deterministic order
      (the same on every run), every site kept, the last partial batch kept, and each
      example carries its ``id_code`` and ``site`` so predictions cannot be misaligned.
    * Normalization by a :class:`rxdata.Normalizer` (``global`` / ``experiment`` /
      ``plate`` / ``controls`` / ``image``), with per-plate statistics looked up in the
      graph from each site's experiment and plate (:mod:`rxdata.layers`). Either on the
      CPU (``normalize_on="cpu"``: the batch holds ``dtype`` images) or on the
      accelerator (``normalize_on="accelerator"``: the batch holds uint8 images plus each
      example's ``mean`` and ``std``, applied in the model by
      :class:`rxdata.layers.Standardize`, with identical results, 4x fewer bytes and no
      float work on the host CPU).
    * Works under ``tf.distribute``: pass the ``input_context`` that
      ``strategy.distribute_datasets_from_function`` gives; ``batch_size`` is then the
      global batch and each pipeline reads its own shards.

Batch structure (``output="tuple"``):
    * training: ``(x, labels)`` where ``x`` is the images, or in accelerator mode a dict
      ``{"image": uint8, "mean": float32 [B, C], "std": float32 [B, C]}``;
    * ``training=False``: ``(x, labels, ids)`` with ``ids = {"id_code", "site"}``; Keras'
      ``predict`` uses only ``x``; :func:`predict` keeps ids and predictions together.
    * ``label=None`` drops ``labels`` from the tuple.

    ``output="dict"`` gives one dict per batch: ``image`` (plus ``mean``/``std`` in
    accelerator mode), ``label`` (when a label is chosen) and the site metadata
    ``id_code``, ``site``, ``experiment``, ``plate``, ``well``, ``cell_type``,
    ``well_type``, ``dataset`` and ``sirna_id`` (-1 when unlabelled).

Example:
    >>> import numpy as np
    >>> from rxdata import tfrecord
    >>> sites = [{"experiment": "HEPG2-01", "plate": 1, "well": f"B{i:02d}", "site": 1,
    ...           "sirna_id": i} for i in range(2, 7)]
    >>> images = np.zeros((8, 8, 6), np.uint8)
    >>> _ = tfrecord.write_shard("a.tfrecord",
    ...                          [tfrecord.encode_example(s, image=images) for s in sites])
    >>> ds = make_dataset("*.tfrecord", batch_size=2, training=False)
    >>> [ids["id_code"].numpy().tolist() for _x, _y, ids in ds][-1]
    [b'HEPG2-01_1_B06']
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np
import tensorflow as tf

from rxdata import _io, naming
from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError
from rxdata.filters import KeepFn, feature_in, in_set, split_keys, value_list
from rxdata.reader import RecordLayout, common_layout, list_shards
from rxdata.transforms import (
    StatsFn,
    compiled,
    jitter_stats,
    random_dihedral,
    standardize_as,
    stats_function,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from rxdata.normalization import Normalizer
    from rxdata.splits import Split

__all__ = ["LABEL_SPACES", "PipelineOptions", "make_dataset", "predict"]

AUTOTUNE = tf.data.AUTOTUNE
# The functions handed to tf.data use Python control flow only while tracing, so AutoGraph
# has nothing to convert; skipping it saves tracing time and spurious warnings.
_F = TypeVar("_F", bound=Callable[..., Any])


def _no_autograph(fn: _F) -> _F:
    return cast("_F", tf.autograph.experimental.do_not_convert(fn))


#: Size of the ``sirna_id`` label space by ``include_controls``: 1108 siRNA treatments;
#: 1139 with the 30 positive controls (1108..1137) and the negative control (1138).
LABEL_SPACES = {"treatments": naming.NUM_TREATMENTS, "with_controls": naming.NUM_CLASSES}

_SERVICE = re.compile(r"^(grpc://)?[^:/\s]+:[0-9]{1,5}$")
_DTYPES = ("float32", "bfloat16", "float16", "uint8")
_COMPRESSIONS = ("auto", *tfr.COMPRESSIONS)
_TF_COMPRESSION = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}
# Features a label or a filter may name, and their kind.
_STRING_FEATURES = (
    tfr.ID_CODE,
    tfr.DATASET,
    tfr.EXPERIMENT,
    tfr.CELL_TYPE,
    tfr.WELL,
    tfr.WELL_TYPE,
    tfr.SIRNA_LABEL,
)
_INT_FEATURES = (tfr.PLATE, tfr.SITE, tfr.SIRNA_ID)
_META_KEYS = (
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


def _pair(value: int | Sequence[int] | None, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair
    ):
        raise OptionsError(f"{name}={value!r}; expected a positive int or (height, width)")
    return int(pair[0]), int(pair[1])


def _positive_or_autotune(value: int | None, name: str) -> None:
    if value is None or value == AUTOTUNE:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionsError(f"{name}={value!r}; expected a positive int, AUTOTUNE or None")


@dataclass(frozen=True)
class PipelineOptions:
    """How :func:`make_dataset` reads, transforms and feeds examples.

    Every default is chosen for training on the full RxRx1 set (512x512x6 sites) on one
    host; the reason is given next to each.

    Attributes:
        channels: Channel numbers (1-based, as in RxRx1's ``w1..w6``) to keep, in order;
            ``None`` keeps every stored channel. Stored channels are numbered 1..C. For
            png records only these channels are decoded.
        dtype: Image dtype of the batch: ``float32``, ``bfloat16``, ``float16``, or
            ``uint8`` (unnormalized pixels; no normalizer allowed).
        normalize_on: ``"cpu"`` (normalize in the pipeline) or ``"accelerator"`` (ship
            uint8 images plus ``mean``/``std``; see the module docstring).
        crop_size: Random crop (training) or centre crop (evaluation) to this size.
        resize_to: Resize (bilinear, after cropping) to this size; the result is rounded
            back to uint8, so both normalization paths see the same pixels.
        dihedral: Random flips and 90-degree rotations (the 8 symmetries of the square)
            in training. Needs square images.
        intensity_jitter: ``(scale, shift)``: in training each example's channels are
            multiplied by ``U(1 - scale, 1 + scale)`` and shifted by ``U(-shift, shift)``
            in normalized units. Applied through the mean/std, so it costs nothing and
            gives the same result on either normalization path.
        shuffle_buffer: Serialized records in the shuffle buffer (training).
        cycle_length: Shards read at once by ``interleave``; ``None``: min(#files, 16).
        num_parallel_calls: Parallelism of parse/decode/transform maps.
        prefetch: Batches prefetched (``AUTOTUNE`` by default).
        read_buffer_bytes: Read buffer per shard; ``None`` is TF's default locally and
            16 MiB for remote (``gs://``) files.
        compression: ``"auto"`` (detect per file) or a fixed one for every file.
        on_error: ``"raise"`` a TensorFlow error on a corrupt/truncated shard or a bad
            record; ``"skip"`` bad records (a corrupt or truncated shard ends at the
            damage; in a GZIP/ZLIB shard TensorFlow may also lose up to 256 KiB of
            inflated records before it, see docs/pipeline.md); ``"warn"``: skip and log
            each error. Use :func:`rxdata.read_tfrecord` to find, count and salvage bad
            records in a file. Not about layouts: shards of different layouts raise.
        drop_remainder: Drop the last partial batch; ``None`` means training only.
        batch_by: ``"plate"`` or ``"experiment"``: every batch holds sites of a single
            plate (or experiment), as the 5th-place RxRx1 solution trained, so that
            BatchNorm statistics are those of one batch of the assay. Each group keeps
            up to one partial batch in memory (decoded, for png records); a group's last
            partial batch is dropped when batches are. ``None``: batches mix groups.
        repeat: Repeat the (reshuffled) data forever in training.
        deterministic: Force a deterministic element order; ``None`` means only when not
            training.
        seed: Seed of file-order and record shuffles (``None``: nondeterministic). A
            reproducible training order also needs ``deterministic=True`` (parallel
            reads otherwise let faster shards run ahead); augmentation draws are not
            seeded.
        jit: Compile the per-batch normalization arithmetic with XLA (one fused pass over
            the pixels instead of three; the same values).
        data_service: Address of a tf.data service dispatcher (``"grpc://HOST:PORT"``,
            started with :mod:`rxdata.service`). Training only: the service's workers
            read, parse, decode, crop, augment, normalize and batch; shards are split
            among them dynamically (``ShardingPolicy.DYNAMIC``), so each epoch covers
            every site once. The shards must be readable from the workers at the same
            paths (shared disk or ``gs://``). See docs/pipeline.md.

    Example:
        >>> opts = PipelineOptions(channels=(1, 2, 3), dtype="bfloat16", dihedral=True)
        >>> opts.channels, opts.dtype, opts.drop_remainder
        ((1, 2, 3), 'bfloat16', None)
        >>> PipelineOptions(channels=(0, 7))
        Traceback (most recent call last):
        ...
        rxdata.errors.OptionsError: ...
    """

    channels: tuple[int, ...] | None = None  # all stored channels: the model decides
    dtype: Literal["float32", "bfloat16", "float16", "uint8"] = "float32"  # safe everywhere;
    # bfloat16 on TPUs, float16 on tensor-core GPUs halve host->device bytes
    normalize_on: Literal["cpu", "accelerator"] = "cpu"  # plain (images, labels) batches
    # that any model accepts; "accelerator" is the fast path (docs/performance.md)
    crop_size: int | tuple[int, int] | None = None  # the full 512x512 field by default
    resize_to: int | tuple[int, int] | None = None
    dihedral: bool = False  # augmentation is the model's choice, not the reader's
    intensity_jitter: tuple[float, float] = (0.0, 0.0)
    shuffle_buffer: int = 256  # records, not sites decoded: ~0.4 GB of raw 512x512x6
    # records; file-order shuffling and interleave already mix shards (and the random
    # conversion strategy mixes sites within a shard), so a small buffer suffices
    cycle_length: int | None = None  # min(#files, 16): enough open shards to mix well and
    # overlap reads, few enough to bound memory (one read buffer each)
    num_parallel_calls: int = AUTOTUNE  # tf.data sizes the thread pool to the machine
    prefetch: int = AUTOTUNE  # overlap input with the training step
    read_buffer_bytes: int | None = None  # TF's 256 KiB is fine on local disks; object
    # stores need large reads to reach their bandwidth
    compression: Literal["auto", "none", "gzip", "zlib"] = "auto"  # no flag to get wrong
    on_error: Literal["raise", "skip", "warn"] = "raise"  # silent data loss is worse
    drop_remainder: bool | None = None  # static batch shapes in training (TPUs need them);
    # evaluation must see every site
    repeat: bool = False  # finite epochs for Keras `fit(epochs=...)`; True + steps_per_epoch
    # keeps one iterator alive (tearing AUTOTUNE iterators down can stall for seconds)
    deterministic: bool | None = None  # training: let faster shards run ahead
    jit: bool = True  # XLA fuses cast + normalize into one pass: ~5x faster on CPU,
    # bit-identical results (docs/performance.md)
    seed: int | None = None
    data_service: str | None = None  # the per-record work runs on this host's CPUs unless
    # a tf.data service is named ("grpc://HOST:PORT"; see rxdata.service)
    batch_by: Literal["plate", "experiment"] | None = None  # mixed batches: BatchNorm sees
    # the data set's statistics; group-pure batches are a training method, chosen per model
    _crop: tuple[int, int] | None = field(init=False, repr=False, compare=False, default=None)
    _resize: tuple[int, int] | None = field(init=False, repr=False, compare=False, default=None)

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
        if self.dtype not in _DTYPES:
            raise OptionsError(f"dtype={self.dtype!r}; allowed: {', '.join(_DTYPES)}")
        if self.normalize_on not in ("cpu", "accelerator"):
            raise OptionsError(f"normalize_on={self.normalize_on!r}; allowed: cpu, accelerator")
        if self.normalize_on == "accelerator" and self.dtype == "uint8":
            raise OptionsError("normalize_on='accelerator' already ships uint8; keep dtype float")
        object.__setattr__(self, "_crop", _pair(self.crop_size, "crop_size"))
        object.__setattr__(self, "_resize", _pair(self.resize_to, "resize_to"))
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
        if isinstance(self.shuffle_buffer, bool) or not isinstance(self.shuffle_buffer, int):
            raise OptionsError(f"shuffle_buffer={self.shuffle_buffer!r}; expected an int >= 1")
        if self.shuffle_buffer < 1:
            raise OptionsError(f"shuffle_buffer={self.shuffle_buffer!r}; expected an int >= 1")
        _positive_or_autotune(self.cycle_length, "cycle_length")
        _positive_or_autotune(self.num_parallel_calls, "num_parallel_calls")
        if self.prefetch != AUTOTUNE and (
            isinstance(self.prefetch, bool)
            or not isinstance(self.prefetch, int)
            or self.prefetch < 0
        ):
            raise OptionsError(f"prefetch={self.prefetch!r}; expected an int >= 0 or AUTOTUNE")
        if self.read_buffer_bytes is not None and (
            not isinstance(self.read_buffer_bytes, int) or self.read_buffer_bytes < 1
        ):
            raise OptionsError(f"read_buffer_bytes={self.read_buffer_bytes!r}; expected int >= 1")
        if self.on_error not in ("raise", "skip", "warn"):
            raise OptionsError(f"on_error={self.on_error!r}; allowed: raise, skip, warn")
        if self.compression not in _COMPRESSIONS:
            raise OptionsError(
                f"compression={self.compression!r}; allowed: {', '.join(_COMPRESSIONS)}"
            )
        for name in ("drop_remainder", "deterministic"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise OptionsError(f"{name}={value!r}; expected True, False or None")
        for name in ("repeat", "dihedral", "jit"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name}={getattr(self, name)!r}; expected True or False")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise OptionsError(f"seed={self.seed!r}; expected an int or None")
        if self.data_service is not None and (
            not isinstance(self.data_service, str) or not _SERVICE.match(self.data_service)
        ):
            raise OptionsError(
                f"data_service={self.data_service!r}; expected the dispatcher address "
                "'grpc://HOST:PORT' (or 'HOST:PORT'), or None"
            )
        if self.batch_by not in (None, "plate", "experiment"):
            raise OptionsError(f"batch_by={self.batch_by!r}; allowed: None, plate, experiment")


def _valid_record(layout: RecordLayout, stored: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """Keep a raw record whose image has the data set's byte length.

    A record that does not parse raises instead, which ``ignore_errors`` drops.
    """
    nbytes = layout.height * layout.width * stored

    @_no_autograph
    def valid(serialized: tf.Tensor) -> tf.Tensor:
        parsed = tfr.parse_example(
            serialized,
            encoding="raw",
            channels=stored,
            keys=[tfr.IMAGE, tfr.ID_CODE, tfr.SITE, tfr.SIRNA_ID],
        )
        return tf.equal(tf.strings.length(parsed[tfr.IMAGE]), nbytes)

    return valid


def _label_spec(label: str | None) -> str | None:
    if label is None:
        return None
    known = (*_STRING_FEATURES, *_INT_FEATURES)
    if label not in known:
        raise OptionsError(f"label={label!r}; allowed: {', '.join(known)} or None")
    return label


def make_dataset(
    file_pattern: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    batch_size: int,
    training: bool = True,
    options: PipelineOptions | None = None,
    normalizer: Normalizer | None = None,
    label: str | None = tfr.SIRNA_ID,
    include_controls: bool = True,
    experiments: Collection[str] | str | None = None,
    cell_types: Collection[str] | str | None = None,
    well_types: Collection[str] | str | None = None,
    split: Split | None = None,
    part: str | Iterable[str] | None = None,
    output: Literal["tuple", "dict"] = "tuple",
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of batches of sites from TFRecord shards.

    Args:
        file_pattern: A glob (local or ``gs://``) or a list of globs/paths. A path that
            names an existing file is read as itself, even if it holds glob characters
            (``plate[1].tfrecord``). Every shard must hold one layout (encoding and
            image size): the first good record of each shard is checked when the
            dataset is built.
        batch_size: The batch size; with ``input_context`` the **global** batch size
            (each replica gets ``batch_size / num_replicas_in_sync``).
        training: Training (shuffled, augmented, repeatable) or evaluation/prediction
            (one deterministic pass with ids); see the module docstring.
        options: :class:`PipelineOptions` (defaults if ``None``).
        normalizer: Per-channel statistics (:class:`rxdata.Normalizer`). ``None`` scales
            pixels to ``[0, 1]`` (``x / 255``) unless ``dtype="uint8"``.
        label: The feature used as label: ``"sirna_id"`` (default; unlabelled sites are
            dropped in training and get ``-1`` otherwise), any other feature name (e.g.
            ``"cell_type"``, ``"experiment"``, ``"plate"``), or ``None``.
        include_controls: Keep control wells (with ``label="sirna_id"``: 1139 classes,
            :data:`LABEL_SPACES`) or drop them (sirna_id >= 1108; then 1108 classes).
        experiments: Keep only these experiments.
        cell_types: Keep only these cell types.
        well_types: Keep only these well types.
        split: A :class:`rxdata.Split`; keep the groups of ``part`` (one or more part
            names). Its ``by`` columns must be record features (``experiment``,
            ``plate``, ``site``, ``cell_type``, ...).
        part: The part(s) of ``split`` to keep.
        output: ``"tuple"`` or ``"dict"`` (module docstring).
        input_context: From ``strategy.distribute_datasets_from_function``: per-replica
            batch size, and each input pipeline reads every n-th shard (or every n-th
            record when there are fewer shards than pipelines).

    Returns:
        The dataset (finite unless ``options.repeat`` and ``training``).

    Raises:
        FileNotFoundError: No file matches a pattern.
        OptionsError: Invalid arguments (names the argument and what is allowed).
        RecordError: The shards are not TFRecords, or are all empty (or, with
            ``on_error="skip"``/``"warn"``, hold only bad records); they hold different
            layouts (names one file of each, whatever ``on_error``); with
            ``on_error="raise"``, a shard's first record is corrupt.

    Example:
        >>> import numpy as np
        >>> from rxdata import tfrecord
        >>> sites = [{"experiment": "U2OS-01", "plate": 1, "well": "B02", "site": s,
        ...           "sirna_id": 1138} for s in (1, 2)]
        >>> _ = tfrecord.write_shard("u.tfrecord", [tfrecord.encode_example(
        ...     s, image=np.full((4, 4, 6), 51, np.uint8)) for s in sites])
        >>> images, labels = next(iter(make_dataset("u.tfrecord", batch_size=2)))
        >>> images.shape, images.dtype.name, float(images[0, 0, 0, 0]), labels.numpy()
        (TensorShape([2, 4, 4, 6]), 'float32', 0.2, array([1138, 1138]))
    """
    opts = options if options is not None else PipelineOptions()
    if not isinstance(opts, PipelineOptions):
        raise OptionsError(f"options must be PipelineOptions, got {type(opts).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionsError(f"batch_size={batch_size!r}; expected an int >= 1")
    if output not in ("tuple", "dict"):
        raise OptionsError(f"output={output!r}; allowed: tuple, dict")
    if normalizer is not None and opts.dtype == "uint8":
        raise OptionsError("dtype='uint8' ships unnormalized pixels; drop the normalizer")
    label = _label_spec(label)
    experiments_l = value_list(experiments, "experiments")
    cell_types_l = value_list(cell_types, "cell_types")
    well_types_l = value_list(well_types, "well_types")
    split_by: list[str] | None = None
    split_allowed: list[str] = []
    if split is not None:
        if part is None:
            raise OptionsError("split= needs part= (the part name(s) to keep)")
        split_by, split_allowed = split_keys(split, part)
    elif part is not None:
        raise OptionsError("part= needs split=")
    if opts.data_service is not None:
        _check_service_use(training, input_context)

    per_replica = batch_size
    shard_count, shard_index = 1, 0
    if input_context is not None:
        try:
            per_replica = input_context.get_per_replica_batch_size(batch_size)
        except ValueError as err:
            raise OptionsError(f"batch_size={batch_size}: {err}") from None
        shard_count = input_context.num_input_pipelines
        shard_index = input_context.input_pipeline_id

    files = list_shards(file_pattern)
    remote = any(_io.is_remote(f) for f in files)
    layout = common_layout(files, opts.on_error, remote, opts.compression)
    stored = layout.channels
    select = None if opts.channels is None else [c - 1 for c in opts.channels]
    if select is not None and max(select) >= stored:
        raise OptionsError(f"channels={opts.channels}; the records hold channels 1..{stored}")
    n_channels = stored if select is None else len(select)
    out_h, out_w = layout.height, layout.width
    if opts._crop is not None:
        if opts._crop[0] > layout.height or opts._crop[1] > layout.width:
            raise OptionsError(
                f"crop_size={opts.crop_size!r} is larger than the {layout.height}x"
                f"{layout.width} images"
            )
        out_h, out_w = opts._crop
    if opts._resize is not None:
        out_h, out_w = opts._resize
    if opts.dihedral and training and out_h != out_w:
        raise OptionsError(
            f"dihedral=True needs square images, these are {out_h}x{out_w}; set crop_size "
            "or resize_to to a square"
        )

    stats_fn = stats_function(normalizer, opts.channels, stored, opts.dtype, opts.jit)
    buffer = opts.read_buffer_bytes or (16 << 20 if remote else None)
    if opts.compression == "auto":
        # a few bytes per file; threads hide object-store latency for many shards
        with ThreadPoolExecutor(max_workers=16 if remote else 4) as pool:
            detected = list(pool.map(tfr.detect_compression, files))
        compressions = [_TF_COMPRESSION[c] for c in detected]
    else:
        compressions = [_TF_COMPRESSION[opts.compression]] * len(files)

    deterministic = (not training) if opts.deterministic is None else opts.deterministic
    drop_remainder = training if opts.drop_remainder is None else opts.drop_remainder

    if opts.data_service is not None:  # the workers may run in another directory
        files = [_io.absolute(f) for f in files]
    ds = tf.data.Dataset.from_tensor_slices((files, compressions))
    shard_records = shard_count > 1 and len(files) < shard_count
    if shard_count > 1 and not shard_records:
        ds = ds.shard(shard_count, shard_index)
    if training:
        ds = ds.shuffle(len(files), seed=opts.seed, reshuffle_each_iteration=True)
        if opts.repeat:
            ds = ds.repeat()
    cycle = opts.cycle_length or min(len(files), 16)
    tolerant = opts.on_error != "raise"
    log_errors = opts.on_error == "warn"

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
        ds = ds.shard(shard_count, shard_index)
    if tolerant and layout.encoding == "raw":  # drop bad records before they spoil a batch
        ds = ds.filter(_valid_record(layout, stored)).ignore_errors(log_warning=log_errors)

    # Filters need only the small features: parse those, not the image.
    keep_fns: list[tuple[set[str], KeepFn]] = []
    if label == tfr.SIRNA_ID and training:
        keep_fns.append(({tfr.SIRNA_ID}, lambda p: p[tfr.SIRNA_ID] >= 0))
    if not include_controls:  # controls are classes 1108..1138, whatever the label
        keep_fns.append(({tfr.SIRNA_ID}, lambda p: p[tfr.SIRNA_ID] < naming.NUM_TREATMENTS))
    for key, values in (
        (tfr.EXPERIMENT, experiments_l),
        (tfr.CELL_TYPE, cell_types_l),
        (tfr.WELL_TYPE, well_types_l),
    ):
        if values is not None:
            keep_fns.append(({key}, feature_in(key, values)))
    if split_by is not None:

        def in_split(p: dict[str, tf.Tensor]) -> tf.Tensor:
            parts = [
                p[c] if p[c].dtype == tf.string else tf.strings.as_string(p[c]) for c in split_by
            ]
            joined = tf.strings.join(parts, "\x1f") if len(parts) > 1 else parts[0]
            return in_set(joined, split_allowed)

        keep_fns.append((set(split_by), in_split))
    if keep_fns:
        needed: set[str] = set().union(*(k for k, _ in keep_fns))

        @_no_autograph
        def keep(serialized: tf.Tensor) -> tf.Tensor:
            parsed = tfr.parse_example(
                serialized, encoding=layout.encoding, channels=stored, keys=needed
            )
            result = tf.constant(True)
            for _, fn in keep_fns:
                result = tf.logical_and(result, fn(parsed))
            return result

        ds = ds.filter(keep)
        if tolerant:  # a record too broken to filter is a bad record
            ds = ds.ignore_errors(log_warning=log_errors)

    if training:
        ds = ds.shuffle(opts.shuffle_buffer, seed=opts.seed, reshuffle_each_iteration=True)

    wanted = set(_META_KEYS) | {tfr.IMAGE}
    if label is not None:
        wanted.add(label)

    @_no_autograph
    def parse_and_decode(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tfr.parse_example(
            serialized, encoding=layout.encoding, channels=stored, keys=wanted
        )
        parsed[tfr.IMAGE] = tfr.decode_image(
            parsed[tfr.IMAGE],
            encoding=layout.encoding,
            height=layout.height,
            width=layout.width,
            channels=stored,
            select=select,
        )
        return parsed

    if layout.encoding == "raw":  # vectorized: one parse and one decode per batch
        ds = _batch(ds, per_replica, drop_remainder, opts.batch_by, layout, stored)
        ds = ds.map(
            parse_and_decode,
            num_parallel_calls=opts.num_parallel_calls,
            deterministic=deterministic,
        )
    else:  # png: decode each site in parallel, then batch
        ds = ds.map(
            parse_and_decode,
            num_parallel_calls=opts.num_parallel_calls,
            deterministic=deterministic,
        )
        if tolerant:  # a site that does not parse or decode is dropped alone
            ds = ds.ignore_errors(log_warning=log_errors)
        ds = _batch(ds, per_replica, drop_remainder, opts.batch_by, layout, stored)

    transform = _BatchTransform(
        opts=opts,
        training=training,
        stats_fn=stats_fn,
        height=layout.height,
        width=layout.width,
        channels=n_channels,
        out_size=(out_h, out_w),
        batch=per_replica if drop_remainder else None,
        label=label,
        output=output,
    )
    ds = ds.map(
        _no_autograph(transform),
        num_parallel_calls=opts.num_parallel_calls,
        deterministic=deterministic,
    )
    if opts.data_service is not None:
        ds = _distribute(ds, opts.data_service)
    ds = ds.prefetch(opts.prefetch)
    tf_options = tf.data.Options()
    tf_options.deterministic = deterministic
    return ds.with_options(tf_options)


def _check_service_use(training: bool, input_context: Any) -> None:
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


def _distribute(ds: tf.data.Dataset, service: str) -> tf.data.Dataset:
    """Run everything above this point on the tf.data service's workers.

    ``ShardingPolicy.DYNAMIC``: the dispatcher hands out the source's elements (one shard
    file each) to whichever worker asks next, so every shard is read by exactly one
    worker per epoch (at most once if a worker restarts) and fast workers take more.
    Static sharding (``FILE``/``DATA``) would need a fixed worker list and workers on
    the training hosts, which is what the service is meant to avoid.
    """
    return ds.apply(
        tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=service if "://" in service else f"grpc://{service}",
        )
    )


def _batch(
    ds: tf.data.Dataset,
    size: int,
    drop_remainder: bool,
    batch_by: str | None,
    layout: RecordLayout,
    stored: int,
) -> tf.data.Dataset:
    """Batch serialized records (raw) or parsed sites (png), mixed or one group per batch.

    Groups are keyed by a 62-bit hash of ``experiment`` (and ``plate``): two groups would
    share batches only on a hash collision (about 1 in 10^14 for RxRx1's 204 plates).
    """
    if batch_by is None:
        return ds.batch(size, drop_remainder=drop_remainder)
    names = [tfr.EXPERIMENT] if batch_by == "experiment" else [tfr.EXPERIMENT, tfr.PLATE]

    def key(element: Any) -> tf.Tensor:
        if not isinstance(element, dict):  # a serialized raw record
            element = tfr.parse_example(
                element, encoding=layout.encoding, channels=stored, keys=set(names)
            )
        parts = [tf.strings.as_string(element[n]) if n == tfr.PLATE else element[n] for n in names]
        return tf.strings.to_hash_bucket_fast(tf.strings.join(parts, "/"), 2**62)

    return ds.group_by_window(
        key_func=_no_autograph(key),
        reduce_func=lambda _, window: window.batch(size, drop_remainder=drop_remainder),
        window_size=size,
    )


# ---------------------------------------------------------------------------------------
# The batch transform (crop/resize, augmentation, normalization, output packing)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _BatchTransform:
    """Crop/resize, dihedral, jitter, normalization and output packing of one batch."""

    opts: PipelineOptions
    training: bool
    stats_fn: StatsFn | None
    height: int
    width: int
    channels: int
    out_size: tuple[int, int]
    batch: int | None
    label: str | None
    output: str

    def __call__(self, parsed: dict[str, tf.Tensor]) -> Any:
        opts = self.opts
        images = parsed[tfr.IMAGE]
        mean = std = None
        if self.stats_fn is not None:
            # Statistics of the full decoded site (mode "image" uses its own pixels).
            mean, std = self.stats_fn(parsed, images)
        images = self._crop_resize(images)
        if self.training and opts.dihedral:
            images = random_dihedral(images)
        if self.training and mean is not None and opts.intensity_jitter != (0.0, 0.0):
            mean, std = jitter_stats(mean, std, *opts.intensity_jitter)
        images = tf.ensure_shape(images, [self.batch, *self.out_size, self.channels])
        out: dict[str, tf.Tensor] = {}
        if mean is None:
            out[tfr.IMAGE] = images  # dtype uint8: raw pixels
        elif opts.normalize_on == "accelerator":
            out[tfr.IMAGE] = images
            out["mean"] = tf.ensure_shape(mean, [self.batch, self.channels])
            out["std"] = tf.ensure_shape(std, [self.batch, self.channels])
        else:
            normalize = compiled(standardize_as(opts.dtype), opts.jit)
            out[tfr.IMAGE] = normalize(images, mean, std)
        if self.output == "dict":
            for key in _META_KEYS:
                out[key] = tf.ensure_shape(parsed[key], [self.batch])
            if self.label is not None:
                out["label"] = tf.ensure_shape(parsed[self.label], [self.batch])
            return out
        x = out[tfr.IMAGE] if len(out) == 1 else out
        parts: list[Any] = [x]
        if self.label is not None:
            parts.append(tf.ensure_shape(parsed[self.label], [self.batch]))
        if not self.training:
            parts.append({tfr.ID_CODE: parsed[tfr.ID_CODE], tfr.SITE: parsed[tfr.SITE]})
        return parts[0] if len(parts) == 1 else tuple(parts)

    def _crop_resize(self, images: tf.Tensor) -> tf.Tensor:
        crop, resize = self.opts._crop, self.opts._resize
        if crop is None and resize is None:
            return images
        ch, cw = crop if crop is not None else (self.height, self.width)
        b = tf.shape(images)[0]
        if self.training and crop is not None:
            top = tf.random.uniform([b], 0, self.height - ch + 1, dtype=tf.int32)
            left = tf.random.uniform([b], 0, self.width - cw + 1, dtype=tf.int32)
        else:  # centre crop
            top = tf.fill([b], (self.height - ch) // 2)
            left = tf.fill([b], (self.width - cw) // 2)
        if resize is None:
            # Exact integer crops: gather rows then columns per example.
            rows = top[:, None] + tf.range(ch)[None, :]
            cols = left[:, None] + tf.range(cw)[None, :]
            images = tf.gather(images, rows, axis=1, batch_dims=1)
            return tf.gather(images, cols, axis=2, batch_dims=1)
        # Normalized box corners so that crop_and_resize samples the crop's pixel grid.
        hm1, wm1 = float(max(self.height - 1, 1)), float(max(self.width - 1, 1))
        top_f, left_f = tf.cast(top, tf.float32), tf.cast(left, tf.float32)
        boxes = tf.stack(
            [top_f / hm1, left_f / wm1, (top_f + ch - 1) / hm1, (left_f + cw - 1) / wm1], axis=1
        )
        resized = tf.image.crop_and_resize(
            tf.cast(images, tf.float32), boxes, tf.range(b), list(resize), method="bilinear"
        )
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


# ---------------------------------------------------------------------------------------
# Prediction with ids
# ---------------------------------------------------------------------------------------
def predict(model: Any, dataset: tf.data.Dataset) -> tuple[pd.DataFrame, np.ndarray]:
    """Run a model over an evaluation dataset, keeping each prediction with its site.

    Args:
        model: A Keras model or any callable taking ``(x, training=False)``.
        dataset: From :func:`make_dataset` with ``training=False`` (``output="tuple"``
            or ``"dict"``), so every batch carries ``id_code`` and ``site``.

    Returns:
        ``(ids, predictions)``: a DataFrame with ``id_code`` and ``site`` (one row per
        site, in dataset order) and the model outputs stacked in the same order (row
        ``i`` belongs to ``ids.iloc[i]``). Feed them to
        ``rxdata.average_sites(predictions, id_codes=ids["id_code"])``.

    Raises:
        OptionsError: The batches carry no ``id_code`` (a training dataset).

    Example:
        >>> import numpy as np
        >>> from rxdata import tfrecord
        >>> _ = tfrecord.write_shard("p.tfrecord", [tfrecord.encode_example(
        ...     {"experiment": "RPE-01", "plate": 1, "well": "B02", "site": s},
        ...     image=np.full((2, 2, 6), s, np.uint8)) for s in (1, 2)])
        >>> ds = make_dataset("p.tfrecord", batch_size=8, training=False, label=None,
        ...                   options=PipelineOptions(dtype="uint8"))
        >>> def model(x, training=False):
        ...     return tf.reduce_sum(tf.cast(x, tf.float32), axis=[1, 2, 3])[:, None]
        >>> ids, predictions = predict(model, ds)
        >>> ids["id_code"].tolist(), ids["site"].tolist(), predictions[:, 0].tolist()
        (['RPE-01_1_B02', 'RPE-01_1_B02'], [1, 2], [24.0, 48.0])
    """
    import pandas as pd

    ids: list[str] = []
    sites: list[int] = []
    outputs: list[np.ndarray] = []
    for batch in dataset:
        if isinstance(batch, dict) and tfr.ID_CODE in batch:
            x = {k: batch[k] for k in (tfr.IMAGE, "mean", "std") if k in batch}
            x = x[tfr.IMAGE] if len(x) == 1 else x
            meta = batch
        elif isinstance(batch, tuple) and isinstance(batch[-1], dict) and tfr.ID_CODE in batch[-1]:
            x, meta = batch[0], batch[-1]
        else:
            raise OptionsError(
                "predict needs a dataset made with training=False (batches carry id_code)"
            )
        outputs.append(np.asarray(model(x, training=False)))
        ids.extend(v.decode() for v in meta[tfr.ID_CODE].numpy())
        sites.extend(int(v) for v in meta[tfr.SITE].numpy())
    predictions = np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
    return pd.DataFrame({"id_code": ids, "site": sites}), predictions

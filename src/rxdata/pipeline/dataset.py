"""``make_dataset``: the stages of :mod:`rxdata.pipeline.stages`, composed; and ``predict``."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import tensorflow as tf

from rxdata import naming
from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError
from rxdata.pipeline import stages
from rxdata.pipeline.options import PipelineOptions
from rxdata.pipeline.selection import Selection
from rxdata.transforms import stats_function

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from rxdata.normalization import Normalizer
    from rxdata.splits import Split

__all__ = ["LABEL_SPACES", "make_dataset", "predict"]

#: Size of the ``sirna_id`` label space by ``include_controls``: 1108 siRNA treatments;
#: 1139 with the 30 positive controls (1108..1137) and the negative control (1138).
LABEL_SPACES = {"treatments": naming.NUM_TREATMENTS, "with_controls": naming.NUM_CLASSES}

# Features a label may name.
_LABELS = (
    tfr.ID_CODE,
    tfr.DATASET,
    tfr.EXPERIMENT,
    tfr.CELL_TYPE,
    tfr.WELL,
    tfr.WELL_TYPE,
    tfr.SIRNA_LABEL,
    tfr.PLATE,
    tfr.SITE,
    tfr.SIRNA_ID,
)


def _check_arguments(
    options: PipelineOptions | None,
    batch_size: int,
    output: str,
    normalizer: Normalizer | None,
    label: str | None,
) -> PipelineOptions:
    """The options (defaults for ``None``), after checking make_dataset's own arguments."""
    opts = options if options is not None else PipelineOptions()
    if not isinstance(opts, PipelineOptions):
        raise OptionsError(f"options must be PipelineOptions, got {type(opts).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionsError(f"batch_size={batch_size!r}; expected an int >= 1")
    if output not in ("tuple", "dict"):
        raise OptionsError(f"output={output!r}; allowed: tuple, dict")
    if normalizer is not None and opts.dtype == "uint8":
        raise OptionsError("dtype='uint8' ships unnormalized pixels; drop the normalizer")
    if label is not None and label not in _LABELS:
        raise OptionsError(f"label={label!r}; allowed: {', '.join(_LABELS)} or None")
    return opts


def _replica_share(
    batch_size: int, input_context: tf.distribute.InputContext | None
) -> tuple[int, tuple[int, int]]:
    """``(per-replica batch size, (input pipelines, this pipeline's index))``."""
    if input_context is None:
        return batch_size, (1, 0)
    try:
        per_replica = input_context.get_per_replica_batch_size(batch_size)
    except ValueError as err:
        raise OptionsError(f"batch_size={batch_size}: {err}") from None
    return per_replica, (input_context.num_input_pipelines, input_context.input_pipeline_id)


def make_dataset(
    file_pattern: stages.Source,
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
        file_pattern: A glob (local or ``gs://``) or a list of globs/paths; an existing
            file is read as itself, even with glob characters (``plate[1].tfrecord``).
            Every shard must hold one layout (encoding and image size), checked on the
            first good record of each shard when the dataset is built.
        batch_size: The batch size; with ``input_context`` the **global** batch size
            (each replica gets ``batch_size / num_replicas_in_sync``).
        training: Training (shuffled, augmented, repeatable) or evaluation/prediction
            (one deterministic pass with ids); see :mod:`rxdata.pipeline`.
        options: :class:`PipelineOptions` (defaults if ``None``).
        normalizer: Per-channel statistics (:class:`rxdata.Normalizer`). ``None`` scales
            pixels to ``[0, 1]`` (``x / 255``) unless ``dtype="uint8"``.
        label: The feature used as label: ``"sirna_id"`` (default; unlabelled sites are
            dropped in training and get ``-1`` otherwise), any other feature name (e.g.
            ``"cell_type"``, ``"experiment"``, ``"plate"``), or ``None``.
        include_controls: Keep control wells (with ``label="sirna_id"``: 1139 classes,
            :data:`LABEL_SPACES`) or drop them (sirna_id >= 1108; then 1108 classes).
        experiments: Keep only these experiments (the filters form one :class:`Selection`).
        cell_types: Keep only these cell types.
        well_types: Keep only these well types.
        split: A :class:`rxdata.Split` whose ``by`` columns are record features.
        part: The part(s) of ``split`` to keep.
        output: ``"tuple"`` or ``"dict"`` (see :mod:`rxdata.pipeline`).
        input_context: From ``strategy.distribute_datasets_from_function``: per-replica
            batch size, and each input pipeline reads every n-th shard (or every n-th
            record when there are fewer shards than pipelines).

    Returns:
        The dataset (finite unless ``options.repeat`` and ``training``).

    Raises:
        FileNotFoundError: No file matches a pattern.
        OptionsError: Invalid arguments (names the argument and what is allowed).
        RecordError: The shards are not TFRecords, are all empty (or hold only bad
            records, under ``on_error="skip"``/``"warn"``), hold different layouts (names
            a file of each), or a shard's first record is corrupt (``on_error="raise"``).

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
    opts = _check_arguments(options, batch_size, output, normalizer, label)
    selection = Selection(
        include_controls=include_controls,
        experiments=experiments,
        cell_types=cell_types,
        well_types=well_types,
        split=split,
        part=part,
    )
    stages.check_service_use(opts, training, input_context)
    per_replica, shard = _replica_share(batch_size, input_context)

    files = stages.list_shards(file_pattern)
    geometry = stages.check_layout(files, opts, opts, opts, training)
    layout = geometry.layout
    stats = stats_function(normalizer, opts.channels, layout.channels, opts.dtype, opts.jit)
    deterministic = opts.is_deterministic(training)
    ds = stages.read_records(
        files, layout, opts, opts, training=training, shard=shard, absolute=bool(opts.data_service)
    )
    ds = stages.filter_sites(ds, selection, layout, opts, label=label, training=training)
    ds = stages.shuffle(ds, opts, training=training)
    if layout.encoding == "raw":  # vectorized: one parse and one decode per batch
        ds = stages.batch(ds, per_replica, layout, opts, training=training)
        ds = stages.parse(ds, geometry, opts, label=label, deterministic=deterministic)
    else:  # png: decode each site in parallel, then batch
        ds = stages.parse(ds, geometry, opts, label=label, deterministic=deterministic)
        ds = stages.batch(ds, per_replica, layout, opts, training=training)
    static = per_replica if opts.drops_remainder(training) else None  # static batch size
    transform = stages.BatchTransform(stats, geometry, opts, opts, training, label, output, static)
    ds = stages.transform_batches(ds, transform, opts, deterministic=deterministic)
    return stages.prefetch(stages.distribute(ds, opts), opts, deterministic=deterministic)


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

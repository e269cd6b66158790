#!/usr/bin/env python
"""Train a classifier on converted RxRx1 TFRecords, on any hardware target.

Usage (see docs/training.md for every target)::

    python examples/train.py --target gpu --data 'records/by_experiment-42/train/*.tfrecord' \
        --pixel-stats rxrx1/pixel_stats.csv --metadata rxrx1/ --out runs/seed-cnn

What it does:

* picks the ``tf.distribute`` strategy and precision policy for ``--target``
  (``strategy.py``); ``--batch-size`` is per replica, the global batch is
  ``batch_size x replicas``;
* holds out whole experiments for validation (``rxdata.holdout_experiments``, one per cell
  type by default) using the conversion manifest, or takes ``--val-data`` explicitly;
* builds the input with ``rxdata.make_dataset`` through
  ``strategy.distribute_datasets_from_function`` (each worker reads its own shards);
* trains the seed CNN or ResNet50 (``models.py``) and writes to ``--out``:

  | path | what |
  |---|---|
  | ``best.keras`` | the model with the best validation accuracy so far |
  | ``final.keras`` | the model after the last epoch |
  | ``backup/`` | ``BackupAndRestore`` state: re-run the same command to resume |
  | ``tensorboard/`` | TensorBoard logs |
  | ``history.csv`` | one row per epoch (appended across resumes) |
  | ``training_curves.png`` | loss and accuracy per epoch |
  | ``normalizer.json`` | the normalization used (``predict.py`` re-uses it) |
  | ``run.json`` | the configuration, split and record counts |

A run that is killed (preemptible VM, Colab time-out, Ctrl-C) resumes from its last backup
when the same command is run again: the weights and optimizer state saved every
``--backup-every`` steps and the epoch it was in.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import MODELS
from records import RecordSet, load_records
from strategy import PRECISIONS, TARGETS, StrategyPlan, plan_strategy

from rxdata import _io
from rxdata.errors import OptionsError, RxDataError

LABELS = ("treatments", "all")
NUM_CLASSES = {"treatments": 1108, "all": 1139}
NORMALIZE_ON = ("auto", "cpu", "accelerator")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (also written to ``run.json``)."""

    data: str  # TFRecord glob of the training (and, by default, validation) shards
    out: str  # output folder (local or gs://)
    target: str = "cpu"
    model: str = "seed-cnn"
    labels: str = "treatments"  # 1108 siRNA classes; "all" adds the 31 controls (1139)
    image_size: int | None = None  # None: the converted size (from the manifest)
    batch_size: int = 32  # per replica; the seed used 32 on one GPU
    epochs: int = 30
    steps_per_epoch: int | None = None  # None: one pass over the training sites
    learning_rate: float = 1e-3  # the seed's Adam default
    normalizer: str | None = None  # Normalizer JSON; None: see pixel_stats
    pixel_stats: str | None = None  # pixel_stats.csv to build the normalizer from
    metadata: str | None = None  # data root / CSVs (with pixel_stats, for control wells)
    normalization: str = "controls"  # Normalizer mode used with pixel_stats
    # "auto": in the model (uint8 batches, a Keras layer) on accelerator targets, where it
    # is the measured fast path (docs/performance.md); in tf.data on the cpu target
    normalize_on: str = "auto"
    augment: bool = False  # random flips and 90-degree rotations; the seed trained without
    val_data: str | None = None  # explicit validation shards; None: hold out experiments
    val_experiments: tuple[str, ...] = ()  # explicit held-out experiments
    val_per_cell_type: int = 1  # held-out experiments per cell type when none are named
    seed: int = 0
    precision: str = "auto"
    tpu: str | None = None
    cpu_replicas: int = 1
    backup_every: int | None = None  # steps between backups; None: end of each epoch
    steps_per_execution: int = 1  # >1 pays on TPUs (fewer host round trips)
    verbose: int = 2

    @property
    def normalize_where(self) -> str:
        """``normalize_on`` with ``"auto"`` resolved for the target."""
        if self.normalize_on != "auto":
            return self.normalize_on
        return "cpu" if self.target == "cpu" else "accelerator"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise OptionsError(f"target={self.target!r}: expected one of {TARGETS}")
        if self.model not in MODELS:
            raise OptionsError(f"model={self.model!r}: expected one of {MODELS}")
        if self.labels not in LABELS:
            raise OptionsError(f"labels={self.labels!r}: expected one of {LABELS}")
        if self.precision not in PRECISIONS:
            raise OptionsError(f"precision={self.precision!r}: expected one of {PRECISIONS}")
        if self.normalize_on not in NORMALIZE_ON:
            raise OptionsError(
                f"normalize_on={self.normalize_on!r}: expected one of {NORMALIZE_ON}"
            )
        for name in ("batch_size", "epochs", "val_per_cell_type", "steps_per_execution"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise OptionsError(f"{name}={value!r}: expected an integer >= 1")
        for name in ("steps_per_epoch", "backup_every", "image_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise OptionsError(f"{name}={value!r}: expected an integer >= 1 or None")
        if not self.learning_rate > 0:
            raise OptionsError(f"learning_rate={self.learning_rate!r}: expected > 0")
        if self.val_data and self.val_experiments:
            raise OptionsError("give --val-data or --val-experiments, not both")
        if self.normalizer and self.pixel_stats:
            raise OptionsError("give --normalizer (a saved JSON) or --pixel-stats, not both")
        from rxdata.normalization import MODES

        if self.normalization not in MODES:
            raise OptionsError(f"normalization={self.normalization!r}: expected one of {MODES}")
        if self.pixel_stats and self.normalization == "controls" and not self.metadata:
            raise OptionsError(
                "--normalization controls with --pixel-stats needs --metadata (which wells are "
                "controls)"
            )

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.labels]


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    out: str
    best_model: str
    final_model: str
    history: dict[str, list[float]]
    initial_epoch: int
    train_experiments: tuple[str, ...]
    val_experiments: tuple[str, ...]
    seconds: float
    sites_per_second: float

    @property
    def best_val_accuracy(self) -> float:
        values = self.history.get("val_accuracy", [])
        return max(values) if values else float("nan")


# ------------------------------------------------------------------------------ input


def load_normalizer(config: TrainConfig) -> Any:
    """The run's ``rxdata.Normalizer``: a saved JSON, built from ``pixel_stats.csv``, or the
    published global RxRx1 statistics."""
    from rxdata.metadata import read_metadata, read_pixel_stats
    from rxdata.normalization import Normalizer

    if config.normalizer:
        return Normalizer.load(config.normalizer)
    if config.pixel_stats:
        metadata = read_metadata(config.metadata) if config.metadata else None
        return Normalizer.from_pixel_stats(
            read_pixel_stats(config.pixel_stats),
            metadata,
            mode=config.normalization,  # type: ignore[arg-type]  # checked in TrainConfig
        )
    return Normalizer.global_()


@dataclass(frozen=True)
class DataSplit:
    """Training and validation shards, experiments and (labelled) site counts."""

    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    train_experiments: tuple[str, ...]
    val_experiments: tuple[str, ...]
    train_sites: int
    val_sites: int


def _labelled_count(records: RecordSet, experiments: Sequence[str], labels: str) -> int:
    """Sites of ``experiments`` a training pass sees (labelled; controls only with 'all')."""
    from rxdata.metadata import NEGATIVE_CONTROL_WELL, POSITIVE_CONTROL_WELLS

    sites = records.sites[
        records.sites["experiment"].isin(set(experiments)) & (records.sites["dataset"] == "train")
    ]
    if labels == "treatments":  # control wells sit at fixed positions on every plate
        controls = {NEGATIVE_CONTROL_WELL, *POSITIVE_CONTROL_WELLS}
        wells = sites["site_id"].str.split("_").str[2]
        sites = sites[~wells.isin(controls)]
    return len(sites)


def resolve_split(config: TrainConfig, records: RecordSet) -> DataSplit:
    """Hold out whole experiments (or take ``--val-data``) for validation."""
    from rxdata.splits import holdout_experiments

    labelled = records.sites[records.sites["dataset"] == "train"]
    if labelled.empty:
        raise OptionsError(f"{config.data!r} holds no labelled (dataset 'train') sites")
    if config.val_data:
        val_records = load_records(config.val_data)
        overlap = sorted(set(labelled["experiment"]) & set(val_records.experiments))
        if overlap:
            raise OptionsError(
                f"--val-data shares experiments {overlap} with --data; validation must be on "
                "held-out experiments"
            )
        train_exps = sorted(labelled["experiment"].unique())
        val_exps = val_records.experiments
        return DataSplit(
            tuple(records.files_of(train_exps)),
            val_records.files,
            tuple(train_exps),
            tuple(val_exps),
            _labelled_count(records, train_exps, config.labels),
            _labelled_count(val_records, val_exps, config.labels),
        )
    table = labelled.drop_duplicates("experiment")[["experiment", "cell_type"]]
    if config.val_experiments:
        split = holdout_experiments(table, experiments=config.val_experiments, dataset=None)
    else:
        split = holdout_experiments(
            table, per_cell_type=config.val_per_cell_type, seed=config.seed, dataset=None
        )
    train_exps = sorted(k[0] for k in split.keys("train"))
    val_exps = sorted(k[0] for k in split.keys("val"))
    return DataSplit(
        tuple(records.files_of(train_exps)),
        tuple(records.files_of(val_exps)),
        tuple(train_exps),
        tuple(val_exps),
        _labelled_count(records, train_exps, config.labels),
        _labelled_count(records, val_exps, config.labels),
    )


_BATCH_DTYPE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def pipeline_options(
    config: TrainConfig, *, training: bool, precision: str, stored_size: int, fixed: bool
) -> Any:
    """The ``PipelineOptions`` of one input: half-precision batches under mixed precision
    (half the host-to-device bytes), static batch shapes where several replicas or a TPU
    need them, and a resize only when ``--image-size`` differs from the converted size."""
    from rxdata.pipeline import PipelineOptions

    return PipelineOptions(
        dtype=_BATCH_DTYPE[precision],  # type: ignore[arg-type]
        normalize_on=config.normalize_where,  # type: ignore[arg-type]
        resize_to=None if config.image_size in (None, stored_size) else config.image_size,
        repeat=training,
        dihedral=config.augment and training,
        drop_remainder=True if training or fixed else None,
        seed=config.seed,
    )


def make_input(
    strategy: Any,
    files: Sequence[str],
    experiments: Sequence[str],
    *,
    global_batch: int,
    training: bool,
    normalizer: Any,
    options: Any,
    labels: str,
    repeat_eval: bool = False,
) -> Any:
    """A distributed dataset of ``(x, labels)`` made by ``rxdata.make_dataset``.

    Each input pipeline (one per worker) reads its own shards; ``make_dataset`` takes the
    global batch and splits it per replica from the ``InputContext``.
    """
    import tensorflow as tf

    from rxdata.pipeline import make_dataset

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        ds = make_dataset(
            list(files),
            batch_size=global_batch,
            training=training,
            options=options,
            normalizer=normalizer,
            include_controls=labels == "all",
            experiments=list(experiments),
            input_context=context,
        )
        if not training:
            ds = ds.map(lambda x, y, ids: (x, y))  # Keras would read ids as sample weights
            if repeat_eval:
                ds = ds.repeat()
        return ds

    return strategy.distribute_datasets_from_function(dataset_fn)


# ---------------------------------------------------------------------------- outputs


def plot_history(history_csv: str, png: str) -> None:
    """Draw loss and accuracy per epoch (train and validation) from the CSV history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.read_csv(history_csv)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for column, label in ((metric, "train"), (f"val_{metric}", "held-out experiments")):
            if column in frame:
                ax.plot(frame["epoch"] + 1, frame[column], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def _patch_symbolic_build(model: Any, strategy: Any) -> None:
    """Work around Keras 3 (3.15) under ``MultiWorkerMirroredStrategy``.

    Before training, Keras builds metrics from one batch, first averaging the batch over
    replicas with ``strategy.reduce(MEAN, (x, y))``; the collective strategy cannot reduce
    a tuple and fails with "Attempt to convert a value (PerReplica...) to a Tensor". Only
    the batch's structure, shapes and dtypes matter there, so this builds from the local
    replica's part of the batch instead.
    """
    import keras

    def build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(it)
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = build


def _patch_multi_worker_reduction(strategy: Any) -> None:
    """Work around Keras 3 (3.15) under ``MultiWorkerMirroredStrategy``, second part.

    Keras averages each step's logs (loss, metrics: scalars) over replicas with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails on scalars ("Invalid reduction
    dimension 0 for input with 0 dimensions"). The mean over replicas is what is meant:
    ``axis=None`` gives exactly that, across all workers.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = getattr(tf_trainer.reduce_per_replica, "__wrapped__", None)
    original = original or tf_trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy_: Any, reduction: str) -> Any:
        if strategy_ is strategy and reduction == "auto":
            import keras

            return keras.tree.map_structure(
                lambda v: strategy_.reduce("MEAN", v, axis=None), values
            )
        return original(values, strategy_, reduction)

    reduce_per_replica.__wrapped__ = original  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def _tensorboard_available() -> bool:
    """Keras' TensorBoard callback needs the ``tensorboard`` package (not a TF dependency)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _repair_backup(backup_dir: str, log: Any) -> None:
    """Fall back to the previous backup when the last one was cut off mid-write.

    ``BackupAndRestore(double_checkpoint=True)`` keeps the previous weights and training
    state as ``*.bkp`` and falls back to them itself when the weights cannot be read; a
    kill while the small JSON state is written leaves invalid JSON, which Keras does not
    handle, so it is handled here.
    """
    state = _io.join(backup_dir, "training_metadata.json")
    if not _io.exists(state):
        return
    try:
        json.loads(_io.read_bytes(state))
        return
    except ValueError:
        pass
    weights = _io.join(backup_dir, "latest.weights.h5")
    if _io.exists(state + ".bkp") and _io.exists(weights + ".bkp"):
        _io.write_bytes_atomic(state, _io.read_bytes(state + ".bkp"))
        _io.write_bytes_atomic(weights, _io.read_bytes(weights + ".bkp"))
        log("warning: the last backup was cut off mid-write; resuming from the one before")
    else:
        _io.remove(state)
        log("warning: the only backup was cut off mid-write; starting from scratch")


def _best_in_history(history_csv: str) -> float | None:
    """The best ``val_accuracy`` logged so far (``None`` without a history)."""
    import io

    import pandas as pd

    if not _io.exists(history_csv):
        return None
    frame = pd.read_csv(io.BytesIO(_io.read_bytes(history_csv)))
    if "val_accuracy" not in frame or frame["val_accuracy"].isna().all():
        return None
    return float(frame["val_accuracy"].max())


def _worker_dir(out: str, plan: StrategyPlan, name: str) -> str:
    """Chief writes to ``out/name``; other workers to a private folder (same content)."""
    if plan.is_chief:
        return _io.join(out, name)
    index = plan.cluster.task_index if plan.cluster else 0
    private = _io.join(out, "workers", f"worker-{index}")
    _io.makedirs(private)
    return _io.join(private, name)


class _ResumeLog:
    """Logs where a (possibly resumed) run starts; built lazily to import keras late."""

    @staticmethod
    def make(plan: StrategyPlan, log: Any) -> Any:
        import keras

        class ResumeLog(keras.callbacks.Callback):  # type: ignore[misc]
            initial_epoch = 0

            def on_train_begin(self, logs: Any = None) -> None:
                ResumeLog.initial_epoch = int(getattr(self.model, "_initial_epoch", 0) or 0)
                if ResumeLog.initial_epoch:
                    log(f"resumed from backup: starting at epoch {ResumeLog.initial_epoch + 1}")

        return ResumeLog()


# ------------------------------------------------------------------------------- train


def train(config: TrainConfig, *, log: Any = print) -> TrainResult:
    """Run one training job as configured; returns its history and outputs."""
    import keras
    from models import build_model
    from strategy import make_strategy

    plan = plan_strategy(
        config.target, precision=config.precision, tpu=config.tpu, cpu_replicas=config.cpu_replicas
    )
    for note in plan.notes:
        log(f"note: {note}")
    strategy = make_strategy(plan)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    log(
        f"target {config.target}: {type(strategy).__name__}, {replicas} replica(s), "
        f"precision {plan.precision}, global batch {global_batch}"
    )
    if plan.kind == "tpu" and not config.data.startswith("gs://"):
        log("warning: TPU workers read input themselves; local --data works only on a TPU VM")

    records = load_records(config.data)
    stored_size = records.image_shape[0]
    image_size = config.image_size or stored_size
    split = resolve_split(config, records)
    log(
        f"train: {split.train_sites} sites of {len(split.train_experiments)} experiments; "
        f"validation: {split.val_sites} sites of held-out experiments "
        f"{', '.join(split.val_experiments)}"
    )
    if split.train_sites < global_batch:
        raise OptionsError(
            f"{split.train_sites} training sites are fewer than one global batch "
            f"({global_batch}); lower --batch-size"
        )
    steps = config.steps_per_epoch or split.train_sites // global_batch
    # Several workers or a TPU must run the same number of validation steps with static
    # shapes: repeat and count whole batches. Otherwise one exact pass over every site.
    fixed_val = plan.kind in ("tpu", "multi_worker")
    val_steps = max(1, split.val_sites // global_batch) if fixed_val else None

    out = config.out
    _io.makedirs(out)
    normalizer = load_normalizer(config)
    if plan.is_chief:
        normalizer.save(_io.join(out, "normalizer.json"))

    with strategy.scope():
        model = build_model(
            config.model,
            config.num_classes,
            image_size=image_size,
            learning_rate=config.learning_rate,
            normalize_on=config.normalize_where,
            steps_per_execution=config.steps_per_execution,
        )
    if plan.kind == "multi_worker":
        _patch_symbolic_build(model, strategy)
        _patch_multi_worker_reduction(strategy)
    common = {"global_batch": global_batch, "normalizer": normalizer, "labels": config.labels}
    train_ds = make_input(
        strategy,
        split.train_files,
        split.train_experiments,
        training=True,
        options=pipeline_options(
            config, training=True, precision=plan.precision, stored_size=stored_size, fixed=True
        ),
        **common,
    )
    val_ds = make_input(
        strategy,
        split.val_files,
        split.val_experiments,
        training=False,
        options=pipeline_options(
            config,
            training=False,
            precision=plan.precision,
            stored_size=stored_size,
            fixed=fixed_val,
        ),
        repeat_eval=fixed_val,
        **common,
    )

    history_csv = _worker_dir(out, plan, "history.csv")
    backup_dir = _worker_dir(out, plan, "backup")
    _repair_backup(backup_dir, log)
    resuming = _io.exists(_io.join(backup_dir, "training_metadata.json"))
    best_so_far = _best_in_history(history_csv) if resuming else None
    resume = _ResumeLog.make(plan, log)
    callbacks = [
        keras.callbacks.BackupAndRestore(
            backup_dir,
            save_freq=config.backup_every or "epoch",
            # keep the previous backup too: a kill during a write leaves one intact
            double_checkpoint=True,
            delete_checkpoint=True,
        ),
        resume,
        keras.callbacks.ModelCheckpoint(
            _worker_dir(out, plan, "best.keras"),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            # a resumed run must beat the best model saved before the interruption
            initial_value_threshold=best_so_far,
        ),
        # a resumed run continues the history; a fresh run in the same folder starts anew
        keras.callbacks.CSVLogger(history_csv, append=resuming),
    ]
    if plan.is_chief and _tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(_io.join(out, "tensorboard")))
    elif plan.is_chief:
        log("note: TensorBoard logs need the tensorboard package (pip install tensorboard)")
    if plan.is_chief:
        _io.write_bytes_atomic(
            _io.join(out, "run.json"),
            json.dumps(
                {
                    "config": dataclasses.asdict(config),
                    "strategy": type(strategy).__name__,
                    "replicas": replicas,
                    "precision": plan.precision,
                    "global_batch": global_batch,
                    "train_experiments": split.train_experiments,
                    "val_experiments": split.val_experiments,
                    "train_sites": split.train_sites,
                    "val_sites": split.val_sites,
                    "steps_per_epoch": steps,
                },
                indent=1,
            ).encode(),
        )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The validation pass is finite by design (every held-out site once): Keras warns
        # when it ends. The input pipeline shuffles; Keras' own shuffle does not apply.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        fit = model.fit(
            train_ds,
            epochs=config.epochs,
            steps_per_epoch=steps,
            validation_data=val_ds,
            validation_steps=val_steps,
            callbacks=callbacks,
            verbose=config.verbose,
            shuffle=False,
        )
    seconds = time.perf_counter() - start
    epochs_run = len(fit.history.get("loss", []))
    final_model = _worker_dir(out, plan, "final.keras")
    model.save(final_model)
    if plan.is_chief and _io.exists(history_csv):
        plot_history(history_csv, _io.join(out, "training_curves.png"))
    rate = epochs_run * steps * global_batch / seconds if seconds > 0 else float("nan")
    log(f"done: {epochs_run} epoch(s) in {seconds:.1f} s ({rate:.1f} sites/s)")
    return TrainResult(
        out=out,
        best_model=_worker_dir(out, plan, "best.keras"),
        final_model=final_model,
        history={k: [float(v) for v in vs] for k, vs in fit.history.items()},
        initial_epoch=type(resume).initial_epoch,
        train_experiments=split.train_experiments,
        val_experiments=split.val_experiments,
        seconds=seconds,
        sites_per_second=rate,
    )


# --------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train on converted RxRx1 TFRecords on CPU, GPU(s), TPU or several workers.",
    )
    d = TrainConfig(data="", out="")
    p.add_argument("--target", choices=TARGETS, default=d.target)
    p.add_argument("--data", required=True, help="TFRecord glob (local or gs://) of the shards")
    p.add_argument("--out", required=True, help="output folder (local or gs://)")
    p.add_argument("--model", choices=MODELS, default=d.model)
    p.add_argument(
        "--labels",
        choices=LABELS,
        default=d.labels,
        help="treatments: 1108 classes; all: 1139 with the controls",
    )
    p.add_argument("--image-size", type=int, default=None, help="default: converted size")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per replica")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--normalizer", default=None, help="Normalizer JSON (Normalizer.save)")
    p.add_argument(
        "--pixel-stats",
        default=None,
        help="pixel_stats.csv (Kaggle's, or `rxdata stats`) to build the normalizer from",
    )
    p.add_argument("--metadata", default=None, help="data root or CSVs (control wells)")
    p.add_argument(
        "--normalization",
        default=d.normalization,
        help="with --pixel-stats: global, experiment, plate, controls or image",
    )
    p.add_argument(
        "--normalize-on",
        choices=NORMALIZE_ON,
        default=d.normalize_on,
        help="where to normalize: auto (accelerator on gpu/tpu targets, cpu on the cpu "
        "target), cpu (float batches from tf.data) or accelerator (uint8 batches + a "
        "Standardize layer in the model)",
    )
    p.add_argument(
        "--augment",
        action="store_true",
        help="random flips and 90-degree rotations of training sites (cells have no orientation)",
    )
    p.add_argument("--val-data", default=None, help="TFRecord glob of validation shards")
    p.add_argument("--val-experiments", default="", help="comma-separated experiments to hold out")
    p.add_argument("--val-per-cell-type", type=int, default=d.val_per_cell_type)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--tpu", default=None, help="TPU name or 'local' (TPU VM)")
    p.add_argument("--cpu-replicas", type=int, default=d.cpu_replicas)
    p.add_argument("--backup-every", type=int, default=None, help="steps between backups")
    p.add_argument("--steps-per-execution", type=int, default=d.steps_per_execution)
    p.add_argument("--verbose", type=int, default=d.verbose, choices=(0, 1, 2))
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=args.data,
        out=args.out,
        target=args.target,
        model=args.model,
        labels=args.labels,
        image_size=args.image_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.learning_rate,
        normalizer=args.normalizer,
        pixel_stats=args.pixel_stats,
        metadata=args.metadata,
        normalization=args.normalization,
        normalize_on=args.normalize_on,
        augment=args.augment,
        val_data=args.val_data,
        val_experiments=tuple(e for e in args.val_experiments.split(",") if e),
        val_per_cell_type=args.val_per_cell_type,
        seed=args.seed,
        precision=args.precision,
        tpu=args.tpu,
        cpu_replicas=args.cpu_replicas,
        backup_every=args.backup_every,
        steps_per_execution=args.steps_per_execution,
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        result = train(config_from_args(args))
    except RxDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    print(f"best held-out accuracy {result.best_val_accuracy:.4f}; model {result.best_model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

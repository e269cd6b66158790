#!/usr/bin/env python
"""Train a classifier on converted RxRx1 TFRecords, on any hardware target.

Usage (see docs/training.md for every target)::

    rxdata synth --tiny data && rxdata convert data records
    python examples/train.py --data records --out run --epochs 2

    python examples/train.py --target gpu --data records --pixel-stats rxrx1/pixel_stats.csv \
        --metadata rxrx1/ --out runs/seed-cnn

``--data`` is the folder ``rxdata convert`` wrote: its ``train`` split is read (an
unfinished conversion is refused unless ``--allow-incomplete``). A TFRecord glob also
works, for records without a manifest such as rxrx1-utils'.

The script reads top-down: options (``TrainConfig``, ``parse_args``; ``--help`` imports
no TensorFlow), data (which shards hold which experiments, whole experiments held out for
validation, the normalization, ``rxdata.make_dataset`` per worker), model (``models.py``,
after checking the image size), strategy (``strategy.py``; ``--batch-size`` is per
replica), fit and save. :func:`train` creates the strategy first, because logical devices
and TPUs must be set up before any other TensorFlow work.

It writes ``best.keras``, ``final.keras``, ``history.csv``, ``training_curves.png``,
``normalizer.json`` (``predict.py`` re-uses it), ``run.json`` (configuration, split,
normalization) and ``tensorboard/`` to ``--out``. A killed run (preemptible VM, Colab
time-out, Ctrl-C) resumes from ``backup/`` when the same command is run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import posixpath
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from strategy import PRECISIONS, TARGETS, StrategyPlan

from rxdata.errors import OptionsError, RxDataError
from rxdata.naming import NUM_CLASSES, NUM_TREATMENTS
from rxdata.tflog import quiet_tensorflow_startup

MODELS = ("seed-cnn", "resnet50")  # models.MODELS (models.py imports Keras; --help must not)
LABELS = ("treatments", "all")
OUTPUTS = {"treatments": NUM_TREATMENTS, "all": NUM_CLASSES}  # classes per --labels
NORMALIZE_ON = ("auto", "cpu", "accelerator")
NORMALIZATIONS = ("global", "experiment", "plate", "controls", "image")  # Normalizer modes

Log = Callable[[str], Any]

# ---------------------------------------------------------------------------- options


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (also written to ``run.json``)."""

    # the conversion folder (its train split), or a TFRecord glob of the training (and, by
    # default, validation) shards
    data: str
    out: str  # output folder (local or gs://)
    target: str = "cpu"
    model: str = "seed-cnn"
    labels: str = "treatments"  # 1108 siRNA classes; "all" adds the 31 controls (1139)
    # None: the converted size, raised to the smallest size the model takes
    image_size: int | None = None
    batch_size: int = 32  # per replica; the seed used 32 on one GPU
    epochs: int = 30
    steps_per_epoch: int | None = None  # None: one pass over the training sites
    learning_rate: float = 1e-3  # the seed's Adam default
    normalizer: str | None = None  # Normalizer JSON; None: see pixel_stats
    pixel_stats: str | None = None  # pixel_stats.csv to build the normalizer from
    metadata: str | None = None  # data root / CSVs (with pixel_stats, for control wells)
    # Normalizer mode built from pixel_stats; None: "controls" (per-plate control wells).
    # Without pixel_stats or normalizer: the published global statistics.
    normalization: str | None = None
    # "auto": in the model (uint8 batches, a Keras layer) on accelerator targets, where it
    # is the measured fast path (docs/performance.md); in tf.data on the cpu target
    normalize_on: str = "auto"
    augment: bool = False  # random flips and 90-degree rotations; the seed trained without
    val_data: str | None = None  # explicit validation shards; None: hold out experiments
    val_experiments: tuple[str, ...] = ()  # explicit held-out experiments
    # held-out experiments per cell type; None: 1 of each cell type that has 2 or more,
    # or (when none has) 1 experiment in all
    val_per_cell_type: int | None = None
    seed: int = 0
    precision: str = "auto"
    tpu: str | None = None
    cpu_replicas: int = 1
    backup_every: int | None = None  # steps between backups; None: end of each epoch
    steps_per_execution: int = 1  # >1 pays on TPUs (fewer host round trips)
    verbose: int = 2
    # tf.data service dispatcher ("grpc://HOST:PORT"): the training input's per-record work
    # (parse, decode, normalize) runs on its workers' CPUs; None: on this host
    data_service: str | None = None
    allow_incomplete: bool = False  # read the finished shards of an unfinished conversion

    def __post_init__(self) -> None:
        for name, allowed in (
            ("target", TARGETS),
            ("model", MODELS),
            ("labels", LABELS),
            ("precision", PRECISIONS),
            ("normalize_on", NORMALIZE_ON),
        ):
            if getattr(self, name) not in allowed:
                raise OptionsError(f"{name}={getattr(self, name)!r}: expected one of {allowed}")
        for name in ("batch_size", "epochs", "steps_per_execution"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise OptionsError(f"{name}={value!r}: expected an integer >= 1")
        if self.val_per_cell_type == 0:
            raise OptionsError(
                "--val-per-cell-type 0 would leave nothing to validate on (the best model is "
                "chosen on held-out experiments): leave it out and train.py picks a valid "
                "hold-out, or name one with --val-experiments"
            )
        for name in ("steps_per_epoch", "backup_every", "image_size", "val_per_cell_type"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise OptionsError(f"{name}={value!r}: expected an integer >= 1 or None")
        if not self.learning_rate > 0:
            raise OptionsError(f"learning_rate={self.learning_rate!r}: expected > 0")
        if self.val_data and self.val_experiments:
            raise OptionsError("give --val-data or --val-experiments, not both")
        if self.data_service and self.target == "multi-worker":
            raise OptionsError(
                "--data-service feeds the replicas of one host (cpu, gpu, multi-gpu, tpu); "
                "with --target multi-worker each worker reads its own shards: leave it out"
            )
        if self.normalizer and self.pixel_stats:
            raise OptionsError("give --normalizer (a saved JSON) or --pixel-stats, not both")
        if self.normalization is not None and self.normalization not in NORMALIZATIONS:
            raise OptionsError(
                f"normalization={self.normalization!r}: expected one of {NORMALIZATIONS}"
            )
        if self.normalization is not None and not self.pixel_stats:
            raise OptionsError(
                f"--normalization {self.normalization} builds statistics from --pixel-stats; "
                "give --pixel-stats (and --metadata), or a saved --normalizer"
            )
        if self.pixel_stats and self.normalization_mode == "controls" and not self.metadata:
            raise OptionsError(
                "--normalization controls with --pixel-stats needs --metadata (which wells are "
                "controls)"
            )

    @property
    def normalization_mode(self) -> str:
        """The Normalizer mode built from ``pixel_stats``."""
        return self.normalization or "controls"

    @property
    def normalize_where(self) -> str:
        """``normalize_on`` with ``"auto"`` resolved for the target."""
        if self.normalize_on != "auto":
            return self.normalize_on
        return "cpu" if self.target == "cpu" else "accelerator"

    @property
    def num_classes(self) -> int:
        return OUTPUTS[self.labels]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default; an option whose default is ``None`` says in its help
    what it falls back to."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The command line; every option shows its default (``--help`` imports no TF)."""
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train on converted RxRx1 TFRecords on CPU, GPU(s), TPU or several workers.",
        formatter_class=HelpFormatter,
    )
    d = TrainConfig(data="", out="")
    add = p.add_argument
    add("--data", required=True,
        help="the folder of `rxdata convert` (its train split is read), or a TFRecord glob "
        "(local or gs://) of the training shards")  # fmt: skip
    add("--allow-incomplete", action="store_true",
        help="read the finished shards of an unfinished conversion (default: refuse)")  # fmt: skip
    add("--out", required=True, help="output folder (local or gs://)")
    add("--target", choices=TARGETS, default=d.target, help="hardware to train on")
    add("--model", choices=MODELS, default=d.model, help="network (models.py)")
    add("--labels", choices=LABELS, default=d.labels,
        help="treatments: 1108 classes; all: 1139 with the controls")  # fmt: skip
    add("--image-size", type=int, default=None,
        help="input side in px (default: the converted size, raised to the model's "
        "minimum)")  # fmt: skip
    add("--batch-size", type=int, default=d.batch_size, help="per replica")
    add("--epochs", type=int, default=d.epochs, help="epochs to train")
    add("--steps-per-epoch", type=int, default=None,
        help="default: one pass over the training sites")  # fmt: skip
    add("--learning-rate", type=float, default=d.learning_rate, help="Adam learning rate")
    add("--normalizer", default=None,
        help="saved Normalizer JSON (Normalizer.save); default: see --pixel-stats")  # fmt: skip
    add("--pixel-stats", default=None,
        help="pixel_stats.csv (Kaggle's, or `rxdata stats`) to build the normalizer from; "
        "without it or --normalizer: the published global RxRx1 statistics")  # fmt: skip
    add("--metadata", default=None, help="data root or CSVs (control wells for --pixel-stats)")
    add("--normalization", choices=NORMALIZATIONS, default=None,
        help="with --pixel-stats: the statistics to use (default: controls)")  # fmt: skip
    add("--normalize-on", choices=NORMALIZE_ON, default=d.normalize_on,
        help="auto: accelerator on gpu/tpu targets, cpu on the cpu target; cpu: float "
        "batches from tf.data; accelerator: uint8 batches + a Standardize layer")  # fmt: skip
    add("--augment", action="store_true",
        help="random flips and 90-degree rotations of training sites")  # fmt: skip
    add("--val-data", default=None,
        help="TFRecord glob of validation shards of other experiments (default: hold "
        "out experiments of --data)")  # fmt: skip
    add(
        "--val-experiments",
        default=None,
        help="comma-separated experiments to hold out; default: see --val-per-cell-type",
    )
    add("--val-per-cell-type", type=int, default=None,
        help="experiments held out per cell type (default: 1 of each cell type that has "
        "2 or more; 1 in all when none has)")  # fmt: skip
    add("--seed", type=int, default=d.seed, help="seed of the hold-out and the shuffling")
    add("--precision", choices=PRECISIONS, default=d.precision,
        help="auto: mixed_float16 on tensor-core GPUs, mixed_bfloat16 on TPUs, else "
        "float32")  # fmt: skip
    add("--tpu", default=None, help="TPU name or 'local' (TPU VM); default: TPU_NAME, or found")
    add("--cpu-replicas", type=int, default=d.cpu_replicas,
        help="--target cpu: mirror over this many logical CPUs")  # fmt: skip
    add("--backup-every", type=int, default=None,
        help="steps between backups (default: every epoch)")  # fmt: skip
    add("--steps-per-execution", type=int, default=d.steps_per_execution,
        help="steps per host round trip (more pays on TPUs)")  # fmt: skip
    add("--data-service", default=None, metavar="ADDRESS",
        help="tf.data service dispatcher (grpc://HOST:PORT) whose workers decode and "
        "normalize the training input (docs/pipeline.md); default: this host")  # fmt: skip
    add("--verbose", type=int, default=d.verbose, choices=(0, 1, 2),
        help="Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch")  # fmt: skip
    return p


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a command line."""
    args = vars(build_parser().parse_args(argv))
    args["val_experiments"] = tuple(e for e in (args["val_experiments"] or "").split(",") if e)
    return TrainConfig(**args)


# ------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataSplit:
    """Training and validation shards, experiments and (labelled) site counts."""

    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    train_experiments: tuple[str, ...]
    val_experiments: tuple[str, ...]
    train_sites: int
    val_sites: int


def _labelled_count(records: Any, experiments: Sequence[str], labels: str) -> int:
    """Sites of ``experiments`` a training pass sees (labelled; controls only with 'all')."""
    from rxdata.naming import NEGATIVE_CONTROL_WELL, POSITIVE_CONTROL_WELLS

    sites = records.sites[
        records.sites["experiment"].isin(set(experiments)) & (records.sites["dataset"] == "train")
    ]
    if labels == "treatments":  # control wells sit at fixed positions on every plate
        controls = {NEGATIVE_CONTROL_WELL, *POSITIVE_CONTROL_WELLS}
        wells = sites["site_id"].str.split("_").str[2]
        sites = sites[~wells.isin(controls)]
    return len(sites)


def held_out_experiments(table: Any, config: TrainConfig, log: Log) -> list[str]:
    """The experiments to validate on (``table``: one row per experiment and cell type).

    ``--val-experiments`` or ``--val-per-cell-type`` as given; by default one experiment
    of each cell type that has two or more, or, when every cell type has one (the tiny
    synthetic set), one experiment in all (its cell type is then not trained on).
    """
    import numpy as np

    from rxdata.errors import SplitError
    from rxdata.splits import holdout_experiments

    def held(split: Any) -> list[str]:
        return sorted(k[0] for k in split.keys("val"))

    if config.val_experiments:
        split = holdout_experiments(table, experiments=config.val_experiments, dataset=None)
        return held(split)
    if config.val_per_cell_type is not None:
        try:
            split = holdout_experiments(
                table, per_cell_type=config.val_per_cell_type, seed=config.seed, dataset=None
            )
        except SplitError as err:
            raise SplitError(
                f"--val-per-cell-type {config.val_per_cell_type}: {err}; leave the option out "
                "and train.py picks a valid hold-out, or name one with --val-experiments"
            ) from err
        return held(split)
    per_type = table.groupby("cell_type")["experiment"].nunique()
    several = per_type[per_type >= 2].index
    if len(several):
        subset = table[table["cell_type"].isin(several)]
        chosen = held(holdout_experiments(subset, per_cell_type=1, seed=config.seed, dataset=None))
        if len(several) < len(per_type):
            single = ", ".join(sorted(set(per_type.index) - set(several)))
            log(f"note: {single} have one training experiment each: none of theirs is held out")
        return chosen
    experiments = sorted(table["experiment"])
    if len(experiments) < 2:
        raise OptionsError(
            f"{config.data!r} holds one labelled experiment ({experiments[0]}); validation "
            "needs another one: give --val-data with shards of a different experiment"
        )
    chosen = [str(np.random.default_rng(config.seed).choice(experiments))]
    log(
        f"note: every cell type has one training experiment; holding out {chosen[0]} "
        "(its cell type is then not trained on); choose with --val-experiments"
    )
    return chosen


def resolve_split(config: TrainConfig, records: Any, *, log: Log = print) -> DataSplit:
    """Hold out whole experiments (or take ``--val-data``) for validation."""
    from records import load_records

    labelled = records.sites[records.sites["dataset"] == "train"]
    if labelled.empty:
        raise OptionsError(f"{config.data!r} holds no labelled (dataset 'train') sites")
    train_exps = sorted(labelled["experiment"].unique())
    if config.val_data:
        val_records = load_records(
            config.val_data, "train", allow_incomplete=config.allow_incomplete, log=log
        )
        overlap = sorted(set(train_exps) & set(val_records.experiments))
        if overlap:
            raise OptionsError(
                f"--val-data shares experiments {overlap} with --data; validation must be on "
                "held-out experiments"
            )
        val_exps = val_records.experiments
        val_files = val_records.files
    else:
        table = labelled.drop_duplicates("experiment")[["experiment", "cell_type"]]
        val_exps = held_out_experiments(table, config, log)
        train_exps = [e for e in train_exps if e not in val_exps]
        val_records = records
        val_files = tuple(records.files_of(val_exps))
    return DataSplit(
        tuple(records.files_of(train_exps)),
        tuple(val_files),
        tuple(train_exps),
        tuple(val_exps),
        _labelled_count(records, train_exps, config.labels),
        _labelled_count(val_records, val_exps, config.labels),
    )


def load_normalizer(config: TrainConfig) -> tuple[Any, str]:
    """The run's ``rxdata.Normalizer`` and where it comes from (printed and recorded)."""
    from rxdata.metadata import read_metadata, read_pixel_stats
    from rxdata.normalization import Normalizer

    if config.normalizer:
        normalizer = Normalizer.load(config.normalizer)
        return normalizer, f"{normalizer.mode} statistics from --normalizer {config.normalizer}"
    if config.pixel_stats:
        metadata = read_metadata(config.metadata) if config.metadata else None
        normalizer = Normalizer.from_pixel_stats(
            read_pixel_stats(config.pixel_stats),
            metadata,
            mode=config.normalization_mode,  # type: ignore[arg-type]  # checked in TrainConfig
        )
        return normalizer, f"{normalizer.mode} statistics from --pixel-stats {config.pixel_stats}"
    return Normalizer.global_(), (
        "global: the published RxRx1 statistics (no --pixel-stats or --normalizer given; "
        "--pixel-stats with --metadata gives per-plate control statistics, which correct "
        "batch effects)"
    )


_BATCH_DTYPE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def pipeline_options(
    config: TrainConfig,
    *,
    training: bool,
    precision: str,
    stored_size: int,
    fixed: bool,
    image_size: int | None = None,
) -> Any:
    """The ``PipelineOptions`` of one input: half-precision batches under mixed precision
    (half the host-to-device bytes), static batch shapes where several replicas or a TPU
    need them, and a resize only when the model's input differs from the converted size."""
    from rxdata.pipeline import PipelineOptions

    size = image_size or config.image_size or stored_size
    return PipelineOptions(
        dtype=_BATCH_DTYPE[precision],  # type: ignore[arg-type]
        normalize_on=config.normalize_where,  # type: ignore[arg-type]
        resize_to=None if size == stored_size else size,
        repeat=training,
        dihedral=config.augment and training,
        drop_remainder=True if training or fixed else None,
        seed=config.seed,
        # the service's dynamic sharding is for training; evaluation stays exact on this host
        data_service=config.data_service if training else None,
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
    from strategy import BackendStrategy

    from rxdata.pipeline import make_dataset

    def build(training: bool, **context: Any) -> tf.data.Dataset:
        ds = make_dataset(
            list(files),
            batch_size=global_batch,
            training=training,
            options=options,
            normalizer=normalizer,
            include_controls=labels == "all",
            experiments=list(experiments),
            **context,
        )
        if not training:
            ds = ds.map(lambda x, y, ids: (x, y))  # Keras would read ids as sample weights
            if repeat_eval:
                ds = ds.repeat()
        return ds

    if isinstance(strategy, BackendStrategy):
        # JAX/PyTorch: Keras converts each tf.data batch (a global batch; under
        # DataParallel Keras splits it among the devices)
        return build(training)
    if options.data_service is not None:
        # The service already splits the shards among its workers: one dataset of global
        # batches, which the strategy splits among this host's replicas.
        return strategy.experimental_distribute_dataset(build(True))

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return build(training, input_context=context)

    return strategy.distribute_datasets_from_function(dataset_fn)


# ------------------------------------------------------------------------------ model


def model_image_size(config: TrainConfig, stored_size: int, log: Log) -> int:
    """The model's input side: ``--image-size``, or the converted size raised to the
    smallest the model takes (checked here, before Keras fails deep inside a layer)."""
    from models import MIN_IMAGE_SIZE

    smallest = MIN_IMAGE_SIZE[config.model]
    if config.image_size is not None:
        if config.image_size < smallest:
            raise OptionsError(
                f"--image-size {config.image_size} is too small for --model {config.model}, "
                f"which needs at least {smallest} px; give --image-size {smallest} or more"
            )
        return config.image_size
    if stored_size >= smallest:
        return stored_size
    size = -(-smallest // 32) * 32  # the next multiple of 32
    log(
        f"note: the records hold {stored_size} px images and --model {config.model} needs "
        f"at least {smallest} px: resizing to {size} (--image-size)"
    )
    return size


# --------------------------------------------------------------------------- fit, save


def _gfile() -> Any:
    """``tf.io.gfile``: one file API for local paths and ``gs://``."""
    import tensorflow as tf

    return tf.io.gfile


def _write_atomic(path: str, data: bytes) -> None:
    gfile = _gfile()
    with gfile.GFile(path + ".tmp", "wb") as f:
        f.write(data)
    gfile.rename(path + ".tmp", path, overwrite=True)


def plot_history(history_csv: str, png: str) -> None:
    """Draw loss and accuracy per epoch (train and validation) from the CSV history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    with _gfile().GFile(history_csv, "rb") as f:
        frame = pd.read_csv(f)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for column, label in ((metric, "train"), (f"val_{metric}", "held-out experiments")):
            if column in frame:
                ax.plot(frame["epoch"] + 1, frame[column], marker="o", label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    with _gfile().GFile(png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def _tensorboard_available() -> bool:
    """Keras' TensorBoard callback needs the ``tensorboard`` package (not a TF dependency)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _repair_backup(backup_dir: str, log: Log) -> None:
    """Fall back to the previous backup when the last one was cut off mid-write.

    ``BackupAndRestore(double_checkpoint=True)`` keeps the previous weights and training
    state as ``*.bkp`` and falls back to them itself when the weights cannot be read; a
    kill while the small JSON state is written leaves invalid JSON, which Keras does not
    handle, so it is handled here.
    """
    gfile = _gfile()
    state = posixpath.join(backup_dir, "training_metadata.json")
    if not gfile.exists(state):
        return
    try:
        with gfile.GFile(state, "rb") as f:
            json.loads(f.read())
        return
    except ValueError:
        pass
    weights = posixpath.join(backup_dir, "latest.weights.h5")
    if gfile.exists(state + ".bkp") and gfile.exists(weights + ".bkp"):
        gfile.copy(state + ".bkp", state, overwrite=True)
        gfile.copy(weights + ".bkp", weights, overwrite=True)
        log("warning: the last backup was cut off mid-write; resuming from the one before")
    else:
        gfile.remove(state)
        log("warning: the only backup was cut off mid-write; starting from scratch")


def _best_in_history(history_csv: str) -> float | None:
    """The best ``val_accuracy`` logged so far (``None`` without a history)."""
    import pandas as pd

    if not _gfile().exists(history_csv):
        return None
    with _gfile().GFile(history_csv, "rb") as f:
        frame = pd.read_csv(f)
    if "val_accuracy" not in frame or frame["val_accuracy"].isna().all():
        return None
    return float(frame["val_accuracy"].max())


def _worker_dir(out: str, plan: StrategyPlan, name: str) -> str:
    """Chief writes to ``out/name``; other workers to a private folder (same content)."""
    if plan.is_chief:
        return posixpath.join(out, name)
    index = plan.cluster.task_index if plan.cluster else 0
    private = posixpath.join(out, "workers", f"worker-{index}")
    _gfile().makedirs(private)
    return posixpath.join(private, name)


def _resume_log(log: Log) -> Any:
    """A callback that says where a (possibly resumed) run starts."""
    import keras

    class ResumeLog(keras.callbacks.Callback):  # type: ignore[misc]
        initial_epoch = 0

        def on_train_begin(self, logs: Any = None) -> None:
            # BackupAndRestore has restored the epoch by now (it runs first)
            self.initial_epoch = int(getattr(self.model, "_initial_epoch", 0) or 0)
            if self.initial_epoch:
                log(f"resumed from backup: starting at epoch {self.initial_epoch + 1}")

    return ResumeLog()


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


def strategy_name(strategy: Any) -> str:
    """What the log and ``run.json`` call the strategy (JAX/PyTorch: the distribution)."""
    return str(getattr(strategy, "description", type(strategy).__name__))


def train(config: TrainConfig, *, log: Log = print) -> TrainResult:
    """Run one training job as configured; returns its history and outputs."""
    import keras
    from models import build_model
    from records import load_records
    from strategy import make_strategy, plan_strategy

    # strategy first: logical CPUs and TPUs must be set up before other TensorFlow work
    plan = plan_strategy(
        config.target,
        precision=config.precision,
        tpu=config.tpu,
        cpu_replicas=config.cpu_replicas,
        backend=keras.backend.backend(),  # KERAS_BACKEND: tensorflow, jax or torch
    )
    for note in plan.notes:
        log(f"note: {note}")
    strategy = make_strategy(plan)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    log(
        f"target {config.target}: {strategy_name(strategy)}, {replicas} replica(s), "
        f"precision {plan.precision}, global batch {global_batch}"
    )
    if plan.kind == "tpu" and not config.data.startswith("gs://"):
        log("warning: TPU workers read input themselves; local --data works only on a TPU VM")

    # data
    records = load_records(config.data, "train", allow_incomplete=config.allow_incomplete, log=log)
    stored_size = records.image_shape[0]
    split = resolve_split(config, records, log=log)
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
    fixed_val = plan.kind in ("tpu", "multi_worker", "data_parallel")
    val_steps = max(1, split.val_sites // global_batch) if fixed_val else None
    normalizer, normalization = load_normalizer(config)
    log(f"normalization: {normalization}")
    image_size = model_image_size(config, stored_size, log)

    def pipeline(files: Sequence[str], experiments: Sequence[str], training: bool) -> Any:
        fixed = training or fixed_val
        options = pipeline_options(
            config,
            training=training,
            precision=plan.precision,
            stored_size=stored_size,
            fixed=fixed,
            image_size=image_size,
        )
        return make_input(
            strategy,
            files,
            experiments,
            global_batch=global_batch,
            training=training,
            normalizer=normalizer,
            options=options,
            labels=config.labels,
            repeat_eval=fixed_val and not training,
        )

    train_ds = pipeline(split.train_files, split.train_experiments, True)
    val_ds = pipeline(split.val_files, split.val_experiments, False)

    # model
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
        from keras_workarounds import fix_multi_worker_fit

        fix_multi_worker_fit(model, strategy)  # a Keras 3.15 bug; see keras_workarounds.py

    # fit
    out = config.out
    _gfile().makedirs(out)
    history_csv = _worker_dir(out, plan, "history.csv")
    backup_dir = _worker_dir(out, plan, "backup")
    _repair_backup(backup_dir, log)
    resuming = _gfile().exists(posixpath.join(backup_dir, "training_metadata.json"))
    best_so_far = _best_in_history(history_csv) if resuming else None
    resume = _resume_log(log)
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
        callbacks.append(keras.callbacks.TensorBoard(posixpath.join(out, "tensorboard")))
    elif plan.is_chief:
        log("note: TensorBoard logs need the tensorboard package (pip install tensorboard)")
    if plan.is_chief:
        normalizer.save(posixpath.join(out, "normalizer.json"))
        run = {
            "config": dataclasses.asdict(config),
            "strategy": strategy_name(strategy),
            "backend": plan.backend,
            "replicas": replicas,
            "precision": plan.precision,
            "global_batch": global_batch,
            "image_size": image_size,
            "normalization": {"mode": normalizer.mode, "source": normalization},
            "train_experiments": split.train_experiments,
            "val_experiments": split.val_experiments,
            "train_sites": split.train_sites,
            "val_sites": split.val_sites,
            "steps_per_epoch": steps,
        }
        _write_atomic(posixpath.join(out, "run.json"), json.dumps(run, indent=1).encode())
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

    # save
    epochs_run = len(fit.history.get("loss", []))
    final_model = _worker_dir(out, plan, "final.keras")
    model.save(final_model)
    if plan.is_chief and _gfile().exists(history_csv):
        plot_history(history_csv, posixpath.join(out, "training_curves.png"))
    rate = epochs_run * steps * global_batch / seconds if seconds > 0 else float("nan")
    log(f"done: {epochs_run} epoch(s) in {seconds:.1f} s ({rate:.1f} sites/s)")
    return TrainResult(
        out=out,
        best_model=_worker_dir(out, plan, "best.keras"),
        final_model=final_model,
        history={k: [float(v) for v in vs] for k, vs in fit.history.items()},
        initial_epoch=resume.initial_epoch,
        train_experiments=split.train_experiments,
        val_experiments=split.val_experiments,
        seconds=seconds,
        sites_per_second=rate,
    )


def main(argv: Sequence[str] | None = None) -> int:
    # No TensorFlow C++ start-up lines (TF_CPP_MIN_LOG_LEVEL=0 or RXDATA_TF_LOGS=1 shows
    # them); before TensorFlow is first imported.
    quiet_tensorflow_startup()
    try:
        config = parse_args(argv)
        result = train(config)
    except RxDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    print(f"best held-out accuracy {result.best_val_accuracy:.4f}; model {result.best_model}")
    print(
        f"predict: python examples/predict.py --model {config.out} --data {config.data} "
        "--out submission.csv"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

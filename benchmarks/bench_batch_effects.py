#!/usr/bin/env python
"""Batch-effect benchmark: every correction method, WILDS protocol, paired intervals.

Trains the seed-sized CNN (the seed project's layers plus a BatchNormalization after
each convolution, so that BatchNorm-based methods have statistics to work on), with
random dihedral augmentation as WILDS and the RxRx1 winners train, on site 1 of the
training experiments, and scores every method on the four parts of a WILDS split:

* ``train``: site 1 of the training experiments (the only labels a model learns from);
* ``id``: site 2 of the training experiments (WILDS' ``id_test``);
* ``val``: both sites of the validation experiments (one per cell type): every choice
  a run makes (the epoch it keeps, the embedding head's sd floor and L2 penalty, TVN's
  batch) is made on them, and written to ``OUT/choices.csv``;
* ``ood``: both sites of the held-out test experiments (one per cell type), scored once.

On synthetic data (the default) each data seed is a new generated data set, and each
held-out choice another assignment of experiments to train/val/test (0: the last two
experiments of each cell type are val and test; 1: the first two). On real RxRx1
(``--data ROOT``) the two held-out choices are WILDS' ``official`` and ``mixed-to-test``
schemes (:func:`rxdata.splits.wilds_split`); ``ROOT`` may be a conversion of it.

Statistics a method uses come from training data (``global``: the training sites'
pixel statistics; the head: the training embeddings) or, for a transductive method,
from the plate (or experiment) it evaluates, never pooled over test experiments. The
``kind`` column says which: ``inductive`` (per-image or training-only statistics; what
WILDS' standard protocol allows), ``transductive`` (statistics or adaptation from the
evaluated plate or experiment at test time: legitimate for RxRx1, where every plate
carries control wells, but outside WILDS' standard protocol) and ``reference`` (rows
that are not methods: the embedding head the TVN rows are compared with, and LSA, which
uses the plate design).

Methods (one row per method and run in ``OUT/batch_effects.csv``):

* ``global`` (inductive): pixel statistics of the training sites;
* ``image`` (inductive): each image by its own statistics;
* ``experiment``, ``plate`` (transductive): the evaluated experiment's / plate's pixels;
* ``controls`` (transductive): the plate's negative-control well
  (``Normalizer(controls="negative")``, the library default); ``controls_all``: all of
  its control wells (1 negative + 30 positive controls);
* ``controls+plate_batches``: controls, trained on batches drawn from one plate;
* ``controls+adabn`` / ``controls+plate_batches+adabn``: BatchNorm statistics set to
  each evaluated plate's population statistics (:func:`rxdata.adapt_batchnorm`);
* ``controls+tta``: the ``controls`` model (trained with dihedral augmentation) averaged
  over the 8 dihedral views; the ``controls`` row is the same model without TTA;
* ``controls+tvn``: the controls model's embeddings, TVN as EFAAR defines it (negative
  controls, per-batch alignment; batch = plate or experiment, chosen on val), classified
  by a softmax head fitted on the corrected training embeddings;
* ``controls+tvn_all`` (ablation): the first rxdata variant (all 31 controls, per-plate
  center-scale, pooled whitening, no alignment);
* ``controls+lsa`` (reference): the controls model's well probabilities assigned under
  the plate-group constraint; its site columns hold each well's assigned label;
* ``controls+embedding_head`` (reference): the uncorrected embeddings with the same head.

Usage: ``python benchmarks/bench_batch_effects.py [--quick | --smoke] [--out DIR]
[--data ROOT --image-size N --classes N]``; ``ROOT`` is an image root or an ``rxdata
convert`` output folder (read where it is: :func:`plan_real`). ``OUT/run.json`` records
the configuration, wall-clock and CPU time. ``tools/batch_effects_tables.py`` makes the
documentation's tables (with the paired intervals against ``controls``) from the CSV.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import glob
import json
import os
import resource
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message=".*(shuffle=True|ran out of data).*")

METHODS = (
    "global",
    "image",
    "experiment",
    "plate",
    "controls",
    "controls_all",
    "controls+plate_batches",
    "controls+adabn",
    "controls+plate_batches+adabn",
    "controls+tta",
    "controls+tvn",
    "controls+tvn_all",
    "controls+lsa",
    "controls+embedding_head",
)
KINDS = {
    "global": "inductive",
    "image": "inductive",
    "controls+lsa": "reference",
    "controls+embedding_head": "reference",
}
COLUMNS = (
    "method",
    "kind",
    "data_seed",
    "heldout",
    "seed",
    "id_site_acc",
    "val_site_acc",
    "ood_site_acc",
    "ood_well_acc",
    "ood_worst_cell_type_acc",
)
RUN = ("data_seed", "heldout", "seed")  # what identifies a run (the pairing of rows)
CHOICES = ("method", *RUN, "choice", "value", "val_site_acc")
#: The pixel normalization each trained model uses (one model each).
NORMALIZATIONS = ("global", "image", "experiment", "plate", "controls", "controls_all")


def kind(method: str) -> str:
    return KINDS.get(method, "transductive")


@dataclass(frozen=True)
class Config:
    image_size: int
    sirnas_per_plate: int
    experiments_per_cell_type: int  # 2 are held out per choice: one val, one test
    epochs: int  # the most a model trains; the epoch kept is chosen on val
    data_seeds: int
    model_seeds: int
    heldouts: int = 2
    eval_every: int = 2  # epochs between validation checkpoints
    batch_size: int = 16
    workers: int = 2
    #: positive-control wells per plate; a real plate carries 30 (with 1 untreated well)
    positive_controls: int = 30
    classes: int | None = None  # real data: keep this many siRNAs (None: all)


QUICK = Config(
    image_size=64,
    sirnas_per_plate=12,
    experiments_per_cell_type=4,
    epochs=10,
    data_seeds=3,
    model_seeds=1,
)
FULL = Config(
    image_size=64,
    sirnas_per_plate=32,
    experiments_per_cell_type=6,
    epochs=20,
    data_seeds=3,
    model_seeds=2,
)
SMOKE = Config(
    image_size=64,
    sirnas_per_plate=4,
    experiments_per_cell_type=3,
    epochs=1,
    data_seeds=1,
    model_seeds=1,
    heldouts=1,
    eval_every=1,
)
CELL_TYPES = ("HEPG2", "HUVEC", "RPE", "U2OS")
#: The embedding head's sd floors tried on val (see :func:`softmax_head`).
SD_FLOORS = (0.01, 0.1, 1.0)
#: The embedding head's L2 penalties tried on val (with each sd floor: a 3 x 3 grid).
L2S = (1e-3, 1e-2, 1e-1)
#: TVN's batches tried on val: a plate has one negative-control well (2 sites).
TVN_BATCHES = ("plate", "experiment")


def log(message: str, start: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ----------------------------------------------------------------------------- output
#: Marks a folder this benchmark writes; only such a folder's data is replaced.
MARKER = ".rxdata-bench"
#: The files a run writes into its folder.
RESULTS = ("batch_effects.csv", "batch_effects.png", "choices.csv", "run.json")


@contextlib.contextmanager
def claim(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run: the conversion's lock, so a second run is refused.

    The lock is :func:`rxdata.conversion.lock.output_lock` (the one a conversion takes on
    its output folder); ``out`` must be empty or a folder this benchmark wrote (it holds
    :data:`MARKER`).
    """
    from rxdata.conversion.lock import output_lock
    from rxdata.errors import ConvertError

    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: {out} is a file, not a folder; choose another --out")
    marker = out / MARKER
    try:
        if out.exists() and any(out.iterdir()) and not marker.exists():
            raise SystemExit(
                f"error: {out} is not empty and was not written by this benchmark; "
                "choose another --out"
            )
        if marker.exists() and not marker.is_file():
            raise SystemExit(f"error: {marker} is not a file; remove it or choose another --out")
        lock = output_lock(out)
        lock.__enter__()
    except ConvertError as err:  # held by another run, or the folder cannot be made
        message = str(err)
        if "in use by another conversion" in message:
            message = message.replace("by another conversion", "by another run")
            message += "; wait for it to end or choose another --out"
        raise SystemExit(f"error: {message}") from None
    except OSError as err:  # a path under a file, no permission, a dangling link, ...
        raise SystemExit(
            f"error: cannot use {out} as the benchmark's folder ({err.strerror or err}); "
            "choose another --out"
        ) from None
    try:
        marker.touch()
        yield
    finally:
        lock.__exit__(None, None, None)


def fresh_output(out: Path) -> None:
    """Remove a previous run's data sets, records and results from ``out`` (held).

    Every run generates its data anew; a previous run's images or shards of another
    configuration would otherwise be left beside the new ones, and its results beside
    this run's (a run writes its CSV after every run).
    """
    try:
        for pattern in ("data-*", "records-*"):
            for path in out.glob(pattern):
                shutil.rmtree(path)
        for name in RESULTS:
            (out / name).unlink(missing_ok=True)
    except OSError as err:
        raise SystemExit(f"error: cannot clear {out} ({err.strerror or err})") from None


# ----------------------------------------------------------------------------- data
@dataclass
class Data:
    """One data set: records, metadata, pixel statistics (shared by its runs)."""

    seed: int
    files: list[str]
    metadata: pd.DataFrame
    stats: pd.DataFrame
    classes: list[int]  # the siRNA ids a model predicts, in class-index order
    resize: int | None = None  # real data: images resized to the chosen size

    @functools.cached_property
    def truth(self) -> pd.DataFrame:
        table: pd.DataFrame = self.metadata.drop_duplicates("id_code").set_index("id_code")
        return table


@dataclass
class Run:
    """One data set with one held-out choice: split and normalizers."""

    data: Data
    heldout: int
    split: Any
    normalizers: dict[str, Any]
    cfg: Config

    @property
    def index(self) -> dict[int, int]:
        return {s: i for i, s in enumerate(self.data.classes)}


def synthetic_data(cfg: Config, out: Path, seed: int, **synthetic: Any) -> Data:
    """Generate, convert and compute statistics for one data seed.

    ``synthetic`` overrides the generator's options (the calibration probes' changes).
    The generated PNGs are deleted once converted and measured (only the records and
    tables are read afterwards).
    """
    from rxdata import ConvertOptions, compute_pixel_stats, convert, read_metadata
    from rxdata.synthetic import SyntheticOptions, generate

    n = cfg.experiments_per_cell_type
    options = SyntheticOptions(
        **{
            "experiments": tuple((ct, n, 0) for ct in CELL_TYPES),
            "sirnas_per_plate": cfg.sirnas_per_plate,
            "positive_controls": cfg.positive_controls,
            "image_size": cfg.image_size,
            "layout": "full",
            "seed": seed,
            "workers": cfg.workers,
            "progress": False,
            **synthetic,
        }
    )
    root = out / f"data-{seed}"
    log(f"data seed {seed}: generating {len(options.experiment_names)} experiments")
    generate(root, options)
    metadata = read_metadata(root)
    records = out / f"records-{seed}"
    convert(
        root,
        records,
        metadata=metadata,
        options=ConvertOptions(
            strategy="by_experiment", encoding="raw", workers=cfg.workers, progress=False
        ),
    )
    stats = compute_pixel_stats(root, metadata, workers=cfg.workers, progress=False)
    shutil.rmtree(root)
    escaped = glob.escape(str(records))  # --out may hold "[", "*" or "?"
    files = sorted(glob.glob(f"{escaped}/**/*.tfrecord", recursive=True))
    return Data(seed, files, metadata, stats, treatment_classes(metadata, None))


def treatment_classes(metadata: pd.DataFrame, limit: int | None) -> list[int]:
    """The treatment siRNA ids (sorted) a model predicts; the first ``limit`` if given."""
    md = metadata[(metadata["well_type"] == "treatment") & metadata["sirna_id"].notna()]
    ids = sorted(md["sirna_id"].astype(int).unique())
    return ids[:limit] if limit else ids


def heldout_split(metadata: pd.DataFrame, n: int, heldout: int) -> Any:
    """Synthetic held-out choice ``heldout``: val and test experiments per cell type."""
    from rxdata import Split

    val, test = (n - 1, n) if heldout == 0 else (2, 1)
    exps = sorted(set(metadata["experiment"].astype(str)))

    def number(e: str) -> int:
        return int(e.rsplit("-", 1)[1])

    train = [e for e in exps if number(e) not in (val, test)]
    return Split(
        {
            "train": {(e, "1") for e in train},
            "id": {(e, "2") for e in train},
            "val": {(e, s) for e in exps if number(e) == val for s in ("1", "2")},
            "ood": {(e, s) for e in exps if number(e) == test for s in ("1", "2")},
        },
        by=("experiment", "site"),
    )


def make_run(data: Data, cfg: Config, heldout: int, split: Any) -> Run:
    """Normalizers for one split: ``global`` from the training sites only."""
    from rxdata import Normalizer

    train_stats = data.stats[(split.assign(data.stats) == "train").fillna(False).to_numpy(bool)]
    normalizers = {
        "global": Normalizer.from_pixel_stats(train_stats, mode="global"),
        "image": Normalizer.from_pixel_stats(train_stats, mode="image"),
    }
    for name in ("experiment", "plate", "controls", "controls_all"):
        mode = "controls" if name.startswith("controls") else name
        normalizers[name] = Normalizer.from_pixel_stats(
            data.stats,
            data.metadata,
            mode=mode,
            controls="all" if name == "controls_all" else "negative",
            fallback="raise",  # a group without statistics must not fall back to pooled
        )
    return Run(data, heldout, split, normalizers, cfg)


def dataset(
    run: Run,
    part: str,
    normalization: str,
    *,
    training: bool,
    seed: int = 0,
    batch_by: str | None = None,
    treatments_only: bool = True,
) -> Any:
    from rxdata import PipelineOptions, make_dataset

    return make_dataset(
        run.data.files,
        batch_size=run.cfg.batch_size,
        training=training,
        options=PipelineOptions(
            seed=seed,
            deterministic=True,
            drop_remainder=False,
            batch_by=batch_by,
            dihedral=training,
            resize_to=run.data.resize,
        ),
        normalizer=run.normalizers[normalization],
        label="sirna_id" if training else None,
        well_types=["treatment"] if treatments_only else None,
        split=run.split,
        part=part,
    )


# ----------------------------------------------------------------------------- model
def build_model(cfg: Config, classes: int, seed: int) -> Any:
    """The seed CNN's layers (3 conv/pool blocks, dense 1108, dropout) with BatchNorm."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((cfg.image_size, cfg.image_size, 6), name="image")
    x = inp
    for filters, kernel, strides, pool in ((64, 5, 2, 4), (64, 2, 1, 2), (96, 2, 1, 2)):
        x = keras.layers.Conv2D(filters, kernel, strides=strides, use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(pool)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(1108, activation="relu", name="embedding")(x)
    x = keras.layers.Dropout(0.25)(x)
    out = keras.layers.Dense(classes, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name="seed_cnn_bn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train(run: Run, normalization: str, seed: int, batch_by: str | None) -> tuple[Any, int, float]:
    """Train up to ``epochs``; keep the weights of the best validation checkpoint.

    Returns the model, the epoch kept and its validation site accuracy.
    """
    import tensorflow as tf

    index = run.index
    keys = tf.constant(list(index), tf.int64)
    values = tf.constant(list(index.values()), tf.int64)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)
    ds = dataset(run, "train", normalization, training=True, seed=seed, batch_by=batch_by)
    ds = ds.map(lambda x, y: (x, table.lookup(tf.cast(y, tf.int64))))
    # every treatment in the records is a class: --data converts the chosen siRNAs only
    model = build_model(run.cfg, len(index), seed)
    best: tuple[float, int, list[Any]] = (-1.0, 0, [])
    for epoch in range(1, run.cfg.epochs + 1):
        model.fit(ds, epochs=1, verbose=0)
        if epoch % run.cfg.eval_every and epoch != run.cfg.epochs:
            continue
        ids, probs = predict_part(model, run, "val", normalization)
        acc = site_accuracy(run, ids, probs.argmax(axis=1))
        if acc > best[0]:
            best = (acc, epoch, model.get_weights())
    model.set_weights(best[2])
    return model, best[1], best[0]


# ----------------------------------------------------------------------------- scoring
def site_truth(run: Run, ids: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    rows = run.data.truth.loc[ids["id_code"]]
    labels = rows["sirna_id"].astype("Int64").map(run.index).fillna(-1).astype(int)
    return labels.to_numpy(), rows["cell_type"].astype(str).to_numpy()


def site_accuracy(run: Run, ids: pd.DataFrame, labels: np.ndarray) -> float:
    truth, _ = site_truth(run, ids)
    keep = truth >= 0
    return float((labels[keep] == truth[keep]).mean()) if keep.any() else float("nan")


def scores(
    run: Run, preds: dict[str, tuple[pd.DataFrame, np.ndarray]], *, labels_given: bool = False
) -> dict[str, float]:
    """Accuracies from ``{part: (ids, probs)}`` per site (or ``(ids, labels)``)."""
    from rxdata import accuracy_report, average_sites

    out = {f"{p}_site_acc": float("nan") for p in ("id", "val", "ood")}
    out.update(ood_well_acc=float("nan"), ood_worst_cell_type_acc=float("nan"))
    for name, (ids, pred) in preds.items():
        truth, cell_types = site_truth(run, ids)
        keep = truth >= 0  # sites of siRNAs beyond --classes are not scored
        if not keep.any():
            continue
        labels = pred if labels_given else pred.argmax(axis=1)
        report = accuracy_report(labels[keep], truth[keep], cell_types[keep])
        out[f"{name}_site_acc"] = report["acc_avg"]
        if name != "ood":
            continue
        out["ood_worst_cell_type_acc"] = report["acc_worst_cell_type"]
        kept_ids = ids.loc[keep].reset_index(drop=True)
        if labels_given:  # per-well labels broadcast to sites: one per well
            wells = pd.Series(labels[keep], index=kept_ids["id_code"]).groupby(level=0).first()
        else:
            averaged = average_sites(pred[keep], id_codes=kept_ids["id_code"])
            wells = averaged.idxmax(axis=1).astype(int)
        w_truth, _ = site_truth(run, pd.DataFrame({"id_code": wells.index}))
        out["ood_well_acc"] = float((wells.to_numpy() == w_truth).mean())
    return out


def eval_parts(run: Run) -> tuple[str, ...]:
    return tuple(p for p in ("id", "val", "ood") if p in run.split.parts)


def predict_part(model: Any, run: Run, part: str, normalization: str) -> Any:
    from rxdata.pipeline import predict

    return predict(model, dataset(run, part, normalization, training=False))


def adabn(model: Any, run: Run, part: str, normalization: str) -> Any:
    """Predict each plate with BatchNorm statistics of its own (treatment) images."""
    import tensorflow as tf

    from rxdata import predict_per_group

    images, ids, sites = [], [], []
    for x, meta in dataset(run, part, normalization, training=False):  # read once
        images.append(x.numpy())
        ids += [v.decode() for v in meta["id_code"].numpy()]
        sites += meta["site"].numpy().tolist()
    x_all, ids_a, sites_a = np.concatenate(images), np.array(ids), np.array(sites)
    plates = np.array([i.rsplit("_", 1)[0] for i in ids])
    datasets = {}
    for plate in sorted(set(plates)):
        sel = plates == plate
        meta = {"id_code": ids_a[sel], "site": sites_a[sel]}
        datasets[plate] = tf.data.Dataset.from_tensor_slices((x_all[sel], meta)).batch(
            run.cfg.batch_size
        )
    out_ids, probs = predict_per_group(model, datasets)
    return out_ids[["id_code", "site"]], probs


def lsa(run: Run, pred: tuple[pd.DataFrame, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """Plate-group assignment of well probabilities; returns per-site labels."""
    from rxdata import assign_plates, average_sites, plate_groups
    from rxdata.naming import NUM_TREATMENTS

    ids, probs = pred
    sirnas = np.array(run.data.classes)
    md = run.data.metadata
    in_train = (run.split.assign(md) == "train").fillna(False).to_numpy(bool)
    train_md = md[md["experiment"].isin(set(md.loc[in_train, "experiment"]))]
    groups = plate_groups(train_md)
    wells = average_sites(probs, id_codes=ids["id_code"])
    full = np.full((len(wells), NUM_TREATMENTS), 1e-9)  # siRNAs absent from the set: ~0
    full[:, sirnas] = wells.to_numpy()
    assigned = assign_plates(pd.DataFrame(full, index=wells.index), groups)
    labels = assigned.loc[ids["id_code"]].map(run.index).fillna(-1).astype(int).to_numpy()
    return ids, labels


def softmax_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    classes: int,
    x_test: dict[str, np.ndarray],
    sd_floor: float = 0.1,
    l2: float = 1e-2,
) -> dict[str, np.ndarray]:
    """A multinomial logistic-regression head fitted on training embeddings (numpy, scipy).

    Features standardized by the training rows' mean and sd, L2 penalty ``l2`` on the
    weights, L-BFGS for at most 300 iterations from zero weights. Each sd is floored at
    ``sd_floor`` times the mean sd over the features, or a ReLU unit that barely fires on
    the training rows would divide a test row's value by almost zero; the benchmark
    chooses ``sd_floor`` from :data:`SD_FLOORS` and ``l2`` from :data:`L2S` on val.
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax, softmax

    mean, sd = x_train.mean(0), x_train.std(0)
    sd = np.maximum(sd, sd_floor * sd.mean() + 1e-12)
    a = (x_train - mean) / sd
    n, d = a.shape
    onehot = np.eye(classes)[y_train]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = w[: d * classes].reshape(d, classes), w[d * classes :]
        logp = log_softmax(a @ weights + bias, axis=1)
        g = (np.exp(logp) - onehot) / n
        value = -(onehot * logp).sum() / n + 0.5 * l2 * (weights**2).sum()
        grad = np.concatenate([(a.T @ g + l2 * weights).ravel(), g.sum(0)])
        return float(value), grad

    w0 = np.zeros(d * classes + classes)
    w = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 300}).x
    weights, bias = w[: d * classes].reshape(d, classes), w[d * classes :]
    return {k: softmax(((v - mean) / sd) @ weights + bias, axis=1) for k, v in x_test.items()}


def embedding_rows(
    model: Any, run: Run, normalization: str = "controls"
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str, str, float]]]:
    """The embedding head, TVN (EFAAR) and the first TVN variant, with their choices.

    Returns ``({method: {part: (ids, probs)}}, [(method, choice, value, val_acc)])``.
    The head's sd floor and L2 penalty are chosen together on val (the grid
    :data:`SD_FLOORS` x :data:`L2S`) for the uncorrected embeddings and reused for the
    TVN rows; TVN's batch (plate or experiment) is chosen on val.
    """
    import keras

    from rxdata import tvn
    from rxdata.pipeline import predict

    embed = keras.Model(model.inputs, model.get_layer("embedding").output)
    parts = {}
    for part in ("train", *eval_parts(run)):
        ds = dataset(run, part, normalization, training=False, treatments_only=False)
        parts[part] = predict(embed, ds)
    ids = pd.concat([parts[p][0].assign(part=p) for p in parts], ignore_index=True)
    x = np.concatenate([parts[p][1] for p in parts]).astype(np.float64)
    rows = run.data.truth.loc[ids["id_code"]]
    experiment = rows["experiment"].astype(str).to_numpy()
    plate = (rows["experiment"].astype(str) + "/" + rows["plate"].astype(str)).to_numpy()
    well_type = rows["well_type"].astype(str).to_numpy()
    y = rows["sirna_id"].astype("Int64").map(run.index).fillna(-1).astype(int).to_numpy()
    part_of = ids["part"].to_numpy()
    treat = (well_type == "treatment") & (y >= 0)
    fit = treat & (part_of == "train")
    sel = {p: treat & (part_of == p) for p in eval_parts(run)}

    def head(z: np.ndarray, floor: float, l2: float) -> dict[str, Any]:
        probs = softmax_head(
            z[fit], y[fit], len(run.index), {p: z[s] for p, s in sel.items()}, floor, l2
        )
        return {
            p: (ids.loc[s, ["id_code", "site"]].reset_index(drop=True), probs[p])
            for p, s in sel.items()
        }

    def val_acc(result: dict[str, Any]) -> float:
        vids, vprobs = result["val"]
        return site_accuracy(run, vids, vprobs.argmax(axis=1))

    choices = []
    tried = {(f, l2): head(x, f, l2) for f in SD_FLOORS for l2 in L2S}
    accs = {k: val_acc(v) for k, v in tried.items()}
    floor, l2 = max(accs, key=lambda k: accs[k])  # the first of equals: grid order
    out = {"controls+embedding_head": tried[floor, l2]}
    choices.append(("controls+embedding_head", "sd_floor", str(floor), accs[floor, l2]))
    choices.append(("controls+embedding_head", "l2", str(l2), accs[floor, l2]))
    negative = well_type == "negative_control"
    batches = {"plate": plate, "experiment": experiment}
    tried_tvn = {b: head(tvn(x, batches[b], negative), floor, l2) for b in TVN_BATCHES}
    batch = max(TVN_BATCHES, key=lambda b: val_acc(tried_tvn[b]))
    out["controls+tvn"] = tried_tvn[batch]
    choices.append(("controls+tvn", "batch", batch, val_acc(tried_tvn[batch])))
    first = tvn(x, plate, well_type != "treatment", align=False)
    out["controls+tvn_all"] = head(first, floor, l2)
    return out, choices


# ----------------------------------------------------------------------------- main
def run_seed(run: Run, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every method on one run; returns its result rows and the choices made on val."""
    from rxdata import dihedral_tta

    rows: list[dict[str, Any]] = []
    choices: list[dict[str, Any]] = []
    tag = {"data_seed": run.data.seed, "heldout": run.heldout, "seed": seed}
    parts = eval_parts(run)

    def add(method: str, result: dict[str, float]) -> None:
        rows.append({"method": method, "kind": kind(method), **tag, **result})
        shown = " ".join(f"{k}={v:.3f}" for k, v in result.items())
        log(f"{tag} {method:<30}{shown}")

    def chose(method: str, choice: str, value: Any, acc: float) -> None:
        choices.append(
            {"method": method, **tag, "choice": choice, "value": value, "val_site_acc": acc}
        )

    models = {}
    for name in NORMALIZATIONS:
        models[name], epoch, acc = train(run, name, seed, None)
        chose(name, "epoch", epoch, acc)
        preds = {p: predict_part(models[name], run, p, name) for p in parts}
        add(name, scores(run, preds))
        if name == "controls":
            controls_preds = preds
    plate_model, epoch, acc = train(run, "controls", seed, "plate")
    chose("controls+plate_batches", "epoch", epoch, acc)
    preds = {p: predict_part(plate_model, run, p, "controls") for p in parts}
    add("controls+plate_batches", scores(run, preds))
    base = models["controls"]
    for name, m in (("controls+adabn", base), ("controls+plate_batches+adabn", plate_model)):
        add(name, scores(run, {p: adabn(m, run, p, "controls") for p in parts}))
    tta = dihedral_tta(base)
    add("controls+tta", scores(run, {p: predict_part(tta, run, p, "controls") for p in parts}))
    embedded, made = embedding_rows(base, run)
    for method, choice, value, acc in made:
        chose(method, choice, value, acc)
    for name in ("controls+tvn", "controls+tvn_all"):
        add(name, scores(run, embedded[name]))
    lsa_preds = {p: lsa(run, controls_preds[p]) for p in parts}
    add("controls+lsa", scores(run, lsa_preds, labels_given=True))
    add("controls+embedding_head", scores(run, embedded["controls+embedding_head"]))
    return rows, choices


def chart(frame: pd.DataFrame, path: Path, title: str) -> None:
    """Held-out site accuracy by method: mean and the runs' range, coloured by kind."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    stats = frame.groupby("method", sort=False)["ood_site_acc"].agg(["mean", "min", "max"])
    stats = stats.reindex([m for m in METHODS if m in stats.index])
    colours = {"inductive": "tab:blue", "transductive": "tab:orange", "reference": "tab:gray"}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    pos = np.arange(len(stats))
    err = np.vstack([stats["mean"] - stats["min"], stats["max"] - stats["mean"]])
    ax.bar(pos, stats["mean"], color=[colours[kind(m)] for m in stats.index])
    ax.errorbar(pos, stats["mean"], yerr=err, fmt="none", ecolor="black", capsize=3)
    ax.set_xticks(pos, stats.index, rotation=30, ha="right")
    ax.set_ylabel("held-out site accuracy (mean, runs' range)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, list(colours), fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the under-30-minute configuration")
    size.add_argument("--smoke", action="store_true", help="a short check that it all runs")
    p.add_argument("--out", default="bench-batch-effects", help="output folder")
    p.add_argument(
        "--data",
        help="a real RxRx1 root (either layout) or its rxdata conversion, not synthetic data",
    )
    p.add_argument("--metadata", help="--data: the metadata's folder or file (default: ROOT)")
    p.add_argument("--image-size", type=_positive, help="--data: images resized to N x N")
    p.add_argument("--classes", type=_positive, help="--data: keep the first N siRNAs")
    p.add_argument("--data-seeds", type=_positive, help="override the data seeds")
    p.add_argument("--seeds", type=_positive, help="override the model seeds per run")
    p.add_argument("--epochs", type=_positive, help="override the most epochs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = SMOKE if args.smoke else QUICK if args.quick else FULL
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    overrides = {
        "data_seeds": args.data_seeds,
        "model_seeds": args.seeds,
        "epochs": args.epochs,
        "image_size": args.image_size,
        "classes": args.classes,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.data is None and (args.image_size or args.classes or args.metadata):
        raise SystemExit("error: --metadata, --image-size and --classes apply to --data only")
    if cfg.experiments_per_cell_type < 3 and args.data is None:
        raise SystemExit("error: at least 3 experiments per cell type (train, val, test)")
    out = Path(args.out)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    if args.data is not None:
        meta = Path(args.metadata) if args.metadata else None
        plan = plan_real(Path(args.data), cfg, meta)  # refuses unusable data before any work
    with claim(out):
        fresh_output(out)
        log(f"configuration: {name} {cfg}")
        rows: list[dict[str, Any]] = []
        choices: list[dict[str, Any]] = []

        def save(complete: bool) -> None:
            pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(
                out / RESULTS[0], index=False, float_format="%.4f"
            )
            pd.DataFrame(choices, columns=list(CHOICES)).to_csv(
                out / RESULTS[2], index=False, float_format="%.4f"
            )
            info = {
                "configuration": name,
                "config": dataclasses.asdict(cfg),
                "data": args.data,
                "complete": complete,  # False while runs remain (or when stopped)
                "wall_s": round(time.perf_counter() - start, 1),
                "cpu_s": round(cpu_seconds() - cpu0, 1),
                "cpus": os.cpu_count(),
                "load_average_at_end": list(os.getloadavg()),
            }
            (out / RESULTS[3]).write_text(json.dumps(info, indent=2) + "\n")

        runs = plan.runs(out) if args.data is not None else synthetic_runs(cfg, out)
        for run in runs:
            for seed in range(cfg.model_seeds):  # every run is reported: none is selected
                r, c = run_seed(run, seed)
                rows += r
                choices += c
                save(complete=False)  # partial results survive
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        chart(frame, out / RESULTS[1], f"Held-out site accuracy by method ({name} run)")
        save(complete=True)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
        print_summary(frame)
        log(f"wrote {out / RESULTS[0]}; wall {wall:.0f} s, CPU {cpu:.0f} s")
    return 0


def synthetic_runs(cfg: Config, out: Path) -> Iterator[Run]:
    for data_seed in range(cfg.data_seeds):
        data = synthetic_data(cfg, out, data_seed)
        for heldout in range(cfg.heldouts):
            split = heldout_split(data.metadata, cfg.experiments_per_cell_type, heldout)
            yield make_run(data, cfg, heldout, split)
        shutil.rmtree(out / f"records-{data_seed}", ignore_errors=True)


#: Real data: the fewest labeled treatment sites a part needs per cell type.
MIN_SITES = {"train": 2, "val": 1, "ood": 1}


@dataclass
class RealPlan:
    """What a ``--data`` run will read: the sites, the two WILDS splits, the classes."""

    root: Path
    metadata: pd.DataFrame  # the complete sites of the chosen classes and the controls
    splits: list[tuple[int, Any]]  # (held-out choice, split): official, mixed-to-test
    classes: list[int]
    cfg: Config
    records: Any = None  # --data is a conversion (rxdata.Records): read, not converted
    stats: pd.DataFrame | None = None  # its pixel statistics, measured when planned

    def runs(self, out: Path) -> Iterator[Run]:
        """Convert the planned sites, measure their pixel statistics, yield the runs.

        A conversion given as ``--data`` is read where it is: its statistics were
        measured when it was planned, and the splits name the planned sites.
        """
        from rxdata import ConvertOptions, compute_pixel_stats, convert

        if self.records is not None:
            files = self.records.files()
            stats = self.stats
        else:
            records = out / "records-real"
            log(f"converting {len(self.metadata)} sites of {self.root}")
            convert(
                self.root,
                records,
                metadata=self.metadata,
                options=ConvertOptions(
                    strategy="by_experiment", workers=self.cfg.workers, progress=False, scan=False
                ),
            )
            log("pixel statistics")
            stats = compute_pixel_stats(
                self.root, self.metadata, workers=self.cfg.workers, progress=False
            )
            escaped = glob.escape(str(records))  # --out may hold "[", "*" or "?"
            files = sorted(glob.glob(f"{escaped}/**/*.tfrecord", recursive=True))
        data = Data(0, files, self.metadata, stats, self.classes, resize=self.cfg.image_size)
        for heldout, split in self.splits[: self.cfg.heldouts]:
            yield make_run(data, self.cfg, heldout, split)


def open_conversion(root: Path) -> Any:
    """The conversion at, above or (alone) below ``root`` (:func:`rxdata.open_records`).

    ``None`` when there is none there: ``root`` is then an image root.

    Raises:
        RxDataError: a conversion is there but cannot be opened (a damaged manifest,
            several conversions below ``root``).
    """
    from rxdata import open_records
    from rxdata.records import find_conversion

    try:
        find_conversion(root)
    except FileNotFoundError:
        return None
    return open_records(root)


#: The metadata columns a conversion's records give (one row per site).
RECORD_COLUMNS = (
    "site_id", "id_code", "dataset", "experiment", "cell_type", "plate", "well", "site",
    "well_type", "sirna_id",
)  # fmt: skip


def read_conversion(records: Any, metadata_path: Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(metadata, pixel statistics)`` of a complete conversion's sites, in one read.

    Every site is read once (:class:`rxdata.sites.Sites`): its metadata from the record
    (an unlabeled site's ``sirna_id`` is missing) and each channel's statistics
    (:func:`rxdata.stats.image_stats`, the ``pixel_stats.csv`` columns). With
    ``metadata_path`` the labels come from that metadata instead, for the converted sites.

    Raises:
        IncompleteConversionError: the conversion is unfinished, running or lacks shards.
        SystemExit: the records hold no labels and no ``metadata_path`` is given.
    """
    from rxdata import read_metadata
    from rxdata.metadata import PIXEL_STATS_COLUMNS
    from rxdata.sites import Sites
    from rxdata.stats import image_stats

    records.check_complete()
    if metadata_path is None and records.label_release is None:
        raise SystemExit(
            f"error: --data {records.root}: its records hold no labels (converted without "
            "them); give the labeled metadata with --metadata (the full release's "
            "metadata.csv)"
        )
    log(f"reading {records.n_sites} sites of the conversion {records.root}")
    rows, stats = [], []
    for site in Sites(records):
        row = {c: site[c] for c in RECORD_COLUMNS if c != "site_id"}
        row["site_id"] = f"{site['id_code']}_{site['site']}"
        row["sirna_id"] = site["sirna_id"] if site["sirna_id"] >= 0 else None
        rows.append(row)
        key = {c: site[c] for c in PIXEL_STATS_COLUMNS[:5]}
        for channel in range(site["image"].shape[2]):
            values = image_stats(site["image"][:, :, channel])
            stats.append(
                {
                    **key,
                    "channel": channel + 1,
                    **dict(zip(PIXEL_STATS_COLUMNS[6:], values, strict=True)),
                }
            )
    metadata = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    metadata["sirna_id"] = metadata["sirna_id"].astype("Int64")
    if metadata_path is not None:
        labeled = read_metadata(metadata_path)
        metadata = labeled[labeled["site_id"].astype(str).isin(set(metadata["site_id"]))]
    return metadata.reset_index(drop=True), pd.DataFrame(stats, columns=PIXEL_STATS_COLUMNS)


def site_split(split: Any, sites: pd.DataFrame) -> Any:
    """``split`` with each part as the sites of ``sites`` it holds (by id_code and site).

    A conversion holds sites the plan did not choose (siRNAs beyond ``--classes``, sites
    without every channel): a split by the chosen sites reads only those.
    """
    from rxdata import Split

    assigned = split.assign(sites).astype("string").fillna("")  # "": in no part
    keys = list(zip(sites["id_code"].astype(str), sites["site"].astype(str), strict=True))
    return Split(
        {p: {k for k, a in zip(keys, assigned, strict=True) if a == p} for p in split.names},
        by=("id_code", "site"),
        scheme=split.scheme,
    )


def plan_real(root: Path, cfg: Config, metadata_path: Path | None = None) -> RealPlan:
    """Read a real RxRx1 root or conversion and plan the run; refuse what cannot run.

    ``root`` is an image root (either layout) or an ``rxdata convert`` output folder
    (:func:`open_conversion`): a complete conversion, PNG or raw, of the sites to use; it
    is read where it is (its metadata and pixel statistics in one read,
    :func:`read_conversion`) instead of converted again. The splits are WILDS'
    (:func:`rxdata.splits.wilds_split`): held-out choice 0 is ``official`` (train,
    id_test, val, test) and 1 is ``mixed-to-test`` (no id_test). Only sites with all six
    channel images are used. Every part needs labeled treatment sites of every cell type
    (:data:`MIN_SITES`); the Kaggle CSVs do not label the test experiments' treatments
    (WILDS' val and test), the full release's ``metadata.csv`` does. ``metadata_path`` is
    the metadata's folder or file when it is not ``root`` (for a conversion: the labels
    of its sites). Refusals exit with a message that gives the counts and the fix.
    """
    from rxdata import read_metadata
    from rxdata.errors import RxDataError
    from rxdata.metadata import scan_images
    from rxdata.splits import wilds_split

    records, stats = None, None
    try:
        records = open_conversion(root)
        if records is not None:
            metadata, stats = read_conversion(records, metadata_path)
            complete = set(metadata["site_id"].astype(str))
        else:
            metadata = read_metadata(metadata_path or root)
            found = scan_images(root).sites
            complete = set(found.loc[found["complete"], "site_id"].astype(str))
        # a conversion may hold some experiments only: the parts' counts below say which
        # parts that leaves without sites
        on_missing = "raise" if records is None else "allow"
        official = wilds_split(metadata, on_missing=on_missing)
        mixed = wilds_split(metadata, on_missing=on_missing, scheme="mixed-to-test")
    except RxDataError as err:
        raise SystemExit(f"error: --data {root}: {err}") from None
    usable = metadata[metadata["site_id"].astype(str).isin(complete)]
    classes = treatment_classes(usable, cfg.classes)
    treated = usable[(usable["well_type"] == "treatment") & usable["sirna_id"].notna()]
    treated = treated[treated["sirna_id"].astype(int).isin(classes)]
    parts = official.assign(treated)
    problems = []
    for part, part_name in (("train", "train"), ("val", "val"), ("ood", "test")):
        counts = treated[parts == part_name].groupby("cell_type", observed=False).size()
        counts = counts.reindex(list(CELL_TYPES), fill_value=0)
        short = counts[counts < MIN_SITES[part]]
        if len(short):
            problems.append(
                f"{part_name}: "
                + ", ".join(f"{ct} {n}" for ct, n in short.items())
                + f" labeled treatment sites with all 6 images (needs {MIN_SITES[part]})"
            )
    if problems:
        unlabeled = metadata["sirna_id"].isna() & (metadata["well_type"] == "treatment")
        hint = ""
        if records is not None:
            sizes = ", ".join(f"{k} {v}" for k, v in records.split_sizes.items())
            hint += (
                f" The conversion holds {len(metadata)} sites of"
                f" {metadata['experiment'].nunique()} experiments (splits: {sizes});"
                " the WILDS split needs labeled sites of its train, val and test"
                " experiments: convert them all (both Kaggle splits, or the full release)."
            )
        if unlabeled.any():
            hint += (
                " The metadata labels no treatment of the test experiments (the Kaggle CSVs"
                " do not): use the full RxRx1 release's metadata.csv"
                + (" (--metadata)." if records is not None else ".")
            )
        raise SystemExit(
            f"error: --data {root}: too few sites to train and score "
            f"({len(complete)} of {len(metadata)} sites have all 6 images): "
            + "; ".join(problems)
            + "."
            + hint
        )
    keep = usable["well_type"].ne("treatment") | usable["sirna_id"].astype("Int64").isin(classes)
    chosen = usable[keep.fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)
    if stats is not None:  # the chosen sites' statistics, as a converted root's would be
        sites = set(zip(chosen["id_code"].astype(str), chosen["site"].astype(int), strict=True))
        own = [k in sites for k in zip(stats["id_code"], stats["site"].astype(int), strict=True)]
        stats = stats[own].reset_index(drop=True)

    def renamed(split: Any) -> Any:  # the benchmark's part names
        from rxdata import Split

        names = {"id_test": "id", "test": "ood"}
        out = Split(
            {names.get(k, k): v for k, v in split.parts.items()}, by=split.by, scheme=split.scheme
        )
        # a conversion holds more than the chosen sites: read the chosen ones only
        return site_split(out, chosen) if records is not None else out

    what = "conversion" if records is not None else "root"
    log(
        f"--data {root} ({what}): {len(chosen)} sites ({len(classes)} classes) of "
        f"{len(metadata)}; splits: WILDS official and mixed-to-test"
    )
    splits = [(0, renamed(official)), (1, renamed(mixed))]
    return RealPlan(root, chosen, splits, classes, cfg, records=records, stats=stats)


def print_summary(frame: pd.DataFrame) -> None:
    from rxdata.evaluation import paired_differences

    diffs = paired_differences(frame, "ood_site_acc", "controls", on=list(RUN))
    means = frame.groupby("method", sort=False)["ood_site_acc"].mean()
    print("\nmethod                          kind          held-out site   vs controls [95%]")
    for method in [m for m in METHODS if m in means.index]:
        d = diffs.loc[method]
        mark = " *" if d["established"] else ""
        print(
            f"{method:<32}{kind(method):<14}{means[method]:>8.3f}       "
            f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{mark}"
        )
    print("* the interval excludes 0")


if __name__ == "__main__":
    sys.exit(main())

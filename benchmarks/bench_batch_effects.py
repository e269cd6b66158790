#!/usr/bin/env python
"""Batch-effect benchmark: every correction method on held-out synthetic experiments.

Generates a synthetic RxRx1 with the calibrated batch effects (``rxdata.synthetic``
defaults), converts it to TFRecords, and for each seed trains the seed-sized CNN (the
seed project's layers plus a BatchNormalization after each convolution, so that
BatchNorm-based methods have statistics to work on) on site 1 of the training
experiments. Like the WILDS RxRx1 split, it scores

* held-in (ID): site 2 of the training experiments (never trained on);
* held-out (OOD): both sites of one whole experiment per cell type, never seen.

Methods (one row per method and seed in ``OUT/batch_effects.csv``):

* ``global``, ``experiment``, ``plate``, ``controls``, ``image``: the input normalized
  by :class:`rxdata.Normalizer` in that mode (one model each);
* ``controls+plate_batches``: controls, trained on batches drawn from one plate
  (``PipelineOptions(batch_by="plate")``);
* ``controls+adabn``: the controls model with BatchNorm statistics recomputed on each
  plate's own images before predicting it (:func:`rxdata.predict_per_group`);
* ``controls+plate_batches+adabn``: both, the 5th-place recipe: a model trained on
  plate-pure batches learns with per-plate BatchNorm statistics, and AdaBN gives it
  per-plate statistics at inference too;
* ``controls+tta``: the controls model averaged over the 8 dihedral views
  (:func:`rxdata.dihedral_tta`);
* ``controls+lsa``: the controls model's well probabilities assigned under the
  plate-group constraint (:func:`rxdata.assign_plates`); its site columns hold the
  well-level assignment of each site (the assignment is per well);
* ``controls+embedding_head`` (reference for the next row): the controls model's
  penultimate-layer embeddings, uncorrected, classified by a softmax (multinomial
  logistic-regression) head fitted on the training experiments' embeddings;
* ``controls+tvn``: the same embeddings corrected by :func:`rxdata.tvn` against each
  plate's control wells, classified by the same kind of head fitted on the corrected
  training embeddings; the difference to the row above is TVN's alone.

Usage: ``python benchmarks/bench_batch_effects.py [--quick] [--out DIR] [--seeds N]``.
Every plate carries the real 31 control wells. ``--quick`` (64 px, 16 siRNAs per plate
group, 16 experiments, 12 epochs, 3 seeds) took 427 s (7 minutes) on an otherwise idle
2-core machine; the default is larger (5 seeds, 32 siRNAs per plate group, 24
experiments, 20 epochs) and took 2763 s (46 minutes); ``--smoke`` runs every method once
in about a minute. Prints each method's mean and sd over seeds and the OOD/ID ratio
against ``global``; writes the CSV and ``batch_effects.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import glob
import os
import shutil
import sys
import time
import warnings
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
    "experiment",
    "plate",
    "controls",
    "image",
    "controls+plate_batches",
    "controls+adabn",
    "controls+plate_batches+adabn",
    "controls+tta",
    "controls+lsa",
    "controls+embedding_head",
    "controls+tvn",
)
COLUMNS = (
    "method",
    "seed",
    "id_site_acc",
    "ood_site_acc",
    "ood_well_acc",
    "ood_worst_cell_type_acc",
)


@dataclass(frozen=True)
class Config:
    image_size: int
    sirnas_per_plate: int
    experiments_per_cell_type: int  # the last one of each cell type is held out
    epochs: int
    seeds: int
    batch_size: int = 16
    workers: int = 2
    #: positive-control wells per plate; a real plate carries 30 (with 1 untreated well)
    positive_controls: int = 30


QUICK = Config(image_size=64, sirnas_per_plate=16, experiments_per_cell_type=4, epochs=12, seeds=3)
FULL = Config(image_size=64, sirnas_per_plate=32, experiments_per_cell_type=6, epochs=20, seeds=5)
CELL_TYPES = ("HEPG2", "HUVEC", "RPE", "U2OS")


def log(message: str, start: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)


# ----------------------------------------------------------------------------- data
#: Marks a folder this benchmark writes; only such a folder's data is replaced. A run
#: holds an ``flock`` on it, so a second run into the same folder is refused.
MARKER = ".rxdata-bench"
#: The files a run writes into its folder (the CSV after every seed, the chart at the end).
RESULTS = ("batch_effects.csv", "batch_effects.png")
_HELD: dict[Path, int] = {}  # folder -> descriptor of its locked marker, held until exit


def fresh_output(out: Path) -> None:
    """Make ``out`` a benchmark folder without a previous run's data set and records.

    Every run generates its data set anew; a previous run's images or shards of another
    configuration would otherwise be left beside the new ones (and refused by convert as
    images without metadata). The previous run's results are removed with them, so the
    folder never holds a CSV or chart of another run (a run writes its CSV after each
    seed). A non-empty folder this benchmark did not write is refused,
    and so is a folder another run of the benchmark is using (it would delete that run's
    data): this process locks the folder's marker until it ends.
    """
    try:
        _claim(out)
        for name in ("data", "records"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in RESULTS:  # a killed re-run must not leave the last run's beside its own
            (out / name).unlink(missing_ok=True)
    except OSError as err:  # a path under a file, no permission, a dangling link, ...
        raise SystemExit(
            f"error: cannot use {out} as the benchmark's folder ({err.strerror or err}); "
            "choose another --out"
        ) from None


def _claim(out: Path) -> None:
    """Check that ``out`` is (or can become) this benchmark's folder, and lock it."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: {out} is a file, not a folder; choose another --out")
    marker = out / MARKER
    if out.exists() and any(out.iterdir()) and not marker.exists():
        raise SystemExit(
            f"error: {out} is not empty and was not written by this benchmark; choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    key = out.resolve()
    held = _HELD.get(key)
    if held is not None:
        if marker.exists() and os.stat(marker).st_ino == os.fstat(held).st_ino:
            return  # this process holds the lock already
        os.close(held)  # the folder was removed and made again since: lock the new marker
        del _HELD[key]
    if marker.exists() and not marker.is_file():
        raise SystemExit(f"error: {marker} is not a file; remove it or choose another --out")
    fd = os.open(marker, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SystemExit(
            f"error: another run of this benchmark is using {out}; wait for it to end "
            "or choose another --out"
        ) from None
    _HELD[key] = fd


def make_data(cfg: Config, out: Path, **synthetic: Any) -> dict[str, Any]:
    """Generate, convert and compute statistics once; every seed and method shares them.

    ``synthetic`` overrides the generator's options (the calibration probes' changes);
    the benchmark itself runs with the defaults.
    """
    fresh_output(out)
    from rxdata import (
        ConvertOptions,
        Normalizer,
        Split,
        compute_pixel_stats,
        convert,
        read_metadata,
    )
    from rxdata.synthetic import SyntheticOptions, generate

    n = cfg.experiments_per_cell_type
    options = SyntheticOptions(
        **{
            "experiments": tuple((ct, n, 0) for ct in CELL_TYPES),
            "sirnas_per_plate": cfg.sirnas_per_plate,
            "positive_controls": cfg.positive_controls,
            "image_size": cfg.image_size,
            "layout": "full",
            "seed": 0,
            "workers": cfg.workers,
            "progress": False,
            **synthetic,
        }
    )
    data = out / "data"
    log(f"generating {len(options.experiment_names)} experiments at {cfg.image_size} px")
    generate(data, options)
    metadata = read_metadata(data)
    held_out = [f"{ct}-{n:02d}" for ct in CELL_TYPES]
    train = sorted(set(metadata["experiment"]) - set(held_out))
    split = Split(
        {
            "train": {(e, "1") for e in train},
            "id": {(e, "2") for e in train},
            "ood": {(e, s) for e in held_out for s in ("1", "2")},
        },
        by=("experiment", "site"),
    )
    log("converting to TFRecords")
    convert(
        data,
        out / "records",
        metadata=metadata,
        options=ConvertOptions(
            strategy="by_experiment", encoding="raw", workers=cfg.workers, progress=False
        ),
    )
    records = glob.escape(str(out / "records"))  # --out may hold "[", "*" or "?"
    files = sorted(glob.glob(f"{records}/**/*.tfrecord", recursive=True))
    log("pixel statistics")
    stats = compute_pixel_stats(data, metadata, workers=cfg.workers, progress=False)
    normalizers = {
        mode: Normalizer.from_pixel_stats(stats, metadata, mode=mode)
        for mode in ("global", "experiment", "plate", "controls", "image")
    }
    truth = metadata.drop_duplicates("id_code").set_index("id_code")
    return {
        "files": files,
        "split": split,
        "normalizers": normalizers,
        "metadata": metadata,
        "truth": truth,
        "classes": int(4 * cfg.sirnas_per_plate),
        "options": options,
    }


def dataset(
    data: dict[str, Any],
    part: str,
    mode: str,
    *,
    training: bool,
    cfg: Config,
    seed: int = 0,
    batch_by: str | None = None,
    treatments_only: bool = True,
) -> Any:
    from rxdata import PipelineOptions, make_dataset

    return make_dataset(
        data["files"],
        batch_size=cfg.batch_size,
        training=training,
        options=PipelineOptions(
            seed=seed, deterministic=True, drop_remainder=False, batch_by=batch_by
        ),
        normalizer=data["normalizers"][mode],
        label="sirna_id" if training else None,
        well_types=["treatment"] if treatments_only else None,
        split=data["split"],
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


def label_index(data: dict[str, Any]) -> dict[int, int]:
    """siRNA id -> model class index (the treatments present in the synthetic set)."""
    md = data["metadata"]
    ids = sorted(md.loc[md["well_type"] == "treatment", "sirna_id"].astype(int).unique())
    return {int(s): i for i, s in enumerate(ids)}


def train(data: dict[str, Any], mode: str, cfg: Config, seed: int, batch_by: str | None) -> Any:
    import tensorflow as tf

    index = label_index(data)
    keys = tf.constant(list(index), tf.int64)
    values = tf.constant(list(index.values()), tf.int64)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)
    ds = dataset(data, "train", mode, training=True, cfg=cfg, seed=seed, batch_by=batch_by)
    ds = ds.map(lambda x, y: (x, table.lookup(tf.cast(y, tf.int64))))
    model = build_model(cfg, data["classes"], seed)
    model.fit(ds, epochs=cfg.epochs, verbose=0)
    return model


# ----------------------------------------------------------------------------- scoring
def site_truth(data: dict[str, Any], ids: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    index = label_index(data)
    rows = data["truth"].loc[ids["id_code"]]
    return rows["sirna_id"].astype(int).map(index).to_numpy(), rows["cell_type"].to_numpy()


def scores(
    data: dict[str, Any],
    id_pred: tuple[pd.DataFrame, np.ndarray],
    ood_pred: tuple[pd.DataFrame, np.ndarray],
    *,
    labels_given: bool = False,
) -> dict[str, float]:
    """ID and OOD accuracies from (ids, probs) per site, or (ids, labels) if labels_given."""
    from rxdata import accuracy_report, average_sites

    out = {}
    for name, (ids, pred) in (("id", id_pred), ("ood", ood_pred)):
        truth, cell_types = site_truth(data, ids)
        labels = pred if labels_given else pred.argmax(axis=1)
        report = accuracy_report(labels, truth, cell_types)
        out[f"{name}_site_acc"] = report["acc_avg"]
        if name == "ood":
            out["ood_worst_cell_type_acc"] = report["acc_worst_cell_type"]
            if labels_given:  # per-well labels broadcast to sites: one per well
                wells = pd.Series(labels, index=ids["id_code"]).groupby(level=0).first()
            else:
                wells = average_sites(pred, id_codes=ids["id_code"]).idxmax(axis=1)
                wells = wells.astype(int)
            w_truth, _ = site_truth(data, pd.DataFrame({"id_code": wells.index}))
            out["ood_well_acc"] = float((wells.to_numpy() == w_truth).mean())
    return out


def predict_part(model: Any, data: dict[str, Any], part: str, mode: str, cfg: Config) -> Any:
    from rxdata.pipeline import predict

    return predict(model, dataset(data, part, mode, training=False, cfg=cfg))


def adabn(model: Any, data: dict[str, Any], part: str, cfg: Config) -> Any:
    """Predict each plate with BatchNorm statistics of its own (treatment) images."""
    import tensorflow as tf

    from rxdata import predict_per_group

    images, ids, sites, plates = [], [], [], []
    for x, meta in dataset(data, part, "controls", training=False, cfg=cfg):  # read once
        images.append(x.numpy())
        ids += [v.decode() for v in meta["id_code"].numpy()]
        sites += meta["site"].numpy().tolist()
        plates += [v.decode().rsplit("_", 1)[0] for v in meta["id_code"].numpy()]
    x_all, ids_a, sites_a, plates_a = (
        np.concatenate(images),
        np.array(ids),
        np.array(sites),
        np.array(plates),
    )
    datasets = {}
    for plate in sorted(set(plates)):
        sel = plates_a == plate
        meta = {"id_code": ids_a[sel], "site": sites_a[sel]}
        datasets[plate] = tf.data.Dataset.from_tensor_slices((x_all[sel], meta)).batch(
            cfg.batch_size
        )
    out_ids, probs = predict_per_group(model, datasets)
    return out_ids[["id_code", "site"]], probs


def lsa(
    data: dict[str, Any], pred: tuple[pd.DataFrame, np.ndarray]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Plate-group assignment of well probabilities; returns per-site labels."""
    from rxdata import assign_plates, average_sites, plate_groups
    from rxdata.naming import NUM_TREATMENTS

    ids, probs = pred
    index = label_index(data)
    sirnas = np.array(list(index))
    md = data["metadata"]
    train_md = md[md["experiment"].isin({e for e, _ in data["split"].parts["train"]})]
    groups = plate_groups(train_md)
    wells = average_sites(probs, id_codes=ids["id_code"])
    full = np.full((len(wells), NUM_TREATMENTS), 1e-9)  # siRNAs absent from the set: ~0
    full[:, sirnas] = wells.to_numpy()
    assigned = assign_plates(pd.DataFrame(full, index=wells.index), groups)
    labels = assigned.loc[ids["id_code"]].map(index).fillna(-1).astype(int).to_numpy()
    return ids, labels


def softmax_head(
    x_train: np.ndarray, y_train: np.ndarray, classes: int, x_test: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """A multinomial logistic-regression head fitted on training embeddings (numpy, scipy).

    The same classifier for every embedding it is given (one fixed recipe, nothing tuned
    per method): features standardized by the training rows' mean and sd, L2 penalty
    ``L2`` on the weights, L-BFGS for at most 300 iterations from zero weights. Each sd
    is floored at ``SD_FLOOR`` times the mean sd over the features, or a ReLU unit that
    barely fires on the training rows would divide a test row's value by almost zero
    (the blow-up that :func:`rxdata.center_scale`'s ``variance_floor`` prevents).
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax, softmax

    mean, sd = x_train.mean(0), x_train.std(0)
    sd = np.maximum(sd, SD_FLOOR * sd.mean() + 1e-12)
    a = (x_train - mean) / sd
    n, d = a.shape
    onehot = np.eye(classes)[y_train]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = w[: d * classes].reshape(d, classes), w[d * classes :]
        logp = log_softmax(a @ weights + bias, axis=1)
        g = (np.exp(logp) - onehot) / n
        value = -(onehot * logp).sum() / n + 0.5 * L2 * (weights**2).sum()
        grad = np.concatenate([(a.T @ g + L2 * weights).ravel(), g.sum(0)])
        return float(value), grad

    w0 = np.zeros(d * classes + classes)
    w = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 300}).x
    weights, bias = w[: d * classes].reshape(d, classes), w[d * classes :]
    return {k: softmax(((v - mean) / sd) @ weights + bias, axis=1) for k, v in x_test.items()}


#: L2 penalty of :func:`softmax_head`, set once (not tuned per method or on held-out data).
L2 = 1e-2
#: Floor of a feature's sd in :func:`softmax_head`, relative to the mean sd (set once).
SD_FLOOR = 0.1


def embedding_predict(
    model: Any, data: dict[str, Any], cfg: Config, mode: str = "controls"
) -> dict[str, dict[str, tuple[pd.DataFrame, np.ndarray]]]:
    """Penultimate-layer embeddings classified by :func:`softmax_head`, without and with TVN.

    Returns ``{"embedding_head": {...}, "tvn": {...}}``, each ``{part: (ids, probs)}`` for
    the ``id`` and ``ood`` parts. TVN (:func:`rxdata.tvn`, the EFAAR recipe) center-scales
    every plate's embeddings by that plate's control wells (untreated and positive
    controls, all sites of the plate) and whitens by the covariance of the control rows
    of every plate: it is fitted on control rows only, and a held-out plate is corrected
    by its own controls. The head is fitted on the training experiments' treatment rows
    (site 1) only, in the embedding space it is then applied in. ``mode`` is the
    normalization the model was trained with (the benchmark's rows: ``controls``).
    """
    import keras

    from rxdata import tvn
    from rxdata.pipeline import predict

    embed = keras.Model(model.inputs, model.get_layer("embedding").output)
    parts = {}
    for part in ("train", "id", "ood"):
        ds = dataset(data, part, mode, training=False, cfg=cfg, treatments_only=False)
        parts[part] = predict(embed, ds)
    ids = pd.concat([parts[p][0].assign(part=p) for p in parts], ignore_index=True)
    x = np.concatenate([parts[p][1] for p in parts]).astype(np.float64)
    rows = data["truth"].loc[ids["id_code"]]
    plates = (rows["experiment"].astype(str) + "/" + rows["plate"].astype(str)).to_numpy()
    controls = (rows["well_type"] != "treatment").to_numpy()
    index = label_index(data)
    treat = ~controls
    y = rows["sirna_id"].astype(int).map(index).to_numpy()
    fit = treat & (ids["part"] == "train").to_numpy()
    sel = {p: treat & (ids["part"] == p).to_numpy() for p in ("id", "ood")}
    out = {}
    for name, z in (("embedding_head", x), ("tvn", tvn(x, plates, controls))):
        probs = softmax_head(
            z[fit], y[fit].astype(int), data["classes"], {p: z[s] for p, s in sel.items()}
        )
        out[name] = {
            p: (ids.loc[s, ["id_code", "site"]].reset_index(drop=True), probs[p])
            for p, s in sel.items()
        }
    return out


# ----------------------------------------------------------------------------- main
def run_seed(data: dict[str, Any], cfg: Config, seed: int) -> list[dict[str, Any]]:
    from rxdata import dihedral_tta

    rows = []

    def add(method: str, result: dict[str, float]) -> None:
        rows.append({"method": method, "seed": seed, **result})
        log(f"seed {seed} {method:<30}" + " ".join(f"{k}={v:.3f}" for k, v in result.items()))

    models = {}
    for mode in ("global", "experiment", "plate", "controls", "image"):
        models[mode] = train(data, mode, cfg, seed, None)
        preds = {p: predict_part(models[mode], data, p, mode, cfg) for p in ("id", "ood")}
        add(mode, scores(data, preds["id"], preds["ood"]))
        if mode == "controls":
            controls_preds = preds
    model = train(data, "controls", cfg, seed, "plate")
    preds = {p: predict_part(model, data, p, "controls", cfg) for p in ("id", "ood")}
    add("controls+plate_batches", scores(data, preds["id"], preds["ood"]))
    base = models["controls"]
    for name, m in (("controls+adabn", base), ("controls+plate_batches+adabn", model)):
        add(name, scores(data, adabn(m, data, "id", cfg), adabn(m, data, "ood", cfg)))
    tta = dihedral_tta(base)
    preds = {p: predict_part(tta, data, p, "controls", cfg) for p in ("id", "ood")}
    add("controls+tta", scores(data, preds["id"], preds["ood"]))
    add(
        "controls+lsa",
        scores(
            data,
            lsa(data, controls_preds["id"]),
            lsa(data, controls_preds["ood"]),
            labels_given=True,
        ),
    )
    e = embedding_predict(base, data, cfg)
    for name in ("embedding_head", "tvn"):
        add(f"controls+{name}", scores(data, e[name]["id"], e[name]["ood"]))
    return rows


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    stats = frame.groupby("method", sort=False)[list(COLUMNS[2:])].agg(["mean", "std"])
    return stats.reindex([m for m in METHODS if m in stats.index])


def chart(frame: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    stats = summarize(frame)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    pos = np.arange(len(stats))
    for i, (col, label) in enumerate(
        (
            ("id_site_acc", "held-in site"),
            ("ood_site_acc", "held-out site"),
            ("ood_well_acc", "held-out well"),
            ("ood_worst_cell_type_acc", "held-out worst cell type"),
        )
    ):
        ax.bar(
            pos + (i - 1.5) * 0.2,
            stats[(col, "mean")],
            0.2,
            yerr=stats[(col, "std")].fillna(0),
            capsize=2,
            label=label,
        )
    ax.set_xticks(pos, stats.index, rotation=30, ha="right")
    ax.set_ylabel("accuracy (mean ± sd over seeds)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the ~10-minute 2-core configuration")
    p.add_argument("--out", default="bench-batch-effects", help="output folder")
    p.add_argument(
        "--seeds", type=_positive, help="number of seeds 0..N-1 (default: 3 quick, 5 full)"
    )
    p.add_argument("--epochs", type=_positive, help="override the configuration's epochs")
    p.add_argument("--smoke", action="store_true", help="a 1-minute check that it all runs")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.smoke:
        cfg = Config(
            image_size=64, sirnas_per_plate=4, experiments_per_cell_type=2, epochs=1, seeds=1
        )
    if args.seeds:
        cfg = dataclasses.replace(cfg, seeds=args.seeds)
    if args.epochs:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    out = Path(args.out)
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    log(f"configuration: {name} {cfg}")
    data = make_data(cfg, out)
    csv = out / RESULTS[0]
    rows: list[dict[str, Any]] = []
    for seed in range(cfg.seeds):  # every seed is reported: none is selected
        rows += run_seed(data, cfg, seed)
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame.to_csv(csv, index=False, float_format="%.4f")  # partial results survive
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    stats = summarize(frame)
    glob_ratio = (
        stats.loc["global", ("ood_site_acc", "mean")] / stats.loc["global", ("id_site_acc", "mean")]
    )
    print(
        f"\n## batch effects ({name}, {cfg.seeds} seeds, "
        f"chance {1 / data['classes']:.3f}); mean ± sd over seeds"
    )
    print(
        f"{'method':<30}{'ID site':>14}{'OOD site':>14}{'OOD well':>14}{'OOD worst CT':>14}"
        f"{'OOD/ID':>8}{'OOD vs global':>15}"
    )
    base = stats.loc["global", ("ood_site_acc", "mean")]
    for method, row in stats.iterrows():
        cells = "".join(f"{row[(c, 'mean')]:>8.3f}±{row[(c, 'std')]:.3f}" for c in COLUMNS[2:])
        ratio = row[("ood_site_acc", "mean")] / max(row[("id_site_acc", "mean")], 1e-9)
        print(f"{method:<30}{cells}{ratio:>8.2f}{row[('ood_site_acc', 'mean')] / base:>14.2f}x")
    print(f"global OOD/ID ratio {glob_ratio:.2f} (WILDS RxRx1 ERM: 29.9/39.8 = 0.75)")
    chart(
        frame,
        out / RESULTS[1],
        f"Held-in vs held-out accuracy by method ({name} run)",
    )
    log(f"wrote {csv} and {out / RESULTS[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
[--data ROOT --image-size N --classes N] [--restart]``; ``ROOT`` is an image root or an
``rxdata convert`` output folder (read where it is: :func:`plan_real`). ``OUT/run.json``
records the configuration, the finished runs and the wall-clock and CPU time of each run
and each session. ``tools/batch_effects_tables.py`` makes the documentation's tables
(with the paired intervals against ``controls``) from the CSV.

A run is made unit by unit, one ``(data_seed, heldout, seed)`` at a time, and the same
command with the same ``--out`` continues a stopped run (:func:`read_progress`): the
finished units are kept, the one in progress is made again, a data seed with units left
is generated again and checked against its fingerprint (:func:`data_fingerprint`), and
a run of another configuration, or a complete run, is never made over it without
``--restart``. The default configuration needs more CPU hours than one session has.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import glob
import hashlib
import importlib.util
import io
import json
import os
import resource
import shutil
import sys
import time
import warnings
import weakref
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


def clear_data(out: Path) -> None:
    """Remove the data sets and records a stopped run left in ``out`` (held).

    A run generates (or converts) each data set it needs anew; a stopped run's images
    or shards may be incomplete, so none is reused. Its results are kept.
    """
    try:
        for pattern in ("data-*", "records-*"):
            for path in out.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for path in out.glob(".*.tmp-*"):  # a write cut short (:func:`write_atomic`)
            path.unlink()
    except OSError as err:
        raise SystemExit(f"error: cannot clear {out} ({err.strerror or err})") from None


def fresh_output(out: Path) -> None:
    """Remove a previous run's data sets, records and results from ``out`` (held).

    What ``--restart`` does: every unit is run again, and the previous run's results
    and times are discarded with its data.
    """
    clear_data(out)
    try:
        for name in RESULTS:
            (out / name).unlink(missing_ok=True)
    except OSError as err:
        raise SystemExit(f"error: cannot clear {out} ({err.strerror or err})") from None


# ----------------------------------------------------------------------------- resume
#: The choices every run records (``choices.csv``): a run without all of them is unfinished.
RUN_CHOICES = frozenset(
    {(name, "epoch") for name in (*NORMALIZATIONS, "controls+plate_batches")}
    | {
        ("controls+embedding_head", "sd_floor"),
        ("controls+embedding_head", "l2"),
        ("controls+tvn", "batch"),
    }
)
Unit = tuple[int, int, int]  # (data_seed, heldout, seed): one run, the unit of resuming


def planned_units(cfg: Config, real: bool = False) -> list[Unit]:
    """Every run a configuration makes, in the order it makes them.

    Real data (``--data``, ``real``) is one data set, data seed 0, with WILDS' two
    held-out choices (:func:`plan_real`).

    Example:
        >>> planned_units(SMOKE)
        [(0, 0, 0)]
        >>> len(planned_units(FULL)), len(planned_units(FULL, real=True))
        (12, 4)
    """
    return [
        (d, h, s)
        for d in range(1 if real else cfg.data_seeds)
        for h in range(min(cfg.heldouts, 2) if real else cfg.heldouts)
        for s in range(cfg.model_seeds)
    ]


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a run killed mid-write keeps the old file)."""
    from rxdata import _io  # the converter's atomic write: a hidden temporary, fsync, rename

    _io.write_bytes_atomic(path, text.encode())


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A results CSV; a last line cut off by a killed write (no newline) is dropped."""
    empty: pd.DataFrame = pd.DataFrame(columns=list(columns))
    if not path.is_file():
        return empty
    text = path.read_text()
    if text and not text.endswith("\n"):  # the old code wrote in place: a kill cuts a line
        text = text[: text.rfind("\n") + 1]
    if not text:
        return empty
    frame = pd.read_csv(io.StringIO(text), dtype={"value": str})
    if list(frame.columns) != list(columns):
        raise SystemExit(
            f"error: {path} has the columns {list(frame.columns)}, not a run's"
            f" {list(columns)}; choose another --out, or --restart to discard it"
        )
    return frame


def finished_units(rows: pd.DataFrame, choices: pd.DataFrame) -> set[Unit]:
    """The units whose every method row and every choice are in the CSVs."""
    methods: dict[Unit, list[str]] = {}
    for unit, method in zip(unit_keys(rows), rows["method"], strict=True):
        methods.setdefault(unit, []).append(str(method))
    made: dict[Unit, list[tuple[str, str]]] = {}
    for unit, method, choice in zip(
        unit_keys(choices), choices["method"], choices["choice"], strict=True
    ):
        made.setdefault(unit, []).append((str(method), str(choice)))
    return {
        unit
        for unit, names in methods.items()
        if sorted(names) == sorted(METHODS)
        and len(made.get(unit, [])) == len(RUN_CHOICES)
        and set(made[unit]) == RUN_CHOICES
    }


def unit_keys(frame: pd.DataFrame) -> list[Unit]:
    """The unit of each row of a results or choices table."""
    return [(int(d), int(h), int(s)) for d, h, s in frame[list(RUN)].to_numpy()]


@dataclass
class Progress:
    """What ``OUT`` holds of a run: the finished units' rows, and how they were made.

    ``sessions`` lists each process that worked on the run (its wall-clock and CPU
    seconds up to its last finished unit, the units it finished, the code's commit);
    ``units`` each finished unit's own time (``None`` for a run from before resuming,
    which recorded its total only); ``fingerprints`` each data seed's
    :func:`data_fingerprint`, checked when a resumed run generates it again.
    """

    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    choices: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    units: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sessions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)
    complete: bool = False  # run.json says so and every planned unit is finished
    dropped: set[Unit] = dataclasses.field(default_factory=set)  # unfinished: run again

    @property
    def done(self) -> set[Unit]:
        return {(u["data_seed"], u["heldout"], u["seed"]) for u in self.units}

    @property
    def wall_s(self) -> float:
        return round(sum(float(s["wall_s"]) for s in self.sessions), 1)

    @property
    def cpu_s(self) -> float:
        return round(sum(float(s["cpu_s"]) for s in self.sessions), 1)


def recorded(name: str, cfg: Config, data: str | None, metadata: str | None) -> dict[str, Any]:
    """What a run is, as ``run.json`` records it: a resumed run must match it exactly."""
    return {
        "configuration": name,
        "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
        "data": data,
        "metadata": metadata,
    }


def _differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    for key, value in now.items():
        if key not in before and key == "metadata" and value is None:
            continue  # a run from before resuming did not record it (synthetic: None)
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out += [
                f"{key}.{k}: {old.get(k)!r} there, {v!r} now"
                for k, v in value.items()
                if old.get(k) != v
            ]
            out += [f"{key}.{k}: {old[k]!r} there, absent now" for k in old if k not in value]
        elif old != value:
            out.append(f"{key}: {old!r} there, {value!r} now")
    return out


def read_progress(out: Path, what: dict[str, Any] | None = None) -> Progress:
    """The run ``out`` holds, checked against this command's :func:`recorded` ``what``.

    Accepts the files of a run from before resuming (``run.json`` without ``units``:
    its finished units are those whose every row and choice are in the CSVs). The rows
    of an unfinished unit are dropped: it is run again.

    Raises:
        SystemExit: ``out`` holds another configuration's run, a ``run.json`` that
            cannot be read, or CSVs without ``run.json``; the message says the fix.
    """
    info_path = out / RESULTS[3]
    rows = _read_csv(out / RESULTS[0], COLUMNS)
    choices = _read_csv(out / RESULTS[2], CHOICES)
    restart = "choose another --out, or --restart to discard it and start again"
    if not info_path.is_file():
        if len(rows) or len(choices):
            raise SystemExit(
                f"error: {out} holds results without {info_path.name}, so their"
                f" configuration is unknown; {restart}"
            )
        return Progress()
    try:
        info = json.loads(info_path.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except ValueError as err:
        raise SystemExit(f"error: {info_path} cannot be read ({err}); {restart}") from None
    changed = _differences(info, what) if what is not None else []
    if changed:
        raise SystemExit(
            f"error: {info_path} records a run of another configuration ("
            + "; ".join(changed)
            + f"); a run never mixes configurations: {restart}"
        )
    in_csv = finished_units(rows, choices)
    lost = {tuple(int(u[k]) for k in RUN) for u in info.get("units", [])} - in_csv
    if lost:
        raise SystemExit(
            f"error: {info_path} lists the finished runs {sorted(lost)}, whose rows"
            f" are not all in {RESULTS[0]} and {RESULTS[2]}; {restart}"
        )
    progress = progress_of(info, in_csv)
    listed = progress.done
    row_keys, choice_keys = unit_keys(rows), unit_keys(choices)
    progress.rows = [
        {str(c): v for c, v in r.items()}
        for r, k in zip(rows.to_dict("records"), row_keys, strict=True)
        if k in listed
    ]
    progress.choices = [
        {str(c): v for c, v in r.items()}
        for r, k in zip(choices.to_dict("records"), choice_keys, strict=True)
        if k in listed
    ]
    progress.dropped = (set(row_keys) | set(choice_keys)) - listed
    return progress


def progress_of(info: dict[str, Any], finished: set[Unit] | None = None) -> Progress:
    """The sessions, finished units and fingerprints a ``run.json`` records (no rows).

    ``run.json`` lists its finished units; one written before resuming existed does not:
    its finished units are ``finished`` (those complete in the CSVs), made in one
    session whose total time it recorded.
    """
    if "units" in info:  # run.json is written last: it says which units are finished
        units, sessions = list(info["units"]), list(info["sessions"])
    else:  # a run from before resuming: one session, its total time only
        units = [
            {"data_seed": d, "heldout": h, "seed": s, "session": 0, "wall_s": None, "cpu_s": None}
            for d, h, s in sorted(finished or set())
        ]
        sessions = [
            {
                "started": None,
                "commit": None,
                "wall_s": info.get("wall_s", 0.0),
                "cpu_s": info.get("cpu_s", 0.0),
                "units": len(units),
                "cpus": info.get("cpus"),
                "load_average_at_end": info.get("load_average_at_end"),
            }
        ]
    progress = Progress(units=units, sessions=sessions)
    progress.fingerprints = dict(info.get("fingerprints", {}))
    progress.complete = bool(info.get("complete")) and progress.done >= set(planned_units_of(info))
    return progress


def run_info(
    what: dict[str, Any], progress: Progress, planned: list[Unit], complete: bool
) -> dict[str, Any]:
    """``run.json``: what the run is, its sessions (time summed) and its finished units."""
    last = progress.sessions[-1] if progress.sessions else {}
    return {
        **what,
        "complete": complete,  # False while runs remain (or when stopped)
        "units_planned": len(planned),
        "units_done": len(progress.done & set(planned)),
        "wall_s": progress.wall_s,  # summed over the sessions
        "cpu_s": progress.cpu_s,
        "cpus": last.get("cpus"),  # the last session's machine
        "load_average_at_end": last.get("load_average_at_end"),
        "sessions": progress.sessions,
        "units": progress.units,
        "fingerprints": progress.fingerprints,
    }


def planned_units_of(info: dict[str, Any]) -> list[Unit]:
    """:func:`planned_units` of a ``run.json``'s configuration."""
    names = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(**{k: v for k, v in info["config"].items() if k in names})
    return planned_units(cfg, real=info.get("data") is not None)


def data_fingerprint(data: Data) -> str:
    """A digest of a data set's metadata, pixel statistics and classes.

    A resumed run generates a data seed again: the digest must equal the one its
    finished units recorded (generation, conversion and statistics are deterministic
    for a seed), or the run would mix two data sets under one data seed.
    """
    digest = hashlib.sha256()
    for table in (data.metadata, data.stats):
        digest.update(table.to_csv(index=False).encode())
    digest.update(json.dumps([int(c) for c in data.classes]).encode())
    return digest.hexdigest()


def commit() -> str | None:
    """The benchmark's git commit (``+dirty`` with uncommitted changes), if in a checkout."""
    import subprocess

    here = str(Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def describe(progress: Progress, planned: list[Unit]) -> str:
    """One line: units done of planned, sessions, time, measured CPU per unit, remaining."""
    done = len(progress.done & set(planned))
    timed = [u["cpu_s"] for u in progress.units if u.get("cpu_s") is not None]
    legacy = [s for s in progress.sessions if s.get("started") is None and s["units"]]
    per_unit = (
        sum(timed) / len(timed)
        if timed
        else sum(s["cpu_s"] for s in legacy) / sum(s["units"] for s in legacy)
        if legacy
        else None
    )
    text = (
        f"{done} of {len(planned)} runs done, in {len(progress.sessions)} session(s):"
        f" {progress.wall_s:.0f} s wall-clock, {progress.cpu_s:.0f} s CPU"
    )
    if per_unit is not None:
        source = f"{len(timed)} run(s) timed" if timed else "the sessions' totals"
        remaining = (len(planned) - done) * per_unit / 3600
        text += f"; {per_unit:.0f} CPU s per run ({source}), about {remaining:.1f} CPU hours left"
    return text


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

    return predict(compiled(model), dataset(run, part, normalization, training=False))


_COMPILED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def compiled(model: Any) -> Any:
    """``model``'s inference call as one TensorFlow graph (traced once per model).

    The same batches give the same outputs (checked bit for bit on a trained model's
    val, held-in and held-out predictions), at about 3/4 of the CPU time of Keras' eager
    call per batch (1.72 / 1.76 against 2.30 / 2.41 CPU-s, alternated). A model's
    weights are read at each call, so the epochs' validation checkpoints see the
    current weights.
    """
    import tensorflow as tf

    if model not in _COMPILED:
        held = weakref.ref(model)  # the cache must not keep the model alive

        def call(x: Any, training: bool = False) -> Any:
            return held()(x, training=False)  # type: ignore[misc]

        _COMPILED[model] = tf.function(call, reduce_retracing=True)
    return _COMPILED[model]


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
    with one_blas_thread():
        return fit_head(x_train, y_train, classes, x_test, sd_floor, l2)


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Limit numpy's and scipy's BLAS to one thread in the block (if threadpoolctl is there).

    The head's L-BFGS fit makes thousands of small BLAS calls; OpenBLAS's threads spin
    and wait on them, more so on a busy machine: with one thread a fit took 4 to 5 times
    less CPU (0.6-0.8 s against 3.0-3.9 s, 2,048 x 1,108 embeddings, 128 classes,
    alternated) and gave the same probabilities to 1e-14. Only the head runs so: TVN's
    whitening is left as it was (its near-zero eigenvalues make it sensitive to the
    order of BLAS's sums, so a thread count would change its output).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # `make install` installs it (the `examples` extra)
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[Any] = threadpool_limits(limits=1, user_api="blas")
    return limits


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    classes: int,
    x_test: dict[str, np.ndarray],
    sd_floor: float,
    l2: float,
) -> dict[str, np.ndarray]:
    """:func:`softmax_head` on BLAS's threads as they are set (no limit of its own)."""
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
        parts[part] = predict(compiled(embed), ds)
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
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the run in --out and start again (default: continue it)",
    )
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

    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    what = recorded(name, cfg, absolute(args.data), absolute(args.metadata))
    planned = planned_units(cfg, real=args.data is not None)
    with claim(out):
        if args.restart:
            fresh_output(out)
            progress = Progress()
        else:
            progress = read_progress(out, what)  # refuses another configuration's run
            clear_data(out)
        if progress.complete:
            log(
                f"{out} holds a complete {name} run ({describe(progress, planned)}): nothing"
                " to do; --restart discards it and runs it again"
            )
            print_summary(pd.DataFrame(progress.rows, columns=list(COLUMNS)))
            return 0
        if progress.sessions:
            log(f"resuming the {name} run in {out}: {describe(progress, planned)}")
        if progress.dropped:
            log(f"unfinished runs {sorted(progress.dropped)}: their rows dropped, run again")
        log(f"configuration: {name} {cfg}")
        if importlib.util.find_spec("threadpoolctl") is None:
            log(
                "threadpoolctl is not installed: the embedding head's fits use BLAS's default"
                " threads, several times the CPU on a busy machine (`make install` has it)"
            )
        session: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": commit(),
            "units": 0,
        }
        sessions = progress.sessions

        def save(complete: bool) -> None:
            session.update(
                wall_s=round(time.perf_counter() - start, 1),
                cpu_s=round(cpu_seconds() - cpu0, 1),
                cpus=os.cpu_count(),
                load_average_at_end=list(os.getloadavg()),
            )
            progress.sessions = [*sessions, session]
            for frame, columns, path in (
                (progress.rows, COLUMNS, RESULTS[0]),
                (progress.choices, CHOICES, RESULTS[2]),
            ):
                text = pd.DataFrame(frame, columns=list(columns)).to_csv(
                    index=False, float_format="%.4f"
                )
                write_atomic(out / path, text)
            info = run_info(what, progress, planned, complete)
            write_atomic(out / RESULTS[3], json.dumps(info, indent=2) + "\n")  # last

        todo = [u for u in planned if u not in progress.done]
        if args.data is not None:
            runs = plan.runs(out, todo, progress.fingerprints)
        else:
            runs = synthetic_runs(cfg, out, todo, progress.fingerprints)
        for run in runs:
            for seed in range(cfg.model_seeds):  # every run is reported: none is selected
                unit = (run.data.seed, run.heldout, seed)
                if unit not in todo:
                    continue
                wall1, cpu1 = time.perf_counter(), cpu_seconds()
                r, c = run_seed(run, seed)
                progress.rows += r
                progress.choices += c
                progress.units.append(
                    {
                        **dict(zip(RUN, unit, strict=True)),
                        "session": len(sessions),
                        "wall_s": round(time.perf_counter() - wall1, 1),
                        "cpu_s": round(cpu_seconds() - cpu1, 1),
                    }
                )
                session["units"] += 1
                save(complete=False)  # finished units survive a stop
        frame = pd.DataFrame(progress.rows, columns=list(COLUMNS))
        chart(frame, out / RESULTS[1], f"Held-out site accuracy by method ({name} run)")
        save(complete=True)
        print_summary(frame)
        log(f"wrote {out / RESULTS[0]}; {describe(progress, planned)}")
    return 0


def check_fingerprint(data: Data, fingerprints: dict[str, str]) -> None:
    """Record ``data``'s :func:`data_fingerprint`, or check it against the recorded one.

    Raises:
        SystemExit: the data seed's data differ from those its finished runs used.
    """
    key, digest = str(data.seed), data_fingerprint(data)
    if fingerprints.setdefault(key, digest) != digest:
        raise SystemExit(
            f"error: data seed {data.seed} made again differs from the data its finished"
            f" runs used (fingerprint {digest[:12]}, recorded {fingerprints[key][:12]}):"
            " the generator, conversion or statistics changed since; finish the run with"
            " the code that began it (run.json's sessions name its commit), or --restart"
        )
    log(f"data seed {data.seed}: fingerprint {digest[:12]}")


def synthetic_runs(
    cfg: Config, out: Path, todo: list[Unit], fingerprints: dict[str, str]
) -> Iterator[Run]:
    """The runs with units in ``todo``: each data seed generated once, when needed."""
    for data_seed in sorted({d for d, _, _ in todo}):
        data = synthetic_data(cfg, out, data_seed)
        check_fingerprint(data, fingerprints)
        for heldout in sorted({h for d, h, _ in todo if d == data_seed}):
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

    def runs(
        self, out: Path, todo: list[Unit] | None = None, fingerprints: dict[str, str] | None = None
    ) -> Iterator[Run]:
        """Convert the planned sites, measure their pixel statistics, yield the runs.

        A conversion given as ``--data`` is read where it is: its statistics were
        measured when it was planned, and the splits name the planned sites. Only the
        held-out choices with units in ``todo`` (default: all) are yielded; the data's
        fingerprint is checked against ``fingerprints`` (:func:`check_fingerprint`).
        """
        todo = planned_units(self.cfg, real=True) if todo is None else todo
        if not todo:
            return
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
        check_fingerprint(data, {} if fingerprints is None else fingerprints)
        for heldout, split in self.splits[: self.cfg.heldouts]:
            if any(h == heldout for _, h, _ in todo):
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

#!/usr/bin/env python
"""Predict the test records with a trained checkpoint and write ``submission.csv``.

Usage::

    python examples/predict.py --model run --data 'records/random-42/test/*.tfrecord' \
        --out submission.csv
    python examples/predict.py --model runs/seed-cnn/best.keras \
        --data 'records/by_experiment-42/test/*.tfrecord' --metadata rxrx1/ \
        --out submission.csv --plate-assignment

``--model`` is a checkpoint or the run folder of ``train.py`` (its ``best.keras``).

One deterministic pass over the records (``rxdata.make_dataset(..., training=False)``):
each batch's probabilities are stored next to the ``id_code`` values *of that same batch*,
so the order in which shards or records arrive cannot misalign predictions and wells
(the seed project's misaligned submission came from predicting in one pass and reading
the ids in another). Sites are then averaged per well by ``id_code``
(``rxdata.average_sites``); with ``--plate-assignment`` each plate's wells are labelled
with the siRNAs of its plate group, each at most once (``rxdata.plates.assign_plates``);
``rxdata.write_submission`` checks that every test well gets exactly one treatment label.

The normalization is the one the model was trained with: ``normalizer.json`` next to the
checkpoint (written by ``train.py``), or ``--normalizer``.

Control wells (whose labels are public) are left out of the submission, and the script
says how many. With ``--metadata`` the submission must cover every test well of the
metadata; without it, it covers the treatment wells found in the test records.
"""

from __future__ import annotations

import os

# Quiet TensorFlow's C++ start-up lines unless the user chose a level; this must run
# before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import posixpath
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from rxdata.errors import OptionsError, RxDataError, SubmissionError

NUM_TREATMENTS = 1108
CHECKPOINTS = ("best.keras", "final.keras")  # looked for, in order, in a run folder


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
        prog="predict.py",
        description="Predict test records with a trained model and write submission.csv.",
        formatter_class=HelpFormatter,
    )
    add = p.add_argument
    add("--model", required=True,
        help="a .keras checkpoint, or the run folder of train.py (its best.keras)")  # fmt: skip
    add("--data", required=True, help="TFRecord glob of the test shards")
    add("--out", default="submission.csv", help="submission CSV (local or gs://)")
    add("--metadata", default=None,
        help="data root or metadata CSV: the test wells to cover and, for "
        "--plate-assignment, the labelled training plates (default: the treatment wells "
        "of the test records)")  # fmt: skip
    add("--normalizer", default=None,
        help="default: normalizer.json beside the checkpoint")  # fmt: skip
    add("--plate-assignment", action="store_true",
        help="label each plate's wells with the siRNAs of its plate group, each once "
        "(needs --metadata)")  # fmt: skip
    add("--batch-size", type=int, default=64, help="sites per prediction batch")
    add("--labels", choices=("auto", "int", "sirna_N"), default="auto",
        help="label style: auto follows the metadata (sirna_N for the re-release), "
        "int: 513")  # fmt: skip
    return p


def resolve_model_path(model: str) -> str:
    """The checkpoint behind ``--model``: the file itself, or a run folder's best model.

    Raises:
        OptionsError: nothing at ``model``, or a folder without a checkpoint.
    """
    import tensorflow as tf

    if tf.io.gfile.isdir(model):
        for name in CHECKPOINTS:
            path = posixpath.join(model, name)
            if tf.io.gfile.exists(path):
                return path
        raise OptionsError(
            f"--model {model} is a folder without {' or '.join(CHECKPOINTS)}: give the run "
            "folder of a finished train.py run, or a .keras checkpoint"
        )
    if not tf.io.gfile.exists(model):
        raise OptionsError(
            f"--model {model}: no such model: give a .keras checkpoint or the --out folder "
            "of train.py"
        )
    return model


def model_input_spec(model: Any) -> tuple[int, str]:
    """The image size a model takes and where it normalizes (``cpu`` or ``accelerator``)."""
    inputs = model.inputs if isinstance(model.inputs, list) else [model.inputs]
    names = {t.name.split(":")[0] for t in inputs}
    image = next((t for t in inputs if t.name.split(":")[0] == "image"), inputs[0])
    mode = "accelerator" if {"mean", "std"} <= names else "cpu"
    return int(image.shape[1]), mode


def predict_sites(
    model: Any, files: Sequence[str], *, normalizer: Any, batch_size: int = 64
) -> tuple[np.ndarray, pd.DataFrame]:
    """Class probabilities per site and the ``id_code``/``site`` of each row.

    One pass (``rxdata.pipeline.predict``): each batch's ids come with its images.
    """
    from rxdata.pipeline import PipelineOptions, make_dataset
    from rxdata.pipeline import predict as predict_batches
    from rxdata.reader import read_tfrecord

    image_size, normalize_on = model_input_spec(model)
    first = next(iter(read_tfrecord(files[0], decode=False)), None)
    stored = int(first["height"]) if first is not None else image_size
    options = PipelineOptions(
        normalize_on=normalize_on,  # type: ignore[arg-type]
        resize_to=None if stored == image_size else image_size,
    )
    ds = make_dataset(
        list(files),
        batch_size=batch_size,
        training=False,
        options=options,
        normalizer=normalizer,
        label=None,
    )
    ids, probs = predict_batches(model, ds)
    if len(ids) == 0:
        raise OptionsError(f"no records in {len(files)} file(s): {list(files)[:3]}")
    return np.asarray(probs, dtype=np.float64), ids


def test_wells_of(
    wells: pd.DataFrame, metadata: pd.DataFrame | None, *, log: Callable[[str], Any] = print
) -> tuple[pd.Index, pd.DataFrame]:
    """The wells the submission covers, and the table ``write_submission`` checks them by.

    With ``metadata``: its test treatment wells, each of which must have a prediction.
    Without: the treatment wells among the predicted ones (controls sit at fixed positions
    on every plate). Control wells are left out either way, and the log says how many.

    Raises:
        SubmissionError: a test well without a prediction, or a predicted well that is
            neither a test well nor a control of ``metadata``.
    """
    from rxdata.naming import NEGATIVE_CONTROL_WELL, POSITIVE_CONTROL_WELLS, parse_id_code
    from rxdata.submission import read_test_wells

    if metadata is None:
        control_positions = {NEGATIVE_CONTROL_WELL, *POSITIVE_CONTROL_WELLS}
        is_control = np.array([parse_id_code(w).well in control_positions for w in wells.index])
        test_wells = pd.Index(wells.index[~is_control], name="id_code")
        controls = int(is_control.sum())
        table = pd.DataFrame({"id_code": test_wells})
        log(
            f"no --metadata: the submission covers the {len(test_wells)} treatment wells of "
            "the test records (give --metadata to check that it covers every test well)"
        )
    else:
        test_wells = read_test_wells(metadata)
        missing = test_wells.difference(wells.index)
        if len(missing):
            raise SubmissionError(
                f"{len(missing)} test well(s) have no predicted site, e.g. {missing[0]}: are "
                "all test shards in --data?"
            )
        test_sites = metadata[metadata["dataset"] == "test"]
        known_controls = set(test_sites.loc[test_sites["well_type"] != "treatment", "id_code"])
        extra = wells.index.difference(test_wells)
        unknown = [w for w in extra if w not in known_controls]
        if unknown:
            raise SubmissionError(
                f"{len(unknown)} predicted well(s) are not test wells of the metadata, e.g. "
                f"{unknown[0]}: give --data the test shards of the data set in --metadata"
            )
        controls, table = len(extra), metadata
    if controls:
        log(f"left out {controls} control well(s): their labels are public, not predicted")
    return test_wells, table


def wells_to_labels(
    wells: pd.DataFrame,
    metadata: pd.DataFrame | None,
    *,
    plate_assignment: bool,
    log: Callable[[str], Any] = print,
) -> tuple[pd.Series | pd.DataFrame, pd.DataFrame]:
    """Treatment labels for the test treatment wells, and the table they are checked by.

    Control wells (whose labels are public) are left out (:func:`test_wells_of`);
    predictions are restricted to the 1108 treatment classes: the best one per well, or
    with ``plate_assignment`` the plate-constrained assignment (each siRNA of the plate's
    group at most once; needs ``metadata`` for the plate groups).
    """
    test_wells, table = test_wells_of(wells, metadata, log=log)
    treatments: pd.DataFrame = wells.loc[test_wells].iloc[:, :NUM_TREATMENTS]
    if not plate_assignment:
        return treatments, table
    if metadata is None:
        raise OptionsError(
            "--plate-assignment needs --metadata: the plate groups are learned from the "
            "labelled training plates"
        )
    from rxdata.plates import assign_plates, plate_groups

    groups = plate_groups(metadata[metadata["dataset"] == "train"])
    labels: pd.Series = assign_plates(treatments, groups)
    return labels, table


def predict(
    model_path: str,
    data: str,
    out: str,
    *,
    metadata: pd.DataFrame | str | None = None,
    normalizer_path: str | None = None,
    plate_assignment: bool = False,
    batch_size: int = 64,
    label_style: Literal["auto", "int", "sirna_N"] = "auto",
    log: Callable[[str], Any] = print,
) -> pd.DataFrame:
    """Predict ``data`` with ``model_path`` (a checkpoint or a run folder) and write the
    submission CSV ``out``."""
    import keras
    import tensorflow as tf

    from rxdata.metadata import read_metadata
    from rxdata.normalization import Normalizer
    from rxdata.submission import average_sites, write_submission

    model_path = resolve_model_path(model_path)
    files = sorted(tf.io.gfile.glob(data))
    if not files:
        raise OptionsError(f"no TFRecord files match {data!r}")
    if normalizer_path is None:
        normalizer_path = posixpath.join(posixpath.dirname(model_path), "normalizer.json")
    if not tf.io.gfile.exists(normalizer_path):
        raise OptionsError(
            f"{normalizer_path} not found: pass --normalizer with the normalization the model "
            "was trained with"
        )
    normalizer = Normalizer.load(normalizer_path)
    if metadata is None or isinstance(metadata, pd.DataFrame):
        table = metadata
    else:
        table = read_metadata(metadata)
    model = keras.models.load_model(model_path)
    log(f"predicting {len(files)} shard(s) with {model_path} ({normalizer.mode} normalization)")
    probs, ids = predict_sites(model, files, normalizer=normalizer, batch_size=batch_size)
    wells = average_sites(probs, id_codes=ids["id_code"])
    log(f"{len(probs)} sites -> {len(wells)} wells")
    labels, checked_by = wells_to_labels(wells, table, plate_assignment=plate_assignment, log=log)
    written = write_submission(out, labels, checked_by, labels=label_style)
    log(f"wrote {out}: {len(written)} wells")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        predict(
            args.model,
            args.data,
            args.out,
            metadata=args.metadata,
            normalizer_path=args.normalizer,
            plate_assignment=args.plate_assignment,
            batch_size=args.batch_size,
            label_style=args.labels,
        )
    except RxDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

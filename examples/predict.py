#!/usr/bin/env python
"""Predict the test records with a trained checkpoint and write ``submission.csv``.

Usage::

    python examples/predict.py --model runs/seed-cnn/best.keras \
        --data 'records/by_experiment-42/test/*.tfrecord' --metadata rxrx1/ \
        --out submission.csv --plate-assignment

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
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from rxdata import _io
from rxdata.errors import OptionsError, RxDataError, SubmissionError

NUM_TREATMENTS = 1108


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
    from rxdata.tfrecord import read_tfrecord

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


def wells_to_labels(
    wells: pd.DataFrame, metadata: pd.DataFrame, *, plate_assignment: bool
) -> pd.Series | pd.DataFrame:
    """Treatment labels for the test treatment wells of ``metadata``.

    Control wells (whose labels are public) are left out; predictions are restricted to
    the 1108 treatment classes: the best one per well, or with ``plate_assignment`` the
    plate-constrained assignment (each siRNA of the plate's group at most once).
    """
    from rxdata.submission import read_test_wells

    test_wells = read_test_wells(metadata)
    missing = test_wells.difference(wells.index)
    if len(missing):
        raise SubmissionError(
            f"{len(missing)} test well(s) have no predicted site, e.g. {missing[0]}: are all "
            "test shards in --data?"
        )
    treatments: pd.DataFrame = wells.loc[test_wells].iloc[:, :NUM_TREATMENTS]
    if not plate_assignment:
        return treatments
    from rxdata.plates import assign_plates, plate_groups

    groups = plate_groups(metadata[metadata["dataset"] == "train"])
    labels: pd.Series = assign_plates(treatments, groups)
    return labels


def predict(
    model_path: str,
    data: str,
    out: str,
    *,
    metadata: pd.DataFrame | str,
    normalizer_path: str | None = None,
    plate_assignment: bool = False,
    batch_size: int = 64,
    label_style: Literal["auto", "int", "sirna_N"] = "auto",
    log: Any = print,
) -> pd.DataFrame:
    """Predict ``data`` with ``model_path`` and write the submission CSV ``out``."""
    import keras

    from rxdata.metadata import read_metadata
    from rxdata.normalization import Normalizer
    from rxdata.submission import average_sites, write_submission

    files = sorted(_io.glob(data))
    if not files:
        raise OptionsError(f"no TFRecord files match {data!r}")
    if normalizer_path is None:
        normalizer_path = _io.join(os.path.dirname(model_path) or ".", "normalizer.json")
    if not _io.exists(normalizer_path):
        raise OptionsError(
            f"{normalizer_path} not found: pass --normalizer with the normalization the model "
            "was trained with"
        )
    normalizer = Normalizer.load(normalizer_path)
    table = metadata if isinstance(metadata, pd.DataFrame) else read_metadata(metadata)
    model = keras.models.load_model(model_path)
    log(f"predicting {len(files)} shard(s) with {model_path} ({normalizer.mode} normalization)")
    probs, ids = predict_sites(model, files, normalizer=normalizer, batch_size=batch_size)
    wells = average_sites(probs, id_codes=ids["id_code"])
    log(f"{len(probs)} sites -> {len(wells)} wells")
    labels = wells_to_labels(wells, table, plate_assignment=plate_assignment)
    written = write_submission(out, labels, table, labels=label_style)
    log(f"wrote {out}: {len(written)} wells")
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint written by train.py (.keras)")
    p.add_argument("--data", required=True, help="TFRecord glob of the test shards")
    p.add_argument("--out", default="submission.csv", help="submission CSV (local or gs://)")
    p.add_argument(
        "--metadata",
        required=True,
        help="data root or metadata CSV (what rxdata.read_metadata reads): the test wells to "
        "cover and, for --plate-assignment, the labelled training plates",
    )
    p.add_argument("--normalizer", default=None, help="default: normalizer.json beside --model")
    p.add_argument("--plate-assignment", action="store_true", help="use the plate design")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--labels",
        choices=("auto", "int", "sirna_N"),
        default="auto",
        help="label style: auto follows the metadata (sirna_N for the re-release), int: 513",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())

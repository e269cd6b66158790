#!/usr/bin/env python
"""The batch-effect demo behind ``make demo``: why per-plate control normalization matters.

On a small synthetic RxRx1 (64 px, 8 siRNAs per plate group, 12 training experiments with
the generator's calibrated batch effects: per-experiment and per-plate intensity effects
that control statistics undo, plus a nonlinear response, vignetting, plate-position,
density, focus and batch-dependent biology that they do not; docs/batch-effects.md) it
runs the whole job a user would, on a 2-core CPU in a few minutes:

1. generate the data set (``rxdata.synthetic.generate``);
2. convert it to TFRecords with ``rxdata convert``, as a user types it;
3. compute pixel statistics and two normalizers: ``global`` (one set of statistics for
   everything) and ``controls`` (per plate, from its negative-control wells);
4. train the seed CNN twice with ``examples/train.py``, once per normalizer, holding out
   one whole experiment per cell type;
5. evaluate both final models on the held-out experiments (per site and per well, sites
   averaged by ``id_code``) and print a comparison table;
6. predict the unlabelled test experiments with the corrected model and write
   ``submission.csv`` (plate-constrained assignment), plus a picture of a site.

Held-out accuracy stays well below 1 even with the correction, as on the real data. The
demo exits with status 1 if the correction does not win by ``--min-margin``, so a
regression in any part of the chain (generator, conversion, normalization, pipeline)
shows up as a failed ``make demo``. Nothing here is specific to the small size: the same
scripts take full-size data unchanged (see docs/training.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_EXPERIMENTS = (("HEPG2", 3, 1), ("HUVEC", 3, 1), ("RPE", 3, 0), ("U2OS", 3, 0))
# One held-out experiment per cell type (the rest train): 8 train, 4 held out.
HELD_OUT = ("HEPG2-01", "HUVEC-02", "RPE-03", "U2OS-01")


class _Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", flush=True)


def _rxdata_script() -> str:
    """The ``rxdata`` console script of this environment."""
    beside = Path(sys.executable).with_name("rxdata")
    found = str(beside) if beside.exists() else shutil.which("rxdata")
    if not found:
        raise SystemExit("rxdata is not installed: run `pip install -e .` (or `make install`)")
    return found


def evaluate(
    model_path: str,
    files: Sequence[str],
    experiments: Sequence[str],
    normalizer: Any,
    metadata: Any,
) -> tuple[float, float, int, int]:
    """Site and well accuracy of a saved model on the treatment wells of ``experiments``.

    Labels are looked up by ``id_code`` in the metadata, never by position.
    """
    import keras

    from rxdata.pipeline import PipelineOptions, make_dataset, predict
    from rxdata.submission import average_sites

    model = keras.models.load_model(model_path)
    ds = make_dataset(
        list(files),
        batch_size=64,
        training=False,
        options=PipelineOptions(),
        normalizer=normalizer,
        label=None,
        well_types=["treatment"],
        experiments=list(experiments),
    )
    ids, probs = predict(model, ds)
    labelled = metadata[metadata["sirna_id"].notna()]
    truth = labelled.drop_duplicates("id_code").set_index("id_code")["sirna_id"].astype(int)
    site_acc = float((probs.argmax(axis=1) == truth.loc[ids["id_code"]].to_numpy()).mean())
    wells = average_sites(probs, id_codes=ids["id_code"])
    well_acc = float((wells.to_numpy().argmax(axis=1) == truth.loc[wells.index].to_numpy()).mean())
    return site_acc, well_acc, len(ids), len(wells)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")
    p = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="demo-output", help="output folder (recreated)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--sirnas-per-plate", type=int, default=8)
    p.add_argument("--batch-effect", type=float, default=1.0)
    p.add_argument("--signal", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--min-margin",
        type=float,
        default=0.1,  # the benchmark's margin is ~0.3 (docs/batch-effects.md); room for noise
        help="fail unless the correction wins by this much held-out site accuracy",
    )
    args = p.parse_args(argv)

    clock = _Clock()
    out = Path(args.out)
    marker = out / ".rxdata-demo"
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            print(f"error: {out} exists and is not a demo output; choose another --out",
                  file=sys.stderr)  # fmt: skip
            return 2
        shutil.rmtree(out)  # a previous demo run: start afresh
    out.mkdir(parents=True, exist_ok=True)
    marker.touch()
    data, records_dir = out / "data", out / "records"

    # 1. data ---------------------------------------------------------------------------
    from rxdata.metadata import read_metadata
    from rxdata.synthetic import SyntheticOptions, generate

    options = SyntheticOptions(
        experiments=DEMO_EXPERIMENTS,
        sirnas_per_plate=args.sirnas_per_plate,
        positive_controls=4,
        image_size=args.image_size,
        batch_effect=args.batch_effect,
        signal=args.signal,
        seed=args.seed,
        workers=args.workers,
        progress=False,
    )
    clock.log(
        f"1/6 generating synthetic RxRx1: {len(options.experiment_names)} experiments, "
        f"{args.image_size} px, batch_effect={args.batch_effect}, signal={args.signal}"
    )
    generate(data, options)
    metadata = read_metadata(data)
    clock.log(f"    {len(metadata)} sites written to {data}")

    # 2. conversion, as a user runs it -----------------------------------------------------
    command = [
        _rxdata_script(),
        "convert",
        str(data),
        str(records_dir),
        "--strategy",
        "by_experiment",
        "--workers",
        str(args.workers),
    ]
    clock.log("2/6 rxdata " + " ".join(command[1:]))
    subprocess.run(command, check=True)
    train_glob = str(records_dir / "by_experiment-42" / "train" / "*.tfrecord")
    test_glob = str(records_dir / "by_experiment-42" / "test" / "*.tfrecord")

    # 3. statistics and normalizers ------------------------------------------------------
    from rxdata.normalization import Normalizer
    from rxdata.stats import compute_pixel_stats

    clock.log("3/6 pixel statistics and normalizers (global vs per-plate negative controls)")
    pixel_stats = compute_pixel_stats(data, metadata, workers=args.workers, progress=False)
    normalizers = {}
    for mode in ("global", "controls"):
        normalizer = Normalizer.from_pixel_stats(pixel_stats, metadata, mode=mode)
        path = out / f"normalizer-{mode}.json"
        normalizer.save(path)
        normalizers[mode] = (normalizer, str(path))

    # 4. train twice ---------------------------------------------------------------------
    import keras
    import train as train_script

    results = {}
    for step, mode in enumerate(("global", "controls")):
        clock.log(f"4/6 training the seed CNN with {mode} normalization ({step + 1}/2)")
        keras.utils.set_random_seed(args.seed)
        config = train_script.TrainConfig(
            data=train_glob,
            out=str(out / f"run-{mode}"),
            target="cpu",
            labels="treatments",
            batch_size=args.batch_size,
            epochs=args.epochs,
            normalizer=normalizers[mode][1],
            val_experiments=HELD_OUT,
            seed=args.seed,
            verbose=0,
        )
        results[mode] = train_script.train(config, log=lambda m: clock.log("    " + m))

    # 5. evaluate on held-out experiments ------------------------------------------------
    clock.log("5/6 evaluating the final models on the held-out experiments")
    from records import load_records

    held_files = load_records(train_glob).files_of(HELD_OUT)
    rows = []
    for mode, label in (("global", "global statistics"), ("controls", "per-plate controls")):
        site_acc, well_acc, n_sites, n_wells = evaluate(
            results[mode].final_model, held_files, HELD_OUT, normalizers[mode][0], metadata
        )
        train_acc = results[mode].history["accuracy"][-1]
        rows.append((label, train_acc, site_acc, well_acc, n_sites, n_wells))
    print()
    print(f"Held-out experiments: {', '.join(HELD_OUT)} (never seen in training)")
    print(f"{'normalization':<22}{'train acc':>11}{'held-out site acc':>19}{'well acc':>10}")
    for label, train_acc, site_acc, well_acc, _, _ in rows:
        print(f"{label:<22}{train_acc:>11.3f}{site_acc:>19.3f}{well_acc:>10.3f}")
    n_sites, n_wells = rows[0][4], rows[0][5]
    chance = 1 / (4 * args.sirnas_per_plate)
    print(f"({n_sites} sites, {n_wells} wells; chance {chance:.3f})")
    margin = rows[1][2] - rows[0][2]
    print(f"per-plate control normalization wins by {margin:+.3f} held-out site accuracy")
    print()

    # 6. submission and picture ----------------------------------------------------------
    clock.log("6/6 submission for the test experiments and a picture of a site")
    import predict as predict_script

    submission = predict_script.predict(
        results["controls"].best_model,
        test_glob,
        str(out / "submission.csv"),
        metadata=metadata,
        plate_assignment=True,
        log=lambda m: clock.log("    " + m),
    )
    truth = _synthetic_truth(options, submission["id_code"])
    correct = (submission["sirna"].astype(int).to_numpy() == truth).mean()
    clock.log(f"    submission accuracy against the generator's hidden labels: {correct:.3f}")
    clock.log(
        f"    (the plate-group assignment's figure: a plate here holds {args.sirnas_per_plate} "
        "siRNAs, a real one 277; the model's own accuracy is the held-out table above)"
    )
    picture = out / "site.png"
    _render_site(data, metadata, picture)
    clock.log(f"done: outputs in {out}/ (submission.csv, site.png, run-*/training_curves.png)")
    if margin < args.min_margin:
        print(
            f"FAILED: the correction won by {margin:.3f}, less than --min-margin {args.min_margin}",
            file=sys.stderr,
        )
        return 1
    return 0


def _synthetic_truth(options: Any, id_codes: Any) -> Any:
    """The labels the generator drew for test wells (unknown to every step above)."""
    import numpy as np

    from rxdata.naming import parse_id_code
    from rxdata.synthetic import plate_layout

    layouts: dict[tuple[str, int], dict[str, int]] = {}
    labels = []
    for code in id_codes:
        key = parse_id_code(code)
        plate = (key.experiment, key.plate)
        if plate not in layouts:
            table = plate_layout(options, *plate)
            layouts[plate] = dict(zip(table["well"], table["sirna_id"].astype(int), strict=True))
        labels.append(layouts[plate][key.well])
    return np.array(labels)


def _render_site(data: Path, metadata: Any, picture: Path) -> None:
    """The first treatment site as an RGB composite plus its six channels."""
    from rxdata.figures import render_site

    row = metadata[metadata["well_type"] == "treatment"].iloc[0]
    render_site(
        row["dataset"],
        row["experiment"],
        int(row["plate"]),
        row["well"],
        int(row["site"]),
        base_path=str(data),
        out=str(picture),
    )


if __name__ == "__main__":
    sys.exit(main())

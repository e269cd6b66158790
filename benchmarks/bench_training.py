"""Training throughput of the seed CNN fed by rxdata, against in-memory data, in one process.

Does the input pipeline keep the model busy? Each case trains ``examples/models.py``'s seed
CNN (Keras 3, the strategy ``examples/train.py`` picks for ``--target``) for a warm-up
epoch and a timed epoch, and prints sites/s:

* ``in-memory (baseline)``: one batch held in memory, repeated: no input cost at all, the
  model's own speed on this machine. The ratios below are against it (1.0 = the input
  pipeline costs nothing).
* ``rxdata png, normalize on cpu``: ``make_dataset`` over PNG-encoded shards (the default
  conversion), normalization in tf.data.
* ``rxdata raw, normalize on cpu``: raw (decoded) shards.
* ``rxdata png, normalize on accelerator``: uint8 batches plus per-site mean/std,
  standardized in the model by ``rxdata.layers.Standardize``.

Data: synthetic 6-channel sites (``rxdata.synthetic``) converted with ``rxdata.convert``.
Writes ``bench-output/training.json`` (for ``tools/gen_figures.py``).

Run: ``.venv/bin/python benchmarks/bench_training.py [--target gpu] [--image-size 512]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


def _timed_fit(model, dataset, steps: int, batch: int) -> float:  # type: ignore[no-untyped-def]
    """Sites/s of the best of two timed epochs, after one warm-up epoch (tracing, buffers);
    the best of two damps the noise of a shared machine."""
    import keras

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            if epoch > 0:
                self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    timer.seconds = []
    model.fit(dataset, epochs=3, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
    return steps * batch / min(timer.seconds)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="cpu", choices=("cpu", "gpu", "multi-gpu"))
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32, help="per replica")
    p.add_argument("--steps", type=int, default=10, help="steps per timed epoch")
    p.add_argument("--out", type=Path, default=ROOT / "bench-output")
    args = p.parse_args()

    import numpy as np
    import tensorflow as tf
    from models import build_model
    from strategy import make_strategy, plan_strategy

    from rxdata.conversion import convert
    from rxdata.metadata import read_metadata
    from rxdata.normalization import Normalizer
    from rxdata.pipeline import PipelineOptions, make_dataset
    from rxdata.stats import compute_pixel_stats
    from rxdata.synthetic import SyntheticOptions, generate

    plan = plan_strategy(args.target)
    strategy = make_strategy(plan)
    batch = args.batch_size * strategy.num_replicas_in_sync
    print(
        f"target {args.target}: {strategy.num_replicas_in_sync} replica(s), {plan.precision}, "
        f"global batch {batch}, {args.image_size} px, {os.cpu_count()} CPUs"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    data = generate(
        work / "data",
        SyntheticOptions(
            experiments=(("HEPG2", 2, 0),),
            sirnas_per_plate=20,
            positive_controls=4,
            image_size=args.image_size,
            progress=False,
        ),
    )
    metadata = read_metadata(data)
    stats = compute_pixel_stats(data, metadata, progress=False)
    normalizer = Normalizer.from_pixel_stats(stats, metadata, mode="controls")
    globs = {}
    for encoding in ("png", "raw"):
        convert(data, work / encoding, encoding=encoding, progress=False)
        globs[encoding] = str(work / encoding / "random-42" / "train" / "*.tfrecord")
    print(f"{len(metadata)} synthetic sites converted in {work}")

    def dataset(encoding: str, normalize_on: str):  # type: ignore[no-untyped-def]
        options = PipelineOptions(normalize_on=normalize_on, repeat=True, seed=0)  # type: ignore[arg-type]

        def fn(context):  # type: ignore[no-untyped-def]
            return make_dataset(
                globs[encoding],
                batch_size=batch,
                options=options,
                normalizer=normalizer,
                input_context=context,
            )

        return strategy.distribute_datasets_from_function(fn)

    def model(normalize_on: str = "cpu"):  # type: ignore[no-untyped-def]
        with strategy.scope():
            return build_model(
                "seed-cnn", 1139, image_size=args.image_size, normalize_on=normalize_on
            )

    images = tf.random.normal((batch, args.image_size, args.image_size, 6))
    labels = tf.constant(np.arange(batch) % 1108)
    in_memory = tf.data.Dataset.from_tensors((images, labels)).repeat()
    results = [
        ("in-memory (baseline)", _timed_fit(model(), in_memory, args.steps, batch), True),
        (
            "rxdata png, normalize on cpu",
            _timed_fit(model(), dataset("png", "cpu"), args.steps, batch),
            False,
        ),
        (
            "rxdata raw, normalize on cpu",
            _timed_fit(model(), dataset("raw", "cpu"), args.steps, batch),
            False,
        ),
        (
            "rxdata png, normalize on accelerator",
            _timed_fit(model("accelerator"), dataset("png", "accelerator"), args.steps, batch),
            False,
        ),
    ]
    base = results[0][1]
    print(f"\n{'case':<40}{'sites/s':>10}{'vs in-memory':>14}")
    for name, value, _ in results:
        print(f"{name:<40}{value:>10.1f}{value / base:>13.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "title": f"Seed CNN training, {args.target}, {args.image_size} px, batch {batch}",
        "unit": "sites/s",
        "results": [{"name": n, "value": v, "baseline": b} for n, v, b in results],
    }
    (args.out / "training.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {args.out / 'training.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

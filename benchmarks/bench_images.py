"""PNG decoding and 6-channel to RGB: rxdata against baselines run in the same process.

Measures, on the real RxRx1 PNGs when available (else on synthetic 512x512 sites):

* decoders: Pillow (the baseline, a hard dependency), imageio, OpenCV, pyspng and
  ``tf.io.decode_png`` on the same bytes, plus ``rxdata.images.read_png`` (header check + the
  fastest installed decoder) and ``rxdata.images.inspect_png`` (full CRC validation, no decode);
* RGB: the rxrx1-utils ``convert_tensor_to_rgb`` formula written plainly (the baseline:
  ``np.outer`` per channel, truncation, sum) against ``rxdata.convert_tensor_to_rgb``
  (per-channel lookup tables) and the TensorFlow twin ``rxdata.layers.rgb`` eagerly and
  under XLA, on a batch of sites; every output is checked equal to the baseline first.

Every figure is the best CPU time over interleaved rounds (robust on a shared machine)
and is printed with its ratio against the baseline. Prints Markdown tables and writes
``bench-output/images.json``.

Usage:
    python benchmarks/bench_images.py [--real ../shared/rxrx1-real] [--repeats 5]
        [--batch 8] [--out bench-output]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

import rxdata
from rxdata import images

ROOT = Path(__file__).resolve().parents[1]

REFERENCE_MAP = {
    1: ((19, 0, 249), (0, 51)),
    2: ((42, 255, 31), (0, 107)),
    3: ((255, 0, 25), (0, 64)),
    4: ((45, 255, 252), (0, 191)),
    5: ((250, 0, 253), (0, 89)),
    6: ((254, 255, 40), (0, 191)),
}


def reference_rgb(t: np.ndarray, channels=(1, 2, 3, 4, 5, 6), vmax=255) -> np.ndarray:
    """The rxrx1-utils formula as documented: the baseline of the RGB figures."""
    h, w = t.shape[:2]
    coloured = []
    for i, c in enumerate(channels):
        rgb, (lo, hi) = REFERENCE_MAP[c]
        x = (t[:, :, i] / vmax) / ((hi - lo) / 255) + lo / 255
        x = np.where(x > 1.0, 1.0, x)
        coloured.append(np.array(np.outer(x, np.array(rgb)).reshape(h, w, 3), dtype=int))
    im = np.array(np.array(coloured).sum(axis=0), dtype=int)
    return np.where(im > 255, 255, im)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best CPU time of each ``fn()`` in seconds, over ``repeats`` interleaved rounds.

    Rounds interleave the candidates so that a burst of load on a shared machine hits all
    of them alike; CPU time (``time.process_time``, all threads of this process) and the
    best round are much less sensitive to other processes than the median wall time.
    """
    for fn in fns.values():
        fn()  # warm-up: imports, caches, XLA compilation
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t0)
    return best


def load_pngs(real: Path | None) -> tuple[list[bytes], str]:
    if real is not None and (real / "images").is_dir():
        files = sorted((real / "images").rglob("*.png"))
        return [f.read_bytes() for f in files], f"{len(files)} real RxRx1 PNGs"
    rng = np.random.default_rng(0)
    datas = []
    for _ in range(36):  # smooth synthetic "cells": compressible like real images
        x = rng.gamma(2.0, 6.0, (64, 64)).astype(np.uint8)
        big = np.kron(x, np.ones((8, 8), np.uint8))
        buf = io.BytesIO()
        Image.fromarray(big).save(buf, format="PNG")
        datas.append(buf.getvalue())
    return datas, "36 synthetic 512x512 PNGs (real files not found)"


def decoders() -> dict[str, Callable[[bytes], np.ndarray]]:
    out: dict[str, Callable[[bytes], np.ndarray]] = {
        "Pillow": lambda d: np.asarray(Image.open(io.BytesIO(d))),
    }
    try:
        import imageio.v3 as iio

        out["imageio"] = lambda d: iio.imread(d, extension=".png")
    except ImportError:
        pass
    try:
        import cv2

        out["OpenCV"] = lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED)
    except ImportError:
        pass
    try:
        import pyspng

        out["pyspng"] = pyspng.load
    except ImportError:
        pass
    import tensorflow as tf

    out["tf.io.decode_png"] = lambda d: tf.io.decode_png(d).numpy()
    out[f"rxdata.images.read_png ({images.DECODER})"] = images.read_png
    out["rxdata.images.inspect_png (no decode)"] = lambda d: images.inspect_png(d)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "rxrx1-real")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-output")
    args = parser.parse_args()

    datas, source = load_pngs(args.real)
    print(
        f"# PNG decoding and 6-channel to RGB ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; {source})\n"
    )
    results: dict[str, dict[str, float]] = {"decode_ms": {}, "rgb_ms": {}}

    print("| decoder | ms / image | speed vs Pillow |\n|---|---:|---:|")
    ref = [np.asarray(Image.open(io.BytesIO(d))) for d in datas]
    candidates = decoders()
    for name, fn in candidates.items():
        if "inspect" not in name:  # every decoder gives Pillow's pixels
            for d, r in zip(datas[:8], ref[:8], strict=False):
                np.testing.assert_array_equal(np.squeeze(np.asarray(fn(d))), r)
    best = interleaved(
        {name: (lambda fn=fn: [fn(d) for d in datas]) for name, fn in candidates.items()},
        args.repeats,
    )
    base = best["Pillow"]
    for name, seconds in best.items():
        per = seconds / len(datas)
        results["decode_ms"][name] = per * 1e3
        print(f"| {name} | {per * 1e3:.2f} | {base / seconds:.2f}x |")

    # a real site when available: the first complete one
    site = None
    if args.real is not None and (args.real / "images").is_dir():
        site = rxdata.load_site("train", "HUVEC-01", 2, "B02", 1, base_path=args.real / "images")
    if site is None:
        site = np.stack([ref[i % len(ref)] for i in range(6)], axis=-1)
    batch = np.stack([np.roll(site, 17 * i, axis=0) for i in range(args.batch)])
    want = np.stack([reference_rgb(x) for x in batch])

    import tensorflow as tf

    from rxdata.layers import rgb as tf_rgb

    jit = tf.function(tf_rgb, jit_compile=True)
    tensor = tf.constant(batch)
    candidates: dict[str, Callable[[], object]] = {
        "reference formula (rxrx1-utils)": lambda: np.stack([reference_rgb(x) for x in batch]),
        "rxdata.convert_tensor_to_rgb (numpy LUT)": lambda: rxdata.convert_tensor_to_rgb(batch),
        "rxdata.layers.rgb (TF eager)": lambda: tf_rgb(tensor).numpy(),
        "rxdata.layers.rgb (TF, jit_compile=True)": lambda: jit(tensor).numpy(),
    }
    print(
        f"\n| RGB of {args.batch} sites {batch.shape[1]}x{batch.shape[2]}x6 | ms / site | "
        "speed vs reference |\n|---|---:|---:|"
    )
    for fn in candidates.values():
        np.testing.assert_array_equal(fn(), want)  # exactness first
    best = interleaved(candidates, args.repeats)
    base = best["reference formula (rxrx1-utils)"]
    for name, seconds in best.items():
        results["rgb_ms"][name] = seconds / args.batch * 1e3
        print(f"| {name} | {seconds / args.batch * 1e3:.2f} | {base / seconds:.1f}x |")

    # pixel statistics: the histogram path of rxdata against numpy's five reductions
    from rxdata.stats import image_stats

    planes = [np.squeeze(r) for r in ref]
    stats_fns: dict[str, Callable[[], object]] = {
        "numpy mean/std/median/min/max": lambda: [
            (x.mean(), x.std(), np.median(x), x.min(), x.max()) for x in planes
        ],
        "rxdata.stats.image_stats (histogram)": lambda: [image_stats(x) for x in planes],
    }
    for x in planes[:8]:
        got = image_stats(x)
        assert np.allclose(got, (x.mean(), x.std(), np.median(x), x.min(), x.max()))
    best = interleaved(stats_fns, args.repeats)
    base = best["numpy mean/std/median/min/max"]
    results["stats_ms"] = {}
    print("\n| pixel statistics of one image | ms / image | speed vs numpy |\n|---|---:|---:|")
    for name, seconds in best.items():
        results["stats_ms"][name] = seconds / len(planes) * 1e3
        print(f"| {name} | {seconds / len(planes) * 1e3:.2f} | {base / seconds:.1f}x |")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "images.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

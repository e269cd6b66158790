"""Benchmark and realism check of the synthetic data and the metadata loader.

Prints, each against a baseline measured in the same process:

1. Realism: per-channel mean, bytes per PNG and PIL decode time of synthetic 512 px
   images next to the real RxRx1 PNGs (``../shared/rxrx1-real/images``, when present).
2. Generation speed: sites per second at 64 and 512 px, 1 worker vs all CPUs.
3. ``read_metadata`` on the real Kaggle CSVs against a bare ``pandas.read_csv`` of the
   same files (the least any loader does).

Usage: ``python benchmarks/bench_synthetic.py [--real ../shared/rxrx1-real]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from rxdata.metadata import read_metadata
from rxdata.naming import KAGGLE_FILES
from rxdata.synthetic import TARGET_CHANNEL_MEANS, SyntheticOptions, generate

REPO = Path(__file__).resolve().parents[1]


def png_table(paths: list[Path]) -> pd.DataFrame:
    """Mean, bytes and decode time (ms, best of 3) per channel over ``paths``."""
    rows = defaultdict(list)
    for path in paths:
        data = path.read_bytes()
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            with Image.open(path) as im:
                pixels = np.asarray(im)
            best = min(best, time.perf_counter() - start)
        channel = int(path.stem.split("_w")[-1])
        rows[channel].append((pixels.mean(), len(data), best * 1e3))
    return pd.DataFrame(
        {c: np.mean(v, axis=0) for c, v in sorted(rows.items())},
        index=["mean", "bytes", "decode_ms"],
    ).T


def realism(real: Path | None) -> None:
    opts = SyntheticOptions.tiny(
        image_size=512, plates=1, sirnas_per_plate=1, positive_controls=1, workers=1
    )
    root = generate(tempfile.mkdtemp(), opts)
    synth = png_table(sorted(root.rglob("*_s1_w*.png")))
    print("## realism: synthetic 512 px (seed 0, 4 cell types) vs real RxRx1 PNGs")
    print(f"published means: {TARGET_CHANNEL_MEANS}")
    print("synthetic:\n" + synth.round(2).to_string())
    if real is not None and (real / "images").is_dir():
        table = png_table(sorted((real / "images").rglob("*.png")))
        print("real sample (18 wells B02, negative controls):\n" + table.round(2).to_string())
        ratio = synth / table
        print("synthetic / real:\n" + ratio.round(2).to_string())


def speed() -> None:
    print("## generation speed (sites per second, including PNG encoding and writing)")
    cpus = os.cpu_count() or 1
    for size in (64, 512):
        opts = SyntheticOptions.tiny(
            image_size=size, experiments=(("HEPG2", 1, 0), ("U2OS", 1, 0)), plates=4
        )
        n_sites = len(opts.experiment_names) * opts.plates * 7 * 2
        rates = {}
        for workers in sorted({1, cpus}):
            start = time.perf_counter()
            generate(tempfile.mkdtemp(), opts, workers=workers)
            rates[workers] = n_sites / (time.perf_counter() - start)
        line = ", ".join(f"{w} worker(s): {r:.0f} sites/s" for w, r in rates.items())
        print(f"{size:>4} px: {line}; ratio {rates[max(rates)] / rates[1]:.2f}x")


def metadata(real: Path | None) -> None:
    if real is None or not (real / "metadata").is_dir():
        print("## read_metadata: real CSVs not found, skipped")
        return
    folder = real / "metadata"
    start = time.perf_counter()
    for name in KAGGLE_FILES:
        pd.read_csv(folder / name)
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    md = read_metadata(folder)
    ours = time.perf_counter() - start
    mb = md.memory_usage(deep=True).sum() / 1e6
    print("## read_metadata on the real Kaggle CSVs")
    print(
        f"pandas.read_csv of the 4 files: {baseline:.2f} s; read_metadata (validated, "
        f"{len(md)} sites, {mb:.0f} MB): {ours:.2f} s; ratio {ours / baseline:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real", type=Path, default=REPO.parent / "shared" / "rxrx1-real")
    args = parser.parse_args()
    real = args.real if args.real.is_dir() else None
    realism(real)
    speed()
    metadata(real)


if __name__ == "__main__":
    main()

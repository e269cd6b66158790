"""Benchmark rxdata-convert against an rxrx1-utils-style baseline, in one process.

Prints sites/s per worker (one worker each, so the figures are per core) for:

* ``baseline``: what rxrx1-utils' ``images2tfrecords`` did per site: decode each of the
  six PNGs with Pillow, stack them, store the raw bytes, GZIP-compressed TFRecords.
* ``rxdata raw``: ``convert(encoding="raw")`` (decode, uncompressed records).
* ``rxdata png``: ``convert(encoding="png")`` (validate each PNG: signature, chunk CRCs,
  size, bit depth, and the IDAT stream inflated to exactly the header's size; copy its
  bytes; no unfiltering).
* ``rxdata png, no validate``: the same with ``validate=False`` (what the PNG checks cost).

and, as the floor for PNG records, ``read+write once``: read each site's six files and
write their bytes once to one file, nothing else; the png rows also print their ratio to
it (1.0 would be a conversion that costs no more than copying the bytes).

on the real RxRx1 images in ``../shared/rxrx1-real/images`` (its 18 complete sites) and on
synthetic 512x512 sites from :mod:`rxdata.synthetic`. Then measures the peak memory of a
conversion in a fresh process at two data-set sizes (bounded memory means both peaks are
about equal) and projects the time for the full 125,510 sites.

``--breakdown`` instead times each step of a PNG site's conversion separately on the real
images (CPU milliseconds per site of six files: reading, input identity, content hash and
its alternatives, the PNG check and its inflate with zlib and with ISA-L, encoding, the
TFRecord write with the shard's checksum, XXH3-128): where a PNG conversion's time goes.

Run: ``.venv/bin/python benchmarks/bench_convert.py [--sites N] [--repeat R] [--breakdown]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image

from rxdata.conversion import convert
from rxdata.images import channel_path
from rxdata.metadata import read_metadata, scan_images
from rxdata.naming import image_path
from rxdata.synthetic import SyntheticOptions, generate

FULL_SITES = 125_510
ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("RXDATA_REAL_ROOT") or ROOT.parent / "shared" / "rxrx1-real")


def baseline(images_root: Path, md: pd.DataFrame, out: Path) -> None:
    """rxrx1-utils' images2tfrecords, per site: Pillow decode, raw bytes, GZIP records."""
    out.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    layout = "full" if (images_root / "images").is_dir() else "kaggle"
    with tf.io.TFRecordWriter(str(out / "baseline.tfrecord"), options) as writer:
        for row in md.itertuples():
            planes = []
            for ch in range(1, 7):
                ds = row.dataset if layout == "kaggle" else None
                path = channel_path(
                    images_root, ds, row.experiment, row.plate, row.well, row.site, ch, layout
                )
                with Image.open(path) as img:
                    planes.append(np.asarray(img))
            image = np.stack(planes, axis=-1)

            def b(v: object) -> tf.train.Feature:
                return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode()]))

            def i(v: int) -> tf.train.Feature:
                return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

            feature = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                "well": b(row.well),
                "well_type": b(row.well_type),
                "experiment": b(row.experiment),
                "plate": i(row.plate),
                "site": i(row.site),
                "cell_type": b(row.cell_type),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


def real_sites(root: Path, n_sites: int) -> tuple[Path, pd.DataFrame]:
    """``n_sites`` sites made of the real images' 18 complete sites (copied, in a temp dir).

    The real sample has only 18 complete sites, too few to time without fixed costs
    dominating; each new well reuses one real site's six PNGs for both of its sites.
    """
    images = REAL / "images"
    scan = scan_images(images)
    real = scan.sites[scan.sites["complete"]].reset_index(drop=True)
    rows = []
    for k in range(-(-n_sites // 2)):
        src = real.iloc[k % len(real)]
        well = f"{'CDEFGHIJKLMNO'[k // 22 % 13]}{3 + k % 22:02d}"
        rows.append((f"{src.experiment}_{src.plate}_{well}", src.experiment, src.plate, well, 1))
        for site in (1, 2):
            for ch in range(1, 7):
                from_ = channel_path(
                    images, src.dataset, src.experiment, src.plate, src.well, src.site, ch
                )
                to = root / image_path("train", src.experiment, src.plate, well, site, ch, "kaggle")
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(from_, to)
    cols = ["id_code", "experiment", "plate", "well", "sirna"]
    pd.DataFrame(rows, columns=cols).to_csv(root / "train.csv", index=False)
    md = read_metadata(root, datasets=("train",)).iloc[:n_sites].reset_index(drop=True)
    return root, md


def timed(fn, repeat: int) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds) of ``repeat`` runs of ``fn``.

    CPU time of this process (all its threads) is the per-core cost and is steady on a
    machine shared with other jobs; wall time is printed next to it.
    """
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall


def copy_once(images_root: Path, md: pd.DataFrame, out: Path) -> None:
    """The floor for PNG records: read each site's six files, write their bytes once."""
    out.mkdir(parents=True, exist_ok=True)
    layout = "full" if (images_root / "images").is_dir() else "kaggle"
    with open(out / "copy.bin", "wb") as dst:
        for row in md.itertuples():
            ds = row.dataset if layout == "kaggle" else None
            for ch in range(1, 7):
                path = images_root / image_path(
                    ds, row.experiment, row.plate, row.well, row.site, ch, layout
                )
                with open(path, "rb") as src:
                    dst.write(src.read())


KINDS = ("baseline", "raw", "png", "png-novalidate", "copy")
LABELS = {
    "baseline": "baseline",
    "raw": "rxdata raw",
    "png": "rxdata png",
    "png-novalidate": "png, no validate",
    "copy": "read+write once",
}


def bench(name: str, images_root: Path, md: pd.DataFrame, work: Path, repeat: int) -> dict:
    n = len(md)

    def run(kind: str) -> None:
        out = work / f"{name}-{kind}"
        shutil.rmtree(out, ignore_errors=True)
        if kind == "baseline":
            baseline(images_root, md, out)
        elif kind == "copy":
            copy_once(images_root, md, out)
        else:
            convert(
                images_root,
                out,
                metadata=md,
                encoding=kind.split("-")[0],
                validate=kind != "png-novalidate",
                workers=1,
                progress=False,
                scan=False,
                sites_per_shard=max(n, 1),
            )

    times = {kind: timed(lambda k=kind: run(k), repeat) for kind in KINDS}
    print(f"\n{name}: {n} sites, one worker, best of {repeat}")
    print(
        f"  {'method':<18}{'sites/CPU-s':>12}{'x baseline':>12}{'sites/s wall':>14}"
        f"{'x baseline':>12}{'x read+write':>14}"
    )
    base_cpu, base_wall = times["baseline"]
    copy_cpu = times["copy"][0]
    rates = {}
    for kind, (cpu, wall) in times.items():
        rates[kind] = n / cpu
        ratio = f"{copy_cpu / cpu:>14.2f}" if kind.startswith("png") else ""
        print(
            f"  {LABELS[kind]:<18}{n / cpu:>12.1f}{base_cpu / cpu:>12.1f}{n / wall:>14.1f}"
            f"{base_wall / wall:>12.1f}{ratio}"
        )
    return {k: rates[k] for k in ("baseline", "raw", "png")}


PEAK_CHILD = """
import os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import pandas as pd
from rxdata.conversion import convert
md = pd.read_pickle(sys.argv[3])
convert(sys.argv[1], sys.argv[2], metadata=md, encoding=sys.argv[4], workers=1,
        progress=False, scan=False, sites_per_shard=308)
# ru_maxrss survives exec (it would report the parent's peak): read this process's own.
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
"""


def peak_mb(images_root: Path, md: pd.DataFrame, work: Path, encoding: str) -> float:
    out = work / f"peak-{encoding}-{len(md)}"
    shutil.rmtree(out, ignore_errors=True)
    pickle = work / f"md-{len(md)}.pkl"
    md.to_pickle(pickle)
    done = subprocess.run(
        [sys.executable, "-c", PEAK_CHILD, str(images_root), str(out), str(pickle), encoding],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout.split()[-1]) / 1024  # VmHWM is in KiB


def write_report(results: dict[str, dict[str, float]], path: Path) -> None:
    """Write the per-worker rates in the format ``tools/gen_figures.py`` charts."""
    sets = {"real": "real RxRx1 images", "synthetic": "synthetic 512x512"}
    labels = {"baseline": "baseline (rxrx1-utils style)", "raw": "rxdata raw", "png": "rxdata png"}
    rows = [
        {
            "name": f"{sets[key]}: {labels[kind]}",
            "value": rate,
            "baseline": kind == "baseline",
            "set": sets[key],
        }
        for key, rates in results.items()
        for kind, rate in rates.items()
    ]
    report = {
        "title": "rxdata-convert, one worker",
        "unit": "sites per CPU-second",
        "results": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"wrote {path}")


def _idat(png: bytes) -> bytes:
    """The concatenated IDAT data of a PNG (the zlib stream the check inflates)."""
    import struct

    pos, parts = 8, []
    while pos < len(png):
        length, ctype = struct.unpack(">I4s", png[pos : pos + 8])
        if ctype == b"IDAT":
            parts.append(png[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return b"".join(parts)


def _inflate(module: Any, stream: bytes) -> int:
    """Inflate in 64 KiB slices, as the PNG check does (one 256 KiB buffer is slower:
    each allocation that large is a fresh mapping, page faults included); bytes out."""
    inflate, size = module.decompressobj(), 0
    while True:
        out = inflate.decompress(stream, 1 << 16)
        size += len(out)
        stream = inflate.unconsumed_tail
        if not stream and len(out) < 1 << 16:
            return size


def breakdown(images_root: Path, md: pd.DataFrame, work: Path, repeat: int) -> None:
    """CPU milliseconds per site of each step of a PNG conversion, timed apart."""
    import hashlib
    import zlib

    import xxhash
    from isal import isal_zlib

    from rxdata.conversion.plan import site_rows
    from rxdata.conversion.shard import ShardContext, content_hash, site_files, site_input
    from rxdata.images import inspect_png
    from rxdata.tfrecord import encode_example, write_shard

    rows = list(site_rows(md).values())
    ctx = ShardContext(
        str(images_root), "kaggle", str(work), "png", "none", True, False, "raise", (512, 512)
    )
    paths = [site_files(ctx, row) for row in rows]
    blobs = [[Path(p).read_bytes() for p in ps] for ps in paths]
    streams = [[_idat(b) for b in site] for site in blobs]
    examples = [
        encode_example(row, pngs=site, height=512, width=512)
        for row, site in zip(rows, blobs, strict=True)
    ]

    def read() -> None:
        for ps in paths:
            for p in ps:
                with open(p, "rb") as f:
                    f.read()

    steps = {
        "read the six files": read,
        "input identity (stat x6, row digest)": lambda: [site_input(ctx, r) for r in rows],
        "content hash, XXH3-64 (used)": lambda: [content_hash(b) for site in blobs for b in site],
        "  SHA-256 (before)": lambda: [hashlib.sha256(b).digest() for s in blobs for b in s],
        "  BLAKE2b-128": lambda: [
            hashlib.blake2b(b, digest_size=16).digest() for s in blobs for b in s
        ],
        "  XXH3-128": lambda: [xxhash.xxh3_128_digest(b) for s in blobs for b in s],
        "  CRC-32 (zlib)": lambda: [zlib.crc32(b) for s in blobs for b in s],
        "PNG check, inspect_png (all of it)": lambda: [
            inspect_png(b, "x", expected_shape=(512, 512)) for s in blobs for b in s
        ],
        "  IDAT inflate alone, ISA-L (used)": lambda: [
            _inflate(isal_zlib, d) for s in streams for d in s
        ],
        "  IDAT inflate alone, zlib (before)": lambda: [
            _inflate(zlib, d) for s in streams for d in s
        ],
        "  chunk CRC-32 pass": lambda: [zlib.crc32(b) for s in blobs for b in s],
        "encode_example": lambda: [
            encode_example(r, pngs=s, height=512, width=512)
            for r, s in zip(rows, blobs, strict=True)
        ],
        "TFRecord write + shard checksum": lambda: write_shard(work / "b.tfrecord", examples),
    }
    print(f"\nwhere a PNG site's CPU goes ({len(rows)} real sites, best of {repeat}):")
    for name, fn in steps.items():
        cpu, _ = timed(fn, repeat)
        print(f"  {name:<40}{cpu / len(rows) * 1e3:>8.3f} ms/site")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=84, help="synthetic 512x512 sites")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-output")
    parser.add_argument("--breakdown", action="store_true", help="time each step of a site")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    try:
        if args.breakdown:
            images, md = real_sites(work / "real", args.sites)
            breakdown(images, md, work, max(args.repeat, 3))
            return
        results = {}
        if (REAL / "images").is_dir():
            images, md = real_sites(work / "real", args.sites)
            results["real"] = bench("real RxRx1 images", images, md, work, args.repeat)
        else:
            print(f"(real images not found at {REAL}; skipping them)")
        wells = max(1, -(-args.sites // (6 * 2)))  # 6 experiments x 2 sites per well
        synth_opts = SyntheticOptions.tiny(image_size=512, plates=1, seed=3)
        start = time.perf_counter()
        root = generate(work / "synthetic", synth_opts)
        print(f"(generated synthetic 512x512 data in {time.perf_counter() - start:.0f} s)")
        md = read_metadata(root)
        md = md.groupby("experiment", observed=True).head(2 * wells).reset_index(drop=True)
        results["synthetic"] = bench("synthetic 512x512", root, md, work, args.repeat)

        print("\npeak memory of a conversion in a fresh process (RSS of the whole process):")
        half = md.iloc[: len(md) // 2]
        for encoding in ("png", "raw"):
            small, large = peak_mb(root, half, work, encoding), peak_mb(root, md, work, encoding)
            print(
                f"  {encoding}: {small:.0f} MB for {len(half)} sites, {large:.0f} MB for "
                f"{len(md)} sites"
            )

        write_report(results, args.out / "convert.json")

        rates = results.get("real", results["synthetic"])
        which = "real" if "real" in results else "synthetic"
        cores = os.cpu_count() or 1
        print(
            f"\nprojected time for all {FULL_SITES:,} sites (per-worker CPU rate on {which} "
            "images, assuming linear scaling and storage that keeps up):"
        )
        for kind in ("baseline", "raw", "png"):
            per = rates[kind]
            line = [f"{kind:<9}"]
            for workers in (1, cores, 16, 64, 256):
                hours = FULL_SITES / (per * workers) / 3600
                line.append(f"{workers} w: {hours:7.2f} h")
            print("  " + " | ".join(line))
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\n(this benchmark process peaked at {peak_self:.0f} MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

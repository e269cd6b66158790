"""Shared test helpers: hostile PNGs, shard bytes, process hooks, TFRecord examples.

Tiny data sets come from the fixtures in ``conftest.py`` (:func:`rxdata.synthetic.generate`),
never from a table written here; :func:`find_site` finds a site in one by its metadata.
"""

from __future__ import annotations

import importlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from rxdata.metadata import read_metadata
from rxdata.naming import image_path


def png_bytes(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **kw)
    return buf.getvalue()


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.tfrecord"))}


@dataclass(frozen=True)
class Site:
    """One site of a data set on disk, as its metadata names it (see :func:`find_site`)."""

    root: Path
    site_id: str
    dataset: str
    experiment: str
    plate: int
    well: str
    site: int
    layout: Literal["kaggle", "full"] = "kaggle"

    @classmethod
    def of(cls, root: Path, row: Any, layout: Literal["kaggle", "full"] = "kaggle") -> Site:
        """The site of one ``read_metadata(root)`` row (a ``DataFrame.itertuples`` tuple)."""
        return cls(
            root,
            str(row.site_id),
            str(row.dataset),
            str(row.experiment),
            int(row.plate),
            str(row.well),
            int(row.site),
            layout,
        )

    def png(self, channel: int) -> Path:
        """The path of one channel's PNG."""
        return self.root / image_path(
            self.dataset, self.experiment, self.plate, self.well, self.site, channel, self.layout
        )

    @property
    def stem(self) -> str:
        """The start of its PNG names, ``{well}_s{site}`` (``..._w{channel}.png`` follows)."""
        return f"{self.well}_s{self.site}"


def find_site(
    root: Path,
    *,
    dataset: str = "train",
    well_type: str = "treatment",
    layout: Literal["kaggle", "full"] = "kaggle",
) -> Site:
    """The first site (by site id) of ``root``'s metadata with this dataset and well type.

    Tests find the site they damage or look for this way, from the generated data's own
    metadata, rather than naming a hand-picked id.
    """
    md = read_metadata(root)
    rows = md[(md["dataset"] == dataset) & (md["well_type"] == well_type)]
    if rows.empty:
        raise LookupError(f"{root} has no {dataset} {well_type} site")
    return Site.of(root, next(rows.sort_values("site_id").itertuples()), layout)


def read_png(path: Path) -> np.ndarray:
    """A PNG's pixels read with Pillow (independently of rxdata's own decoder)."""
    with Image.open(path) as image:
        return np.asarray(image)


def record_pid_and_sleep(path: str) -> str:
    """A slow task for process tests: write this worker's pid to ``path``, then sleep."""
    import os
    import time

    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(120)
    return path


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone); reads /proc, or signal 0."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


# --- TFRecord examples --------------------------------------------------------------------
def make_site(**overrides: object) -> dict[str, object]:
    """One metadata-table row (a labelled HEPG2-01 treatment site), with ``overrides``."""
    site: dict[str, object] = {
        "site_id": "HEPG2-01_1_B03_2",
        "id_code": "HEPG2-01_1_B03",
        "dataset": "train",
        "experiment": "HEPG2-01",
        "cell_type": "HEPG2",
        "plate": np.int8(1),
        "well": "B03",
        "site": np.int8(2),
        "well_type": "treatment",
        "sirna": "513",
        "sirna_id": 513,
    }
    site.update(overrides)
    return site


def rxrx1_utils_example(image: np.ndarray, sirna: int | None, well_type: str) -> bytes:
    """One record in rxrx1-utils' exact layout, written with plain TensorFlow."""
    import tensorflow as tf

    def b(v: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8")]))

    def i(v: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    features = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "well": b("B02"),
        "well_type": b(well_type),
        "experiment": b("HEPG2-08"),
        "plate": i(2),
        "site": i(1),
        "cell_type": b("HEPG2"),
    }
    if sirna is not None:
        features["sirna"] = i(sirna)
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_good_shard(
    path: Path, compression: str = "none", n: int = 3, side: int = 32
) -> list[bytes]:
    """Write ``n`` distinct sites to ``path``; return their serialized examples."""
    from rxdata import tfrecord

    # Distinct random pixels do not compress, so a cut near the end damages only the last
    # record, in every compression.
    rng = np.random.default_rng(2)
    data = [
        tfrecord.encode_example(
            make_site(site=s + 1), image=rng.integers(0, 256, (side, side, 6), dtype=np.uint8)
        )
        for s in range(n)
    ]
    tfrecord.write_shard(path, data, compression=compression)  # type: ignore[arg-type]
    return data


def slow_sites(seconds: float) -> None:
    """Make every site load ``seconds`` slower in this process (0: undo); a test hook.

    Sent to Dask workers with ``client.run`` so a test can stop a worker mid-shard.
    """
    import time

    from rxdata.conversion import shard

    real = getattr(shard.load_site, "_real", shard.load_site)
    if seconds <= 0:
        shard.load_site = real  # type: ignore[assignment]
        return

    def slow(ctx, row, paths=None):  # type: ignore[no-untyped-def]
        time.sleep(seconds)
        return real(ctx, row, paths)

    slow._real = real  # type: ignore[attr-defined]
    shard.load_site = slow  # type: ignore[assignment]


def set_allowed_failures(n: int, dask_scheduler: Any = None) -> int:
    """Set a Dask scheduler's ``allowed_failures``; returns the old value (a test hook).

    Run with ``client.run_on_scheduler(set_allowed_failures, n)``.
    """
    old = int(dask_scheduler.allowed_failures)
    dask_scheduler.allowed_failures = n
    return old


# --- per-site statistics of two experiments x three plates (normalization tests) ------


def plate_stats() -> pd.DataFrame:
    """Channel statistics of the control well B02, site 1, of HEPG2-01 and RPE-03 plates 1-3."""
    rng = np.random.default_rng(0)
    rows = []
    for exp in ("HEPG2-01", "RPE-03"):
        for plate in (1, 2, 3):
            for ch in range(1, 7):
                rows.append(
                    {
                        "id_code": f"{exp}_{plate}_B02",
                        "experiment": exp,
                        "plate": plate,
                        "well": "B02",
                        "site": 1,
                        "channel": ch,
                        "mean": rng.uniform(2, 40),
                        "std": rng.uniform(1, 9),
                    }
                )
    return pd.DataFrame(rows)


def to_legacy_manifest(out: Path) -> None:
    """Rewrite a conversion's manifest into the form rxdata wrote before the XXH3 checksum.

    Format version 1, each shard's ``"digest"`` replaced by ``"sha256"``: the hex SHA-256
    of its file (checked against a conversion made by that version's code: the same keys).
    """
    import hashlib
    import json

    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 1
    for entry in manifest["shards"]:
        entry.pop("digest")
        entry["sha256"] = hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest))


def benchmark_module(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (benchmarks/ is not a package)."""
    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)

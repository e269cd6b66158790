"""Convert RxRx1 channel PNGs to TFRecord shards: plan, write, resume, verify.

Contract:

* **Plan.** :func:`plan_shards` is a pure, deterministic function of the metadata table and
  the :class:`ConvertOptions`: the same inputs always give the same shards, each with the
  same sites in the same order. The strategies and shard names follow rxrx1-utils'
  ``images2tfrecords`` (``random-{seed}/{dataset}/001.tfrecord``,
  ``by_exp_plate_site-{seed}/{experiment}_p{plate}_s{site}.tfrecord``), so the seeds give
  the same grouping their users know; ``by_experiment-{seed}/{dataset}/{experiment}.tfrecord``
  is added for per-experiment work.
* **Write.** Each shard is written whole by one worker, site by site (memory holds one
  site's PNGs, never a shard), under a temporary name renamed into place when complete
  (:func:`rxdata.tfrecord.write_shard`), so a shard file either is complete or does not
  exist. ``encoding="png"`` copies each channel PNG's bytes after validating them with
  :func:`rxdata.images.inspect_png` (signature, chunk CRCs, size, bit depth; no decode);
  ``encoding="raw"`` decodes to ``H*W*6`` bytes.
* **Resume.** ``OUTPUT_DIR/manifest.json`` holds the options, the plan, and (when done) each
  shard's site count, size and sha256. While a run is under way each finished shard leaves
  a record in ``OUTPUT_DIR/_progress/``. Re-running the same conversion re-uses every shard
  whose file matches its recorded sha256 and rewrites the others, so an interrupted run
  (Ctrl-C, ``kill -9``, a full disk) finishes with byte-identical output. An output written
  with different options or metadata is refused (:class:`~rxdata.errors.OutputExistsError`)
  unless ``overwrite=True``.
* **Bad input.** Missing channel PNGs, corrupt PNGs, wrong size or bit depth, metadata sites
  without images, and images without metadata. ``on_error="raise"`` stops with a
  :class:`~rxdata.errors.ConvertError` naming the file (no partial shard is left);
  ``"skip"`` converts everything else and writes ``OUTPUT_DIR/skipped.csv``.
* **Verify.** :func:`verify` re-reads every shard and checks it against the manifest (and,
  if given, the metadata); it returns a :class:`VerifyReport` listing every mismatch.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import posixpath
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rxdata import _io
from rxdata.errors import (
    ConvertError,
    ImageDecodeError,
    ImageNotFoundError,
    MetadataError,
    OptionsError,
    OutputExistsError,
    RecordError,
)

__all__ = [
    "CHANNELS",
    "COMPRESSIONS",
    "ENCODINGS",
    "MANIFEST_NAME",
    "REPORT_NAME",
    "STRATEGIES",
    "ConvertOptions",
    "ConvertResult",
    "ShardRecord",
    "ShardSpec",
    "SkippedSite",
    "VerifyReport",
    "convert",
    "file_sha256",
    "find_metadata",
    "plan_shards",
    "read_manifest",
    "verify",
    "write_tfrecords",
]

log = logging.getLogger(__name__)

STRATEGIES = ("random", "by_exp_plate_site", "by_experiment")
"""Ways to group sites into shards (see :func:`plan_shards`)."""
ENCODINGS = ("png", "raw")
"""``png``: the source PNG bytes of each channel; ``raw``: decoded ``uint8`` pixels."""
COMPRESSIONS = ("none", "gzip", "zlib")
"""TFRecord compression of the shard files."""
ON_ERROR = ("raise", "skip")
RUNNERS = ("local", "beam")
DATASETS = ("train", "test")
CHANNELS = (1, 2, 3, 4, 5, 6)
"""Every RxRx1 site has these six channel images."""

MANIFEST_NAME = "manifest.json"
"""File name of the manifest in the output directory."""
REPORT_NAME = "skipped.csv"
"""File name of the skipped-sites report in the output directory."""
PROGRESS_DIR = "_progress"
MANIFEST_FORMAT = "rxdata-convert-manifest"
MANIFEST_VERSION = 1
REPORT_COLUMNS = (
    "site_id",
    "dataset",
    "experiment",
    "plate",
    "well",
    "site",
    "shard",
    "reason",
    "path",
)
_SORT = ["dataset", "experiment", "plate", "well", "site"]
_LOG_EVERY_S = 30.0


def _choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise OptionsError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


def _positive_int(name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise OptionsError(f"{name}={value!r} must be an integer >= {minimum}")


def _parse_beam_options(value: object) -> tuple[tuple[str, str], ...]:
    """Normalise ``{"k": "v"}`` or ``["k=v", ...]`` into sorted ``(key, value)`` pairs."""
    pairs: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.items()
    elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise OptionsError(
            f"beam_options={value!r} must be a mapping or a list of 'KEY=VALUE' strings"
        )
    else:
        items = value
    for item in items:
        if isinstance(item, str):
            key, sep, val = item.partition("=")
            if not sep:
                raise OptionsError(
                    f"beam_options: {item!r} is not of the form KEY=VALUE "
                    "(e.g. 'runner=DataflowRunner')"
                )
        elif isinstance(item, tuple) and len(item) == 2:
            key, val = str(item[0]), str(item[1])
        else:
            raise OptionsError(f"beam_options: {item!r} must be 'KEY=VALUE' or a (key, value) pair")
        key = key.strip().removeprefix("--")
        if not key:
            raise OptionsError(f"beam_options: {item!r} has an empty key")
        pairs.append((key, val))
    return tuple(sorted(pairs))


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert RxRx1 PNGs to TFRecord shards. Every field is validated on creation.

    Only ``strategy``, ``sites_per_shard`` (random strategy), ``seed``, ``encoding``,
    ``compression``, ``datasets``, ``include_controls`` and ``image_shape`` shape the
    output; the others say how to get there and may change between a run and its resume.

    Example:
        >>> ConvertOptions(encoding="raw", workers=2).encoding
        'raw'
        >>> ConvertOptions(strategy="by_plate")
        Traceback (most recent call last):
        ...
        rxdata.errors.OptionsError: strategy='by_plate' is not allowed; choose one of \
['random', 'by_exp_plate_site', 'by_experiment']
    """

    # rxrx1-utils' default: shuffled shards are what a training input pipeline wants.
    strategy: str = "random"
    # rxrx1-utils' default: 308 PNG-encoded sites make a ~200 MB shard (raw: ~480 MB), the
    # 100-200 MB+ range tf.data reads efficiently. Used by the random strategy only.
    sites_per_shard: int = 308
    # rxrx1-utils' default seed, so the same seed gives the same grouping.
    seed: int = 42
    # PNG bytes are ~3x smaller than raw pixels and cost no decode when converting.
    encoding: str = "png"
    # PNG is already compressed: GZIP on top saves little and dominates the run time.
    compression: str = "none"
    # Both splits, as rxrx1-utils converts them.
    datasets: tuple[str, ...] = DATASETS
    # Controls are needed for control-based normalization and for the 1,139-class task.
    include_controls: bool = True
    # None: every core (the job is CPU-bound: CRC checks or PNG decoding).
    workers: int | None = None
    # Silent data loss is worse than a stopped run; "skip" writes a report instead.
    on_error: str = "raise"
    # The local process pool needs no extra installation; "beam" scales out.
    runner: str = "local"
    # Extra Beam pipeline options (KEY=VALUE), e.g. runner=DataflowRunner, project=...
    beam_options: tuple[tuple[str, str], ...] = ()
    # Never destroy a previous conversion made with other options unless asked.
    overwrite: bool = False
    # PNG encoding: validate each file (signature, chunk CRCs, size, bit depth); cheap.
    validate: bool = True
    # PNG encoding: also decode every image (slow; catches corrupt compressed data whose
    # CRCs are right, which only a buggy writer produces).
    decode: bool = False
    # Report images that have no metadata row (one listing of IMAGES_ROOT).
    scan: bool = True
    # (height, width) every image must have; None takes it from the first image found.
    image_shape: tuple[int, int] | None = None
    # None: a progress bar on a terminal, periodic log lines otherwise; True: always a
    # bar; False: neither.
    progress: bool | None = None

    def __post_init__(self) -> None:
        _choice("strategy", self.strategy, STRATEGIES)
        _positive_int("sites_per_shard", self.sites_per_shard)
        _positive_int("seed", self.seed, minimum=0)
        if self.seed >= 2**32:
            raise OptionsError(f"seed={self.seed!r} must be below 2**32")
        _choice("encoding", self.encoding, ENCODINGS)
        _choice("compression", self.compression, COMPRESSIONS)
        datasets = (self.datasets,) if isinstance(self.datasets, str) else tuple(self.datasets)
        if not datasets:
            raise OptionsError(f"datasets={self.datasets!r} is empty; choose from {DATASETS}")
        for ds in datasets:
            _choice("datasets", ds, DATASETS)
        if len(set(datasets)) != len(datasets):
            raise OptionsError(f"datasets={self.datasets!r} lists a data set twice")
        object.__setattr__(self, "datasets", tuple(d for d in DATASETS if d in datasets))
        if self.workers is not None:
            _positive_int("workers", self.workers)
        _choice("on_error", self.on_error, ON_ERROR)
        _choice("runner", self.runner, RUNNERS)
        object.__setattr__(self, "beam_options", _parse_beam_options(self.beam_options))
        for name in ("include_controls", "overwrite", "validate", "decode", "scan"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name}={getattr(self, name)!r} must be True or False")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise OptionsError(f"progress={self.progress!r} must be True, False or None")
        if self.image_shape is not None:
            shape = tuple(self.image_shape)
            if len(shape) != 2:
                raise OptionsError(f"image_shape={self.image_shape!r} must be (height, width)")
            for v in shape:
                _positive_int("image_shape", v)
            object.__setattr__(self, "image_shape", (int(shape[0]), int(shape[1])))

    @property
    def n_workers(self) -> int:
        """The number of worker processes to use (``workers`` or every core)."""
        return self.workers if self.workers is not None else max(1, os.cpu_count() or 1)

    def output_fields(self) -> dict[str, Any]:
        """The options that determine the output bytes (recorded in the manifest).

        Example:
            >>> ConvertOptions(workers=3).output_fields()["strategy"]
            'random'
        """
        return {
            "strategy": self.strategy,
            "sites_per_shard": self.sites_per_shard if self.strategy == "random" else None,
            "seed": self.seed,
            "encoding": self.encoding,
            "compression": self.compression,
            "datasets": list(self.datasets),
            "include_controls": self.include_controls,
        }


# --- the shard plan ------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardSpec:
    """One planned shard: its path (relative to the output directory) and its sites.

    Attributes:
        path: POSIX path relative to the output directory, e.g. ``random-42/train/001.tfrecord``.
        dataset: ``"train"`` or ``"test"``.
        site_ids: The sites it holds, in write order.
    """

    path: str
    dataset: str
    site_ids: tuple[str, ...]


def _dataset_random_states(seed: int) -> dict[str, np.random.RandomState]:
    # As rxrx1-utils: one state per data set, drawn whatever data sets are converted, so
    # converting only "test" shuffles it exactly as converting both does.
    rs = np.random.RandomState(seed)
    return {ds: np.random.RandomState(rs.randint(2**32 - 1)) for ds in sorted(DATASETS)}


def _select(metadata: pd.DataFrame, options: ConvertOptions) -> pd.DataFrame:
    missing = [c for c in ("site_id", *_SORT, "well_type") if c not in metadata.columns]
    if missing:
        raise MetadataError(
            f"metadata lacks the columns {missing}; pass the table rxdata.read_metadata returns"
        )
    df = metadata[metadata["dataset"].astype(str).isin(options.datasets)]
    if not options.include_controls:
        df = df[df["well_type"].astype(str) == "treatment"]
    dup = df["site_id"][df["site_id"].duplicated()]
    if len(dup):
        raise MetadataError(
            f"metadata has duplicate site_id {dup.iloc[0]!r}; each site must appear once"
        )
    order = df["dataset"].astype(str).map({d: i for i, d in enumerate(DATASETS)})
    df = df.assign(_ds_order=order).sort_values(
        ["_ds_order", *_SORT[1:]], kind="stable", key=_sort_key
    )
    result: pd.DataFrame = df.drop(columns="_ds_order").reset_index(drop=True)
    return result


def _sort_key(col: pd.Series) -> pd.Series:
    # Categories sort in category order; the plan must depend on the values only.
    return col.astype(str) if isinstance(col.dtype, pd.CategoricalDtype) else col


def plan_shards(metadata: pd.DataFrame, options: ConvertOptions | None = None) -> list[ShardSpec]:
    """Group the selected sites into shards; a pure function of its arguments.

    * ``random``: each data set's sites, sorted then shuffled with ``seed``, cut into
      shards of ``sites_per_shard`` (``random-{seed}/{dataset}/{n:03d}.tfrecord``).
    * ``by_exp_plate_site``: one shard per (experiment, plate, site), shuffled
      (``by_exp_plate_site-{seed}/{experiment}_p{plate}_s{site}.tfrecord``).
    * ``by_experiment``: one shard per experiment, shuffled
      (``by_experiment-{seed}/{dataset}/{experiment}.tfrecord``).

    Args:
        metadata: The site table of :func:`rxdata.read_metadata`.
        options: Strategy, seed, data sets and controls to use.

    Returns:
        The shards, train before test, in a fixed order.

    Example:
        >>> import pandas as pd
        >>> md = pd.DataFrame({"site_id": ["E-1_1_B02_1", "E-1_1_B02_2", "E-1_1_B03_1"],
        ...     "dataset": "train", "experiment": "E-1", "plate": 1,
        ...     "well": ["B02", "B02", "B03"], "site": [1, 2, 1], "well_type": "treatment"})
        >>> [(s.path, len(s.site_ids)) for s in plan_shards(md, ConvertOptions(sites_per_shard=2))]
        [('random-42/train/001.tfrecord', 2), ('random-42/train/002.tfrecord', 1)]
    """
    opts = options or ConvertOptions()
    df = _select(metadata, opts)
    states = _dataset_random_states(opts.seed)
    shards: list[ShardSpec] = []
    for dataset in opts.datasets:
        part = df[df["dataset"].astype(str) == dataset]
        if part.empty:
            continue
        rs = states[dataset]
        ids = part["site_id"].astype(str).to_numpy()
        if opts.strategy == "random":
            ids = ids[rs.permutation(len(ids))]
            n = -(-len(ids) // opts.sites_per_shard)
            width = max(3, len(str(n)))
            for i in range(n):
                chunk = ids[i * opts.sites_per_shard : (i + 1) * opts.sites_per_shard]
                shards.append(
                    ShardSpec(
                        f"random-{opts.seed}/{dataset}/{i + 1:0{width}d}.tfrecord",
                        dataset,
                        tuple(str(s) for s in chunk),
                    )
                )
            continue
        keys = (
            ["experiment", "plate", "site"]
            if opts.strategy == "by_exp_plate_site"
            else ["experiment"]
        )
        groups = part.assign(**{k: part[k].astype(str) for k in keys if k == "experiment"})
        for key, grp in groups.groupby(keys, sort=True, observed=True):
            key_t = key if isinstance(key, tuple) else (key,)
            gids = grp["site_id"].astype(str).to_numpy()
            gids = gids[rs.permutation(len(gids))]
            if opts.strategy == "by_exp_plate_site":
                exp, plate, site = key_t
                path = f"by_exp_plate_site-{opts.seed}/{exp}_p{int(plate)}_s{int(site)}.tfrecord"
            else:
                path = f"by_experiment-{opts.seed}/{dataset}/{key_t[0]}.tfrecord"
            shards.append(ShardSpec(path, dataset, tuple(str(s) for s in gids)))
    paths = [s.path for s in shards]
    if len(set(paths)) != len(paths):
        clash = next(p for p in paths if paths.count(p) > 1)
        raise MetadataError(
            f"two groups of sites would share the shard {clash}: an experiment appears in "
            "both train and test; use strategy='random' or 'by_experiment'"
        )
    return shards


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedSite:
    """A site (or an image) left out of the output, and why.

    Attributes:
        site_id: The site, e.g. ``HEPG2-01_1_B02_2``.
        reason: What was wrong, naming the file.
        path: The offending file, if one.
        shard: The shard the site was planned for (empty for images without metadata).
        dataset: ``train``/``test`` where known.
    """

    site_id: str
    reason: str
    path: str = ""
    shard: str = ""
    dataset: str = ""

    def row(self) -> dict[str, str]:
        """The report CSV row of this site."""
        exp = plate = well = site = ""
        parts = self.site_id.rsplit("_", 3)
        if len(parts) == 4:
            exp, plate, well, site = parts
        return {
            "site_id": self.site_id,
            "dataset": self.dataset,
            "experiment": exp,
            "plate": plate,
            "well": well,
            "site": site,
            "shard": self.shard,
            "reason": self.reason,
            "path": self.path,
        }


@dataclass(frozen=True)
class ShardRecord:
    """A written shard, as recorded in the manifest.

    Attributes:
        path: Path relative to the output directory.
        dataset: ``train``/``test``.
        count: Number of examples (sites) in the file.
        sha256: Hex SHA-256 of the file.
        size: File size in bytes.
        site_ids: The sites written, in order.
        skipped: Sites of the plan left out (``on_error="skip"``).
        reused: True if a resumed run found the shard already complete.
    """

    path: str
    dataset: str
    count: int
    sha256: str
    size: int
    site_ids: tuple[str, ...]
    skipped: tuple[SkippedSite, ...] = ()
    reused: bool = False

    def to_json(self) -> dict[str, Any]:
        """The manifest entry of this shard."""
        return {
            "path": self.path,
            "dataset": self.dataset,
            "count": self.count,
            "sha256": self.sha256,
            "size": self.size,
            "site_ids": list(self.site_ids),
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ShardRecord:
        """Read a manifest entry (inverse of :meth:`to_json`)."""
        return cls(
            path=str(d["path"]),
            dataset=str(d["dataset"]),
            count=int(d["count"]),
            sha256=str(d["sha256"]),
            size=int(d["size"]),
            site_ids=tuple(str(s) for s in d["site_ids"]),
            skipped=tuple(SkippedSite(**s) for s in d.get("skipped", ())),
        )


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote.

    Attributes:
        output_dir: The output directory.
        manifest_path: Path of ``manifest.json``.
        shards: One record per shard, in plan order.
        skipped: Every skipped site or orphan image (empty with ``on_error="raise"``).
        report_path: Path of ``skipped.csv``, or ``None`` when nothing was skipped.
        elapsed_s: Wall time of the run in seconds.
    """

    output_dir: str
    manifest_path: str
    shards: tuple[ShardRecord, ...]
    skipped: tuple[SkippedSite, ...]
    report_path: str | None
    elapsed_s: float

    @property
    def n_sites(self) -> int:
        """Number of sites written."""
        return sum(s.count for s in self.shards)

    @property
    def n_reused(self) -> int:
        """Number of shards a resumed run found complete and kept."""
        return sum(s.reused for s in self.shards)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped


# --- per-site work -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What a worker needs besides its shard (small and picklable, for Beam too)."""

    images_root: str
    layout: str
    output_dir: str
    encoding: str
    compression: str
    validate: bool
    decode: bool
    on_error: str
    image_shape: tuple[int, int]


@dataclass(frozen=True)
class _Task:
    spec: ShardSpec
    rows: tuple[dict[str, Any], ...]
    expected_sha256: str | None = None  # from a previous run: reuse the file if it matches


def _channel_file(ctx: _Context, row: Mapping[str, Any], channel: int) -> str:
    from rxdata.images import channel_path

    dataset = row["dataset"] if ctx.layout == "kaggle" else None
    return channel_path(
        ctx.images_root,
        dataset,
        row["experiment"],
        row["plate"],
        row["well"],
        row["site"],
        channel,
        "kaggle" if ctx.layout == "kaggle" else "full",
    )


class _BadSite(Exception):
    """A site that cannot be converted: why, and which file (internal)."""

    def __init__(self, error: ImageNotFoundError | ImageDecodeError, path: str) -> None:
        super().__init__(str(error))
        self.error, self.path = error, path


def _load_site(ctx: _Context, row: Mapping[str, Any]) -> tuple[list[bytes] | None, Any]:
    """Read, check and (raw encoding) decode one site's six channels; raise _BadSite."""
    from rxdata.images import inspect_png, read_png

    blobs: list[bytes] = []
    missing: list[str] = []
    paths = [_channel_file(ctx, row, ch) for ch in CHANNELS]
    for path in paths:
        try:
            blobs.append(_io.read_bytes(path))
        except (FileNotFoundError, IsADirectoryError):
            missing.append(path)
    if len(missing) == len(CHANNELS):
        raise _BadSite(
            ImageNotFoundError(
                f"site {row['site_id']} is in the metadata but has no images (expected "
                f"{missing[0]} and its 5 siblings)"
            ),
            missing[0],
        )
    if missing:
        chans = ", ".join(m.rsplit("_w", 1)[-1].removesuffix(".png") for m in missing)
        raise _BadSite(
            ImageNotFoundError(
                f"site {row['site_id']} lacks channel(s) {chans}: {missing[0]} not found"
            ),
            missing[0],
        )
    pixels = None
    if ctx.encoding == "raw":
        pixels = np.empty((*ctx.image_shape, len(CHANNELS)), dtype=np.uint8)
    for i, (path, blob) in enumerate(zip(paths, blobs, strict=True)):
        try:
            if pixels is not None:
                pixels[:, :, i] = read_png(blob, expected_shape=ctx.image_shape, path=path)
            elif ctx.validate or ctx.decode:
                inspect_png(blob, path, expected_shape=ctx.image_shape)
                if ctx.decode:
                    read_png(blob, expected_shape=ctx.image_shape, path=path)
        except ImageDecodeError as err:
            raise _BadSite(err, path) from err
    return (None, pixels) if pixels is not None else (blobs, None)


def _examples(
    ctx: _Context, task: _Task, written: list[str], skipped: list[SkippedSite]
) -> Iterator[bytes]:
    from rxdata.tfrecord import encode_example

    height, width = ctx.image_shape
    for row in task.rows:
        try:
            pngs, pixels = _load_site(ctx, row)
        except _BadSite as bad:
            if ctx.on_error == "raise":
                raise ConvertError(
                    f"site {row['site_id']} (shard {task.spec.path}): {bad}. "
                    "Fix or remove the file, or pass on_error='skip' "
                    "(--on-error skip) to convert the rest and report it"
                ) from bad.error
            skipped.append(
                SkippedSite(
                    str(row["site_id"]), str(bad), bad.path, task.spec.path, str(row["dataset"])
                )
            )
            continue
        if pngs is not None:
            example = encode_example(row, pngs=pngs, height=height, width=width)
        else:
            example = encode_example(row, image=pixels, height=height, width=width)
        written.append(str(row["site_id"]))
        yield example


def _progress_path(output_dir: str, shard_path: str) -> str:
    return _io.join(output_dir, PROGRESS_DIR, shard_path.replace("/", "__") + ".json")


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a local or remote file, read in 4 MiB blocks.

    Example:
        >>> open("x.bin", "wb").write(b"abc")
        3
        >>> file_sha256("x.bin")[:16]
        'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    if _io.is_remote(path):
        import tensorflow as tf  # remote paths only

        with tf.io.gfile.GFile(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    else:
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def _reuse(ctx: _Context, task: _Task) -> ShardRecord | None:
    """The record of a previous run's shard if its file is intact, else None."""
    if task.expected_sha256 is None:
        return None
    out = _io.join(ctx.output_dir, task.spec.path)
    record_path = _progress_path(ctx.output_dir, task.spec.path)
    if not _io.exists(out) or not _io.exists(record_path):
        return None
    record = ShardRecord.from_json(json.loads(_io.read_bytes(record_path)))
    if record.sha256 != task.expected_sha256 or file_sha256(out) != record.sha256:
        log.warning("shard %s does not match its record; rewriting it", task.spec.path)
        return None
    return dataclasses.replace(record, reused=True)


def _write_shard_task(task: _Task, ctx: _Context) -> ShardRecord:
    """Write (or re-use) one planned shard and leave its progress record; used by both runners."""
    from rxdata.tfrecord import write_shard

    reused = _reuse(ctx, task)
    if reused is not None:
        return reused
    out = _io.join(ctx.output_dir, task.spec.path)
    _io.makedirs(posixpath.dirname(out) if _io.is_remote(out) else os.path.dirname(out))
    written: list[str] = []
    skipped: list[SkippedSite] = []
    import tensorflow as tf

    try:
        info = write_shard(
            out,
            _examples(ctx, task, written, skipped),
            compression=ctx.compression,  # type: ignore[arg-type]
        )
    except (OSError, tf.errors.OpError) as err:  # a full disk, a lost bucket, permissions
        raise ConvertError(
            f"writing shard {out} failed: {err}; no partial shard was left and complete "
            "shards are kept: fix the cause (free space, permissions) and re-run the same "
            "command to resume"
        ) from err
    record = ShardRecord(
        path=task.spec.path,
        dataset=task.spec.dataset,
        count=int(info.count),
        sha256=str(info.sha256),
        size=int(info.size),
        site_ids=tuple(written),
        skipped=tuple(skipped),
    )
    if record.count != len(written):
        raise ConvertError(f"shard {out}: wrote {record.count} examples for {len(written)} sites")
    _io.makedirs(_io.join(ctx.output_dir, PROGRESS_DIR))
    _io.write_bytes_atomic(
        _progress_path(ctx.output_dir, task.spec.path), json.dumps(record.to_json()).encode()
    )
    return record


# --- the manifest ---------------------------------------------------------------------------


def read_manifest(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Load ``OUTPUT_DIR/manifest.json``.

    Raises:
        FileNotFoundError: No manifest in ``output_dir``.
        RecordError: The manifest is not a valid rxdata-convert manifest.

    Example:
        >>> try:
        ...     read_manifest("no-such-dir")
        ... except FileNotFoundError as err:
        ...     print("missing")
        missing
    """
    path = _io.join(output_dir, MANIFEST_NAME)
    try:
        raw = _io.read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no manifest; is this an rxdata-convert output directory?"
        ) from None
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise RecordError(
            f"{path}: not an rxdata-convert manifest (format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r})"
        )
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise RecordError(
            f"{path}: manifest format_version {manifest.get('format_version')!r}, "
            f"this rxdata reads {MANIFEST_VERSION}"
        )
    return manifest


def _plan_json(plan: Sequence[ShardSpec]) -> list[dict[str, Any]]:
    return [{"path": s.path, "dataset": s.dataset, "site_ids": list(s.site_ids)} for s in plan]


def _plan_digest(plan: Sequence[ShardSpec]) -> str:
    return hashlib.sha256(json.dumps(_plan_json(plan), sort_keys=True).encode()).hexdigest()


def _manifest(
    options: ConvertOptions,
    image_shape: tuple[int, int],
    plan: Sequence[ShardSpec],
    layout: str,
    records: Sequence[ShardRecord] | None,
    orphans: Sequence[SkippedSite],
) -> dict[str, Any]:
    from rxdata import __version__

    body: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "rxdata_version": __version__,
        "complete": records is not None,
        "options": {**options.output_fields(), "image_shape": list(image_shape)},
        "layout": layout,
        "channels": list(CHANNELS),
        "plan_sha256": _plan_digest(plan),
        "n_shards": len(plan),
        "n_planned_sites": sum(len(s.site_ids) for s in plan),
    }
    if records is None:
        body["shards"] = _plan_json(plan)
        body["orphan_images"] = [dataclasses.asdict(o) for o in orphans]
        return body
    body["n_sites"] = sum(r.count for r in records)
    body["n_skipped"] = sum(len(r.skipped) for r in records)
    body["orphan_images"] = [dataclasses.asdict(o) for o in orphans]
    body["shards"] = [r.to_json() for r in records]
    return body


def _write_json(path: str, body: Mapping[str, Any]) -> None:
    _io.write_bytes_atomic(path, (json.dumps(body, indent=1) + "\n").encode())


def _write_report(path: str, skipped: Sequence[SkippedSite]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for s in skipped:
        writer.writerow(s.row())
    _io.write_bytes_atomic(path, buf.getvalue().encode())


def _finalize(
    output_dir: str,
    options: ConvertOptions,
    image_shape: tuple[int, int],
    plan: Sequence[ShardSpec],
    layout: str,
    records: Sequence[ShardRecord],
    orphans: Sequence[SkippedSite],
) -> dict[str, Any]:
    """Write the complete manifest and the report, and drop the progress records."""
    by_path = {r.path: r for r in records}
    missing = [s.path for s in plan if s.path not in by_path]
    if missing:
        raise ConvertError(
            f"{len(missing)} planned shards were not written, e.g. {missing[0]}; "
            "re-run the same command to finish them"
        )
    ordered = [by_path[s.path] for s in plan]
    body = _manifest(options, image_shape, plan, layout, ordered, orphans)
    _write_json(_io.join(output_dir, MANIFEST_NAME), body)
    skipped = [s for r in ordered for s in r.skipped] + list(orphans)
    report = _io.join(output_dir, REPORT_NAME)
    if skipped:
        _write_report(report, skipped)
    elif _io.exists(report):
        _io.remove(report)
    for spec in plan:
        record = _progress_path(output_dir, spec.path)
        if _io.exists(record):
            _io.remove(record)
    return body


# --- the run --------------------------------------------------------------------------------


def find_metadata(images_root: str | os.PathLike[str]) -> str:
    """The metadata folder inside or beside ``images_root``.

    Looks for ``metadata.csv``, ``train.csv`` or ``test.csv`` in ``images_root``, its
    ``metadata/`` folder, its parent, and the parent's ``metadata/`` folder, in this order.

    Raises:
        MetadataError: None of them holds metadata.

    Example:
        >>> import os
        >>> os.makedirs("data/images"); open("data/metadata.csv", "w").close()
        >>> os.path.basename(find_metadata("data/images"))
        'data'
    """
    images_root = os.fspath(images_root)
    names = ("metadata.csv", "train.csv", "test.csv")
    root = images_root.rstrip("/") or images_root
    parent = (
        posixpath.dirname(root) if _io.is_remote(root) else os.path.dirname(os.path.abspath(root))
    )
    candidates = [root, _io.join(root, "metadata"), parent, _io.join(parent, "metadata")]
    for folder in candidates:
        if any(_io.exists(_io.join(folder, n)) for n in names):
            return folder
    raise MetadataError(
        f"no metadata found beside or inside {images_root} (looked for "
        f"{', '.join(names)} in {', '.join(candidates)}); pass metadata= "
        "(--metadata PATH)"
    )


def _load_metadata(
    metadata: pd.DataFrame | str | os.PathLike[str] | None, images_root: str
) -> pd.DataFrame:
    if isinstance(metadata, pd.DataFrame):
        return metadata
    from rxdata.metadata import read_metadata

    path = find_metadata(images_root) if metadata is None else os.fspath(metadata)
    return read_metadata(path)


def _detect_layout(images_root: str, datasets: Sequence[str]) -> str:
    if _io.isdir(_io.join(images_root, "images")):
        return "full"
    if any(_io.isdir(_io.join(images_root, ds)) for ds in datasets):
        return "kaggle"
    raise ConvertError(
        f"{images_root} holds neither the Kaggle layout ({'/, '.join(datasets)}/ "
        "folders) nor the full release's images/ folder"
    )


def _rows(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rec in df.to_dict(orient="records"):
        row = {
            str(k): (None if pd.isna(v) else v.item() if isinstance(v, np.generic) else v)
            for k, v in rec.items()
        }
        out[str(row["site_id"])] = row
    return out


def _orphans(images_root: str, metadata: pd.DataFrame) -> list[SkippedSite]:
    """Sites with images under IMAGES_ROOT but no row in the (unfiltered) metadata."""
    from rxdata.images import channel_path
    from rxdata.metadata import scan_images

    scan = scan_images(images_root)
    for path in scan.unparsed[:20]:
        log.warning("ignoring %s: not an RxRx1 channel image name", path)
    sites = scan.sites
    unknown = sites[~sites["site_id"].astype(str).isin(set(metadata["site_id"].astype(str)))]
    out: list[SkippedSite] = []
    for rec in unknown.to_dict(orient="records"):
        dataset = None if pd.isna(rec["dataset"]) else str(rec["dataset"])
        path = channel_path(
            images_root,
            dataset,
            str(rec["experiment"]),
            int(rec["plate"]),
            str(rec["well"]),
            int(rec["site"]),
            int(rec["channels"][0]),
            scan.layout,
        )
        out.append(
            SkippedSite(
                str(rec["site_id"]), f"image without metadata: {path}", path, "", dataset or ""
            )
        )
    return out


def _infer_shape(
    ctx: _Context, plan: Sequence[ShardSpec], rows: Mapping[str, Mapping[str, Any]]
) -> tuple[int, int]:
    """The most common image size among the first readable images of a few sites.

    Several sites vote so that one odd-sized file does not set the size for all the others
    (it is reported instead). Deterministic: the sites are taken in plan order.
    """
    from collections import Counter

    from rxdata.images import inspect_png

    votes: Counter[tuple[int, int]] = Counter()
    site_ids = (site_id for spec in plan for site_id in spec.site_ids)
    for tried, site_id in enumerate(site_ids, 1):
        for ch in CHANNELS:
            path = _channel_file(ctx, rows[site_id], ch)
            try:
                votes[inspect_png(_io.read_bytes(path), path).shape] += 1
                break
            except (FileNotFoundError, ImageDecodeError):
                continue
        if sum(votes.values()) >= 5 or tried >= 100:
            break
    if not votes:
        raise ConvertError(
            f"no readable channel image among the first sites under {ctx.images_root}; "
            "check the path, or pass image_shape=(height, width)"
        )
    return votes.most_common(1)[0][0]


class _Progress:
    """A tqdm bar (sites, sites/s, ETA), or a log line every 30 s when not on a terminal."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        self.total, self.done, self.start, self.last = total, 0, time.monotonic(), 0.0
        bar = enabled is True or (enabled is None and sys.stderr.isatty())
        self.bar: Any = None
        self.log_lines = enabled is None and not bar
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="site", desc="rxdata-convert", smoothing=0.1)
            self.log_lines = False

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        now = time.monotonic()
        if self.log_lines and (now - self.last >= _LOG_EVERY_S or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info(
                "%d/%d sites (%.1f%%), %.1f sites/s, ETA %.0f s",
                self.done,
                self.total,
                100 * self.done / max(self.total, 1),
                rate,
                eta,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_local(
    tasks: Sequence[_Task], ctx: _Context, workers: int, progress: _Progress
) -> list[ShardRecord]:
    records: list[ShardRecord] = []
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            records.append(_write_shard_task(task, ctx))
            progress.update(len(task.spec.site_ids))
        return records
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # spawn: workers must not inherit a parent's TensorFlow threads (fork is unsafe then).
    mp = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=mp) as pool:
        futures = {pool.submit(_write_shard_task, t, ctx): t for t in tasks}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    try:
                        records.append(fut.result())
                    except BrokenProcessPool as err:
                        raise ConvertError(
                            f"a worker process died while writing {futures[fut].spec.path} "
                            "(killed, or out of memory); completed shards are kept: re-run "
                            "the same command to resume"
                        ) from err
                    progress.update(len(futures[fut].spec.site_ids))
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return records


def convert(
    images_root: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    metadata: pd.DataFrame | str | os.PathLike[str] | None = None,
    options: ConvertOptions | None = None,
    **overrides: Any,
) -> ConvertResult:
    """Convert the RxRx1 PNGs under ``images_root`` to TFRecord shards in ``output_dir``.

    Re-running the same call resumes an interrupted run (complete shards are kept after
    their sha256 is checked). See the module docstring for the contract and
    ``docs/convert.md`` for the output format.

    Args:
        images_root: Folder with the Kaggle layout (``train/``, ``test/``) or the full
            release (``images/``); local or ``gs://``.
        output_dir: Where shards, ``manifest.json`` and ``skipped.csv`` go.
        metadata: The site table, or a path :func:`rxdata.read_metadata` reads; default:
            the CSVs found inside or beside ``images_root``.
        options: A :class:`ConvertOptions`; ``overrides`` replace its fields.
        **overrides: Field values of :class:`ConvertOptions`, e.g. ``encoding="raw"``.

    Returns:
        What was written (shards, skipped sites, report path).

    Raises:
        ConvertError: A site could not be converted with ``on_error="raise"`` (the message
            names the file), or a worker died.
        OutputExistsError: ``output_dir`` holds a conversion with other options or metadata.
        OptionsError: An option is invalid.
        MetadataError: The metadata cannot be found or read.

    Example:
        >>> from rxdata.synthetic import SyntheticOptions, generate
        >>> root = generate("rxrx1-tiny", SyntheticOptions.tiny(seed=1))
        >>> result = convert(root, "tfrecords", datasets=("test",), workers=1)
        >>> result.n_sites, [s.path for s in result.shards]
        (112, ['random-42/test/001.tfrecord'])
    """
    start = time.monotonic()
    base = options or ConvertOptions()
    if not isinstance(base, ConvertOptions):
        raise OptionsError(f"options={base!r} must be a ConvertOptions")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ConvertOptions)})
    if unknown:
        raise OptionsError(
            f"unknown option(s) {unknown}; allowed: "
            f"{[f.name for f in dataclasses.fields(ConvertOptions)]}"
        )
    opts = dataclasses.replace(base, **overrides)
    root = os.fspath(images_root)
    out_dir = os.fspath(output_dir)
    md = _load_metadata(metadata, root)
    plan = plan_shards(md, opts)
    if not plan:
        raise ConvertError(
            f"no sites to convert: the metadata has none in datasets="
            f"{list(opts.datasets)}"
            f"{'' if opts.include_controls else ' (controls excluded)'}"
        )
    layout = _detect_layout(root, opts.datasets)
    rows = _rows(_select(md, opts))
    ctx = _Context(
        root,
        layout,
        out_dir,
        opts.encoding,
        opts.compression,
        opts.validate,
        opts.decode,
        opts.on_error,
        opts.image_shape or (0, 0),
    )
    shape = opts.image_shape or _infer_shape(ctx, plan, rows)
    ctx = dataclasses.replace(ctx, image_shape=shape)

    orphans = _orphans(root, md) if opts.scan else []
    if orphans and opts.on_error == "raise":
        more = f" and {len(orphans) - 1} more" if len(orphans) > 1 else ""
        raise ConvertError(
            f"{orphans[0].path} has no metadata row (site {orphans[0].site_id})"
            f"{more}; pass the matching metadata, or on_error='skip' "
            "(--on-error skip) to convert the rest and report them"
        )

    expected = _prepare_output(out_dir, opts, shape, plan, layout, orphans)
    tasks = [_Task(s, tuple(rows[i] for i in s.site_ids), expected.get(s.path)) for s in plan]
    total = sum(len(s.site_ids) for s in plan)
    log.info(
        "converting %d sites into %d shards in %s (%s runner, %s encoding)",
        total,
        len(plan),
        out_dir,
        opts.runner,
        opts.encoding,
    )
    if opts.runner == "beam":
        from rxdata._beam import run_beam, run_summary_path

        run_beam(tasks, ctx, opts, shape, layout, orphans)
        body = read_manifest(out_dir)
        if not body.get("complete"):
            raise ConvertError(f"the Beam pipeline finished without completing {out_dir}")
        records = [ShardRecord.from_json(s) for s in body["shards"]]
        summary = run_summary_path(out_dir)
        if _io.exists(summary):
            reused = set(json.loads(_io.read_bytes(summary)))
            _io.remove(summary)
            records = [dataclasses.replace(r, reused=r.path in reused) for r in records]
    else:
        progress = _Progress(total, opts.progress)
        try:
            records = _run_local(tasks, ctx, opts.n_workers, progress)
        finally:
            progress.close()
        _finalize(out_dir, opts, shape, plan, layout, records, orphans)
        order = {s.path: i for i, s in enumerate(plan)}
        records.sort(key=lambda r: order[r.path])
    skipped = tuple(s for r in records for s in r.skipped) + tuple(orphans)
    report = _io.join(out_dir, REPORT_NAME) if skipped else None
    result = ConvertResult(
        out_dir,
        _io.join(out_dir, MANIFEST_NAME),
        tuple(records),
        skipped,
        report,
        time.monotonic() - start,
    )
    log.info(
        "wrote %d sites in %d shards (%d kept from a previous run), skipped %d, in %.1f s",
        result.n_sites,
        len(records),
        result.n_reused,
        len(skipped),
        result.elapsed_s,
    )
    return result


def _prepare_output(
    out_dir: str,
    opts: ConvertOptions,
    shape: tuple[int, int],
    plan: Sequence[ShardSpec],
    layout: str,
    orphans: Sequence[SkippedSite],
) -> dict[str, str]:
    """Check an existing output, write the initial manifest; return reusable checksums."""
    _io.makedirs(out_dir)
    manifest_path = _io.join(out_dir, MANIFEST_NAME)
    fresh = _manifest(opts, shape, plan, layout, None, orphans)
    expected: dict[str, str] = {}
    if _io.exists(manifest_path):
        old = read_manifest(out_dir)
        same = (
            old.get("options") == fresh["options"]
            and old.get("plan_sha256") == fresh["plan_sha256"]
        )
        if not same and not opts.overwrite:
            what = (
                "options"
                if old.get("options") != fresh["options"]
                else "metadata (a different shard plan)"
            )
            raise OutputExistsError(
                f"{out_dir} holds a conversion made with different {what}: "
                f"{old.get('options')} vs now {fresh['options']}; pass overwrite=True "
                "(--overwrite) to replace it, or choose another output directory"
            )
        if not same:
            _remove_previous(out_dir, old)
        else:
            if old.get("complete"):
                # Bring the complete run's records back as progress records to re-check.
                _io.makedirs(_io.join(out_dir, PROGRESS_DIR))
                for entry in old["shards"]:
                    _io.write_bytes_atomic(
                        _progress_path(out_dir, entry["path"]), json.dumps(entry).encode()
                    )
            for spec in plan:
                record = _progress_path(out_dir, spec.path)
                if _io.exists(record):
                    expected[spec.path] = str(json.loads(_io.read_bytes(record))["sha256"])
    else:
        clash = [s.path for s in plan if _io.exists(_io.join(out_dir, s.path))]
        if clash and not opts.overwrite:
            raise OutputExistsError(
                f"{out_dir} has no manifest but already holds "
                f"{_io.join(out_dir, clash[0])}; pass overwrite=True "
                "(--overwrite) or choose another output directory"
            )
    _remove_stale_temporaries(out_dir, plan)
    _write_json(manifest_path, fresh)
    return expected


def _remove_stale_temporaries(out_dir: str, plan: Sequence[ShardSpec]) -> None:
    """Delete temporary files a killed run left (shards, progress records, manifest)."""
    patterns = [
        _io.join(out_dir, f"{MANIFEST_NAME}.tmp-*"),
        _io.join(out_dir, f"{REPORT_NAME}.tmp-*"),
        _io.join(out_dir, PROGRESS_DIR, "*.tmp-*"),
    ]
    for folder in sorted({posixpath.dirname(s.path) for s in plan}):
        base = _io.join(out_dir, *folder.split("/")) if folder else out_dir
        patterns.append(_io.join(base, ".*.tfrecord.tmp-*"))
    for pattern in patterns:
        for tmp in _io.glob(pattern):
            log.info("removing %s, left by an interrupted run", tmp)
            _io.remove(tmp)


def _remove_previous(out_dir: str, old: Mapping[str, Any]) -> None:
    for entry in old.get("shards", []):
        for path in (
            _io.join(out_dir, str(entry["path"])),
            _progress_path(out_dir, str(entry["path"])),
        ):
            if _io.exists(path):
                _io.remove(path)
    report = _io.join(out_dir, REPORT_NAME)
    if _io.exists(report):
        _io.remove(report)


def write_tfrecords(
    metadata: pd.DataFrame | str | os.PathLike[str] | None,
    images_root: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    **options: Any,
) -> ConvertResult:
    """Write TFRecord shards for exactly the sites of ``metadata``.

    The same as :func:`convert` with the metadata first, for converting a selection of
    sites; one difference: ``scan`` defaults to False here, since images of sites left
    out of the selection are expected, not "images without metadata".

    Args:
        metadata: The site table (or a path to read it from; ``None`` to find it).
        images_root: Folder of the channel PNGs (Kaggle or full layout).
        output_dir: Output folder.
        **options: Fields of :class:`ConvertOptions`.

    Returns:
        The :class:`ConvertResult`.

    Example:
        >>> import rxdata
        >>> from rxdata.synthetic import SyntheticOptions, generate
        >>> root = generate("rxrx1-tiny", SyntheticOptions.tiny(seed=1))
        >>> md = rxdata.read_metadata(root)
        >>> one = md[md["experiment"] == "HEPG2-01"]
        >>> write_tfrecords(one, root, "out", workers=1).n_sites
        56
    """
    options.setdefault("scan", False)
    return convert(images_root, output_dir, metadata=metadata, **options)


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        output_dir: The directory checked.
        n_shards: Shards checked.
        n_sites: Examples read.
        problems: One line per mismatch (empty when everything matched).
        decoded: Whether every image was decoded.
    """

    output_dir: str
    n_shards: int
    n_sites: int
    problems: tuple[str, ...] = field(default_factory=tuple)
    decoded: bool = False

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """A human-readable report.

        Example:
            >>> print(VerifyReport("out", 2, 10).summary())
            out: OK, 2 shards, 10 sites verified (checksums, counts, site ids)
        """
        what = "checksums, counts, site ids" + (", decoded images" if self.decoded else "")
        if self.ok:
            return (
                f"{self.output_dir}: OK, {self.n_shards} shards, {self.n_sites} sites "
                f"verified ({what})"
            )
        lines = [
            f"{self.output_dir}: {len(self.problems)} problem(s) in {self.n_shards} "
            f"shards, {self.n_sites} sites read ({what}):"
        ]
        lines += [f"  - {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        return "\n".join(lines)


def _check_examples(
    path: str, entry: Mapping[str, Any], shape: tuple[int, int], decode: bool, problems: list[str]
) -> list[str]:
    from rxdata.tfrecord import read_tfrecord

    ids: list[str] = []
    reader = read_tfrecord(path, on_error="skip", decode=decode)
    for ex in reader:
        site_id = f"{ex['id_code']}_{ex['site']}"
        ids.append(site_id)
        got = (ex["height"], ex["width"], ex["channels"])
        if got != (*shape, len(CHANNELS)):
            problems.append(
                f"{entry['path']}: example {len(ids) - 1} ({site_id}) is "
                f"{got[0]}x{got[1]}x{got[2]}, expected "
                f"{shape[0]}x{shape[1]}x{len(CHANNELS)}"
            )
    problems.extend(f"{entry['path']}: {msg}" for msg in reader.errors)
    return ids


def verify(
    output_dir: str | os.PathLike[str],
    *,
    decode: bool = False,
    metadata: pd.DataFrame | str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Re-read a conversion's shards and check them against its manifest and metadata.

    Checks that the conversion completed, that every shard exists with the recorded size
    and sha256, that it holds the recorded number of examples with the recorded site ids,
    that no site appears twice, and, with ``metadata``, that every selected site of the
    metadata is either written or reported skipped and that nothing else was written.

    Args:
        output_dir: A directory written by :func:`convert`.
        decode: Also decode every image and check its size (slow).
        metadata: The site table or a path to it, to check the site set against.
        progress: Called with the number of sites of each shard checked.

    Returns:
        A :class:`VerifyReport`; ``report.ok`` is False when anything mismatched.

    Raises:
        FileNotFoundError: ``output_dir`` has no manifest.

    Example:
        >>> try:
        ...     verify("no-such-dir")
        ... except FileNotFoundError:
        ...     print("no manifest")
        no manifest
    """
    out_dir = os.fspath(output_dir)
    manifest = read_manifest(out_dir)
    problems: list[str] = []
    if not manifest.get("complete"):
        problems.append(
            "the conversion did not complete (manifest says complete=false); "
            "re-run the same rxdata-convert command to finish it"
        )
        return VerifyReport(out_dir, 0, 0, tuple(problems), decode)
    opts = manifest["options"]
    shape = (int(opts["image_shape"][0]), int(opts["image_shape"][1]))
    seen: dict[str, str] = {}
    n_sites = 0
    for entry in manifest["shards"]:
        path = _io.join(out_dir, entry["path"])
        if not _io.exists(path):
            problems.append(f"{entry['path']}: missing (manifest lists {entry['count']} sites)")
            continue
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            problems.append(
                f"{entry['path']}: sha256 {digest[:12]}... differs from the "
                f"manifest's {entry['sha256'][:12]}...: the file changed"
            )
        ids = _check_examples(path, entry, shape, decode, problems)
        n_sites += len(ids)
        if len(ids) != entry["count"]:
            problems.append(f"{entry['path']}: {len(ids)} examples, manifest says {entry['count']}")
        if ids != list(entry["site_ids"])[: len(ids)] or len(ids) != len(entry["site_ids"]):
            problems.append(f"{entry['path']}: site ids differ from the manifest's")
        for site_id in ids:
            if site_id in seen:
                problems.append(f"{site_id}: written twice ({seen[site_id]} and {entry['path']})")
            seen[site_id] = entry["path"]
        if progress is not None:
            progress(len(ids))
    if metadata is not None:
        md = metadata if isinstance(metadata, pd.DataFrame) else _load_metadata(metadata, "")
        sel = ConvertOptions(
            datasets=tuple(opts["datasets"]), include_controls=bool(opts["include_controls"])
        )
        expected = set(_select(md, sel)["site_id"].astype(str))
        skipped = {str(s["site_id"]) for e in manifest["shards"] for s in e.get("skipped", ())}
        lost = sorted(expected - set(seen) - skipped)
        extra = sorted(set(seen) - expected)
        if lost:
            problems.append(
                f"{len(lost)} site(s) of the metadata are neither written nor "
                f"reported skipped, e.g. {lost[:5]}"
            )
        if extra:
            problems.append(
                f"{len(extra)} written site(s) are not in the metadata, e.g. {extra[:5]}"
            )
    return VerifyReport(out_dir, len(manifest["shards"]), n_sites, tuple(problems), decode)

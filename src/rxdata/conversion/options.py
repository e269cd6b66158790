"""Options of a conversion (:class:`ConvertOptions`) and the names of its output files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rxdata.errors import OptionsError, ParseError, option_text
from rxdata.naming import DATASETS, normalize_experiment

STRATEGIES = ("random", "by_exp_plate_site", "by_experiment")
"""Ways to group sites into shards (see :func:`plan_shards`)."""
ENCODINGS = ("png", "raw")
"""``png``: the source PNG bytes of each channel; ``raw``: decoded ``uint8`` pixels."""
COMPRESSIONS = ("none", "gzip", "zlib")
"""TFRecord compression of the shard files."""
ON_ERROR = ("raise", "skip")
RUNNERS = ("local", "beam", "dask")
"""``local``: a process pool here; ``beam``: Apache Beam; ``dask``: a Dask cluster."""
DASK_SCHEMES = ("tcp", "tls", "ucx", "inproc", "ws", "wss")
"""Address schemes of ``dask.distributed`` schedulers (``dask_address``)."""

MANIFEST_NAME = "manifest.json"
"""File name of the manifest in the output directory."""
REPORT_NAME = "skipped.csv"
"""File name of the skipped-sites report in the output directory."""
PROGRESS_DIR = "_progress"
LOCK_NAME = ".rxdata-convert.lock"
"""File name of the lock a running conversion holds in its output directory."""
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


def _choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise OptionsError(
            f"{option_text(name, value)} is not allowed; choose one of {list(allowed)}"
        )


def _positive_int(name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise OptionsError(f"{option_text(name, value)} must be an integer >= {minimum}")


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
                    f"{option_text('beam_options', item)}: not of the form KEY=VALUE "
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


def _check_dask_address(address: object, runner: str, workers: int | None) -> None:
    if runner != "dask":
        raise OptionsError(
            f"dask_address={address!r} needs runner='dask' (--runner dask); runner={runner!r}"
        )
    scheme, sep, rest = address.partition("://") if isinstance(address, str) else ("", "", "")
    if not sep or scheme not in DASK_SCHEMES or not rest.strip():
        raise OptionsError(
            f"dask_address={address!r} is not a Dask scheduler address; expected "
            f"SCHEME://HOST:PORT with SCHEME one of {list(DASK_SCHEMES)}, "
            "e.g. 'tcp://10.0.0.5:8786'"
        )
    if workers is not None:
        raise OptionsError(
            f"workers={workers!r} has no effect with dask_address={address!r}: the cluster's "
            "workers write the shards; scale the cluster instead (or drop dask_address to "
            "start a LocalCluster of `workers` processes)"
        )


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
    # The local process pool needs no extra installation; "beam" and "dask" scale out.
    runner: str = "local"
    # runner="dask": the scheduler to submit to, e.g. "tcp://10.0.0.5:8786"; None starts a
    # LocalCluster of `workers` processes on this machine.
    dask_address: str | None = None
    # Extra Beam pipeline options (KEY=VALUE), e.g. runner=DataflowRunner, project=...
    beam_options: tuple[tuple[str, str], ...] = ()
    # Never destroy a previous conversion made with other options unless asked.
    overwrite: bool = False
    # PNG encoding: validate each file (rxdata.images.inspect_png: signature, chunk CRCs,
    # size, bit depth, and the IDAT stream inflated to exactly the header's size, so no
    # file TensorFlow would refuse at training time gets in); about 1 ms per image.
    validate: bool = True
    # PNG encoding: also decode every image (slow; what validation already refuses, plus
    # nothing a valid zlib stream can hide: kept for a full decode on request).
    decode: bool = False
    # Report images that have no metadata row (one listing of IMAGES_ROOT).
    scan: bool = True
    # (height, width) every image must have; None takes it from the first image found.
    image_shape: tuple[int, int] | None = None
    # None: a progress bar on a terminal, periodic log lines otherwise; True: always a
    # bar; False: neither.
    progress: bool | None = None
    # None: every experiment of the metadata; else only these, in either spelling
    # (``HUVEC-1`` or ``HUVEC-01``), kept in canonical spelling.
    experiments: tuple[str, ...] | None = None

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
        if self.dask_address is not None:
            _check_dask_address(self.dask_address, self.runner, self.workers)
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
        if self.experiments is not None:
            given = (self.experiments,) if isinstance(self.experiments, str) else self.experiments
            try:
                names = tuple(sorted({normalize_experiment(e) for e in given}))
            except (ParseError, TypeError) as err:
                raise OptionsError(
                    f"{option_text('experiments', self.experiments)}: {err}"
                ) from None
            if not names:
                raise OptionsError(f"{option_text('experiments', ())} is empty; use None for all")
            object.__setattr__(self, "experiments", names)

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
            # Only when set, so outputs of every experiment keep their manifests.
            **({"experiments": list(self.experiments)} if self.experiments else {}),
        }

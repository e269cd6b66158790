"""One shard, written by one worker: THE shard task every runner calls.

:func:`write_shard_task` takes a :class:`ShardTask` (a small picklable value holding the
shard's plan entry, every site's metadata row and the :class:`ShardContext`, i.e. all a
worker on another machine needs) and writes the shard whole, site by site (memory holds
one site's PNGs, never a shard), under a temporary name renamed into place when complete
(:func:`rxdata.tfrecord.write_shard`), so a shard file either is complete or does not
exist. It then leaves a progress record (``OUTPUT_DIR/_progress/``) that a resumed run
checks.

**What identifies a shard's content.** Each site's input identity (:func:`site_input`) is
a digest of its whole metadata row (so every label, well type, cell type and data set
value that goes into its record) and of its six channel files' size and modification
time in nanoseconds (``mtime_ns``, the identity make and rsync use: cheap, and it changes
whenever a file is written, copied without ``-p`` or touched). The shard's record keeps
them; a re-run keeps a shard only when its file still matches its checksum (its
``digest``, :data:`rxdata._io.DIGEST_ALGORITHM`), every site's
input identity is unchanged, and the previous run skipped none of its sites (skipped
sites are retried). Otherwise the shard is rewritten and the run says which inputs
changed. The local process pool, the Beam pipeline and any other runner call this same
function, so every runner writes the same bytes, shard for shard.

``encoding="png"`` copies each channel PNG's bytes after validating them with
:func:`rxdata.images.inspect_png` (signature, chunk CRCs, size, bit depth; no decode);
``encoding="raw"`` decodes to ``H*W*6`` bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from rxdata import _io
from rxdata.conversion.plan import ShardSpec
from rxdata.errors import (
    ConvertError,
    ImageDecodeError,
    ImageNotFoundError,
    ImageReadError,
    Option,
    RecordError,
)
from rxdata.naming import CHANNELS, site_image_paths
from rxdata.records import PROGRESS_DIR
from rxdata.roots import DataRoot

log = logging.getLogger(__name__)


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

    def to_json(self) -> dict[str, str]:
        """The manifest entry of this site (``dataclasses.asdict``, 50x faster)."""
        return dict(vars(self))

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


CONTENT_HASH = "xxh3_64"
"""The content hash recorded for every input file (:func:`content_hash`): XXH3, 64 bits.

It finds inputs replaced since the conversion (``verify --inputs``), not tampering: no
security is asked of it. Measured on the real RxRx1 PNGs (six 110 KB files per site):
0.008 ms of CPU per site, against 0.32 for SHA-256 and 0.47 for BLAKE2b
(``docs/performance.md``). 16 hex digits, as long as the SHA-256 prefix it replaced."""


@dataclass(frozen=True)
class ShardRecord:
    """A written shard, as recorded in the manifest.

    Attributes:
        path: Path relative to the output directory.
        dataset: ``train``/``test``.
        count: Number of examples (sites) in the file.
        digest: The file's checksum, ``ALGORITHM:HEX`` (:func:`rxdata._io.recorded_digest`):
            XXH3-128; ``sha256:HEX`` when read from an earlier version's record.
        size: File size in bytes.
        site_ids: The sites written, in order.
        skipped: Sites of the plan left out (``on_error="skip"``).
        reused: True if a resumed run found the shard already complete.
        site_inputs: Each planned site's input identity (:func:`site_input`), in plan
            order; a re-run rewrites the shard when one differs.
        site_contents: Each written site's six channel files' content hashes
            (:func:`content_hash`, comma-separated, in channel order), in the order of
            ``site_ids``. What ``verify --inputs`` re-hashes.
        content_hash: The name of the hash in ``site_contents`` (:data:`CONTENT_HASH`;
            ``"sha256"`` in records written before it was named).
        changed: Why a re-run rewrote the shard instead of keeping it (which sites'
            metadata rows or images changed, skipped sites retried); not in the manifest.
    """

    path: str
    dataset: str
    count: int
    digest: str
    size: int
    site_ids: tuple[str, ...]
    skipped: tuple[SkippedSite, ...] = ()
    reused: bool = False
    site_inputs: tuple[str, ...] = ()
    site_contents: tuple[str, ...] = ()
    content_hash: str = CONTENT_HASH
    changed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The manifest entry of this shard."""
        return {
            "path": self.path,
            "dataset": self.dataset,
            "count": self.count,
            _io.DIGEST_KEY: self.digest,
            "size": self.size,
            "site_ids": list(self.site_ids),
            "skipped": [s.to_json() for s in self.skipped],
            "site_inputs": list(self.site_inputs),
            "site_contents": list(self.site_contents),
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "a shard record") -> ShardRecord:
        """Read a manifest entry or progress record (inverse of :meth:`to_json`).

        Entries of earlier versions (``"sha256": HEX``) are read as ``sha256:HEX``.

        Raises:
            RecordError: The entry's checksum is missing or not one this rxdata knows
                (the message names ``where``, the file it was read from).
        """
        digest = _io.recorded_digest(d, where)
        if digest is None:
            raise RecordError(
                f"{where}: damaged record of shard {d.get('path')!r}: no checksum; re-run "
                "the convert command to rewrite it"
            )
        return cls(
            path=str(d["path"]),
            dataset=str(d["dataset"]),
            count=int(d["count"]),
            digest=digest,
            size=int(d["size"]),
            site_ids=tuple(str(s) for s in d["site_ids"]),
            skipped=tuple(SkippedSite(**s) for s in d.get("skipped", ())),
            site_inputs=tuple(str(s) for s in d.get("site_inputs", ())),
            site_contents=tuple(str(s) for s in d.get("site_contents", ())),
            content_hash=recorded_content_hash(d),
        )


@dataclass(frozen=True)
class ShardContext:
    """What a worker needs besides its shard: where the data is and how to encode it.

    Attributes:
        images_root: Folder (or ``gs://`` URL) of the channel PNGs.
        layout: ``"kaggle"`` or ``"full"``.
        output_dir: The conversion's output folder.
        encoding: ``"png"`` or ``"raw"``.
        compression: ``"none"``, ``"gzip"`` or ``"zlib"``.
        validate: Check each PNG (``png`` encoding).
        decode: Also decode each PNG (``png`` encoding).
        on_error: ``"raise"`` or ``"skip"``.
        image_shape: ``(height, width)`` every image must have.
    """

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
class ShardTask:
    """Everything needed to write one shard anywhere (picklable; JSON via :meth:`to_json`).

    Attributes:
        spec: The planned shard.
        rows: Each site's metadata row (plain JSON values), in write order.
        context: Paths and encoding.
        expected_digest: A previous run's checksum (``ALGORITHM:HEX``): re-use the file
            if it still matches.
    """

    spec: ShardSpec
    rows: tuple[dict[str, Any], ...]
    context: ShardContext
    expected_digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for job files read by remote workers)."""
        return {
            "spec": dataclasses.asdict(self.spec),
            "rows": list(self.rows),
            "context": dataclasses.asdict(self.context),
            "expected_digest": self.expected_digest,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ShardTask:
        """Inverse of :meth:`to_json`."""
        spec, ctx = d["spec"], dict(d["context"])
        ctx["image_shape"] = tuple(ctx["image_shape"])
        return cls(
            ShardSpec(spec["path"], spec["dataset"], tuple(spec["site_ids"])),
            tuple(d["rows"]),
            ShardContext(**ctx),
            d.get("expected_digest"),
        )


def site_files(ctx: ShardContext, row: Mapping[str, Any]) -> tuple[str, ...]:
    """Paths of a site's six channel PNGs, in channel order."""
    kaggle = ctx.layout == "kaggle"
    return _site_files(
        ctx.images_root,
        kaggle,
        row["dataset"] if kaggle else None,
        row["experiment"],
        row["plate"],
        row["well"],
        row["site"],
    )


def _site_files(
    images_root: str,
    kaggle: bool,
    dataset: str | None,
    experiment: str,
    plate: int,
    well: str,
    site: int,
) -> tuple[str, ...]:
    data = DataRoot(images_root, images_root, "kaggle" if kaggle else "full")
    dataset, experiment = _folder(data, dataset, experiment)
    relative = site_image_paths(dataset, experiment, plate, well, site, data.layout)
    # The six files share one folder: join it once (a third of this function's time).
    folder = data.join(relative[0].rpartition("/")[0])
    sep = "/" if _io.is_remote(folder) else os.sep
    return tuple(folder + sep + r.rpartition("/")[2] for r in relative)


def channel_file(ctx: ShardContext, row: Mapping[str, Any], channel: int) -> str:
    """Path of one channel PNG of a site's metadata row."""
    return site_files(ctx, row)[CHANNELS.index(channel)]


_LEGACY_CONTENT_HASH = "sha256"  # before CONTENT_HASH was named: 16 hex digits of SHA-256


def _sha256_16(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:16]


_CONTENT_HASHES: dict[str, Callable[[bytes], str]] = {
    "xxh3_64": xxhash.xxh3_64_hexdigest,
    _LEGACY_CONTENT_HASH: _sha256_16,
}


def recorded_content_hash(entry: Mapping[str, Any]) -> str:
    """The name of the content hash a shard's manifest entry (or progress record) used.

    Entries written before the hash was named hold 16 hex digits of SHA-256: ``"sha256"``.

    Example:
        >>> recorded_content_hash({"content_hash": "xxh3_64"}), recorded_content_hash({})
        ('xxh3_64', 'sha256')
    """
    return str(entry.get("content_hash", _LEGACY_CONTENT_HASH))


def content_hash(blob: bytes, name: str = CONTENT_HASH) -> str:
    """The content hash of an input file's bytes, by the hash ``name``.

    ``name`` is :data:`CONTENT_HASH` for new conversions, or the one a manifest records
    (``"sha256"``: the first 16 hex digits of SHA-256, in manifests of earlier versions).

    Raises:
        RecordError: ``name`` is not a hash this version knows (a newer rxdata's manifest).

    Example:
        >>> content_hash(b"abc"), content_hash(b"abc", "sha256")
        ('78af5f94892f3950', 'ba7816bf8f01cfea')
    """
    try:
        fn = _CONTENT_HASHES[name]
    except KeyError:
        raise RecordError(
            f"content hash {name!r} is not one this rxdata knows ({', '.join(_CONTENT_HASHES)}); "
            "the manifest was written by a newer rxdata: upgrade rxdata to check its inputs"
        ) from None
    return fn(blob)


# Each site asks for its experiment's folder six times; the answer is the same for the
# whole run, so a worker looks it up once (the one spelling rule: DataRoot.locate).
@functools.lru_cache(maxsize=256)
def _folder(data: DataRoot, dataset: str | None, experiment: str) -> tuple[str | None, str]:
    return data.locate(dataset, experiment)


class BadSite(Exception):
    """A site that cannot be converted: why, and which file (internal)."""

    def __init__(
        self, error: ImageNotFoundError | ImageDecodeError | ImageReadError, path: str
    ) -> None:
        super().__init__(str(error))
        self.error, self.path = error, path

    def __reduce__(self) -> tuple[type[BadSite], tuple[Any, str]]:
        # Crosses process boundaries inside a worker's error: pickle it by its arguments.
        return (BadSite, (self.error, self.path))


def load_site(
    ctx: ShardContext, row: Mapping[str, Any], paths: tuple[str, ...] | None = None
) -> tuple[list[bytes] | None, Any, str]:
    """Read, check and (raw encoding) decode one site's six channels; raise BadSite.

    Returns the PNG bytes (png encoding) or the pixels (raw), and the files' content
    hashes (:func:`content_hash`, comma-separated).
    """
    from rxdata.images import inspect_png, read_png

    blobs: list[bytes] = []
    missing: list[str] = []
    paths = site_files(ctx, row) if paths is None else paths
    for path in paths:
        try:
            blobs.append(_io.read_bytes(path))
        except FileNotFoundError:
            missing.append(path)
        except IsADirectoryError:
            raise BadSite(
                ImageReadError(
                    f"site {row['site_id']}: {path} is a directory, not a channel PNG; "
                    "move it away (or put the image there)"
                ),
                path,
            ) from None
        except OSError as err:  # an input problem (permissions, a symlink loop, I/O)
            raise BadSite(
                ImageReadError(
                    f"site {row['site_id']}: cannot read {path}: {err.strerror or err}; "
                    "fix the file (or its permissions)"
                ),
                path,
            ) from err
    if len(missing) == len(CHANNELS):
        raise BadSite(
            ImageNotFoundError(
                f"site {row['site_id']} is in the metadata but has no images (expected "
                f"{missing[0]} and its 5 siblings)"
            ),
            missing[0],
        )
    if missing:
        chans = ", ".join(m.rsplit("_w", 1)[-1].removesuffix(".png") for m in missing)
        raise BadSite(
            ImageNotFoundError(
                f"site {row['site_id']} lacks channel(s) {chans}: {missing[0]} not found"
            ),
            missing[0],
        )
    pixels = None
    if ctx.encoding == "raw":
        pixels = np.empty((*ctx.image_shape, len(CHANNELS)), dtype=np.uint8)
    for i, (path, blob) in enumerate(zip(paths, blobs, strict=True)):
        try:  # read_png runs inspect_png's checks (the one notion of a valid PNG) first
            if pixels is not None:
                pixels[:, :, i] = read_png(blob, expected_shape=ctx.image_shape, path=path)
            elif ctx.decode:
                read_png(blob, expected_shape=ctx.image_shape, path=path)
            elif ctx.validate:
                inspect_png(blob, path, expected_shape=ctx.image_shape)
        except ImageDecodeError as err:
            raise BadSite(err, path) from err
    contents = ",".join(content_hash(b) for b in blobs)
    return (None, pixels, contents) if pixels is not None else (blobs, None, contents)


def _examples(
    ctx: ShardContext,
    task: ShardTask,
    paths: list[tuple[str, ...]],
    written: list[str],
    skipped: list[SkippedSite],
    contents: list[str],
) -> Iterator[bytes]:
    from rxdata.tfrecord import encode_example

    height, width = ctx.image_shape
    for row, site_paths in zip(task.rows, paths, strict=True):
        try:
            pngs, pixels, content = load_site(ctx, row, site_paths)
        except BadSite as bad:
            if ctx.on_error == "raise":
                skip = Option("on_error", "skip")
                raise ConvertError(
                    f"site {row['site_id']} (shard {task.spec.path}): {bad}. "
                    f"Fix or remove the file, or pass {skip} to convert the rest and report it",
                    options=[skip],
                ) from bad.error
            skipped.append(
                SkippedSite(
                    str(row["site_id"]), str(bad), bad.path, task.spec.path, str(row["dataset"])
                )
            )
            continue
        contents.append(content)
        if pngs is not None:
            example = encode_example(row, pngs=pngs, height=height, width=width)
        else:
            example = encode_example(row, image=pixels, height=height, width=width)
        written.append(str(row["site_id"]))
        yield example


def progress_path(output_dir: str, shard_path: str) -> str:
    """Where a finished shard leaves its record while the run is incomplete.

    Example:
        >>> import os
        >>> progress_path("out", "random-42/train/001.tfrecord") == os.path.join(
        ...     "out", "_progress", "random-42__train__001.tfrecord.json")
        True
    """
    return _io.join(output_dir, PROGRESS_DIR, shard_path.replace("/", "__") + ".json")


def site_input(
    ctx: ShardContext, row: Mapping[str, Any], paths: tuple[str, ...] | None = None
) -> str:
    """A site's input identity: ``ROW:IMAGES``, digests of its metadata row and files.

    ``ROW`` covers every value of the row (what the record's features come from);
    ``IMAGES`` each channel file's ``(size, mtime_ns)``, or that it is missing or
    unreadable. Each part is the first 16 hex digits of a SHA-256.

    Example:
        >>> ctx = ShardContext("no-such-root", "kaggle", "out", "png", "none", True, False,
        ...     "raise", (8, 8))
        >>> row = {"site_id": "HEPG2-01_1_B02_1", "dataset": "train",
        ...     "experiment": "HEPG2-01", "plate": 1, "well": "B02", "site": 1, "sirna": 3}
        >>> a = site_input(ctx, row)
        >>> b = site_input(ctx, {**row, "sirna": 4})
        >>> a.split(":")[0] != b.split(":")[0], a.split(":")[1] == b.split(":")[1]
        (True, True)
    """
    row_json = json.dumps(dict(row), sort_keys=True, default=str, separators=(",", ":"))
    files: list[Any] = []
    for path in site_files(ctx, row) if paths is None else paths:
        try:
            files.append(_io.file_identity(path))
        except OSError as err:  # reported when the site is read
            files.append(f"unreadable: {err.errno}")
    files_json = json.dumps(files, separators=(",", ":"))
    return f"{_digest(row_json)}:{_digest(files_json)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _changes(task: ShardTask, previous: ShardRecord, inputs: tuple[str, ...]) -> list[str]:
    """What differs from the run that wrote ``previous`` (empty: nothing)."""
    if previous.skipped:
        ids = [s.site_id for s in previous.skipped]
        return [f"retrying {len(ids)} skipped site(s): {', '.join(ids[:5])}"]
    if len(previous.site_inputs) != len(inputs):
        return ["the previous run recorded no input identities (written by an older rxdata)"]
    changes: list[str] = []
    for site_id, old, new in zip(task.spec.site_ids, previous.site_inputs, inputs, strict=True):
        old_row, _, old_files = old.partition(":")
        new_row, _, new_files = new.partition(":")
        what = []
        if old_row != new_row:
            what.append("metadata row")
        if old_files != new_files:
            what.append("images")
        if what:
            changes.append(f"site {site_id}: {' and '.join(what)} changed")
    return changes


def _previous(ctx: ShardContext, task: ShardTask) -> ShardRecord | None:
    """The record a previous run left for this shard, if its file is intact; else None.

    A record of an earlier version (SHA-256) is checked by SHA-256 and comes back with
    the file's :data:`rxdata._io.DIGEST_ALGORITHM` checksum, hashed in the same pass: a
    kept shard is recorded as a new one would be.
    """
    if task.expected_digest is None:
        return None
    out = _io.join(ctx.output_dir, task.spec.path)
    record_path = progress_path(ctx.output_dir, task.spec.path)
    if not _io.isfile(out) or not _io.exists(record_path):
        return None
    try:
        record = ShardRecord.from_json(json.loads(_io.read_bytes(record_path)), record_path)
    except (RecordError, ValueError, KeyError, TypeError) as err:
        log.warning("%s is damaged (%s); rewriting shard %s", record_path, err, task.spec.path)
        return None
    if record.digest != task.expected_digest:  # the record is not the one the manifest read
        log.warning("%s is not the shard's recorded state; rewriting it", record_path)
        return None
    algorithm = _io.digest_algorithm(record.digest)
    found = _io.file_digests(out, list(dict.fromkeys((algorithm, _io.DIGEST_ALGORITHM))))
    if found[0] != record.digest:
        log.warning(
            "shard %s does not match its record (%s checksum %s, recorded %s); rewriting it",
            task.spec.path,
            algorithm,
            found[0],
            record.digest,
        )
        return None
    return dataclasses.replace(record, digest=found[-1])


def write_errors() -> tuple[type[BaseException], ...]:
    """What a failed shard write raises: OSError; TensorFlow's errors where it wrote.

    A worker writing uncompressed local shards never imports TensorFlow (rxdata frames
    and encodes the records): its import is seconds of CPU per worker process.
    """
    tf = sys.modules.get("tensorflow")
    return (OSError,) if tf is None else (OSError, tf.errors.OpError)


def write_failure_cause(err: BaseException) -> str:
    """The likely cause of a failed shard write, in words, for the message.

    Example:
        >>> import errno
        >>> write_failure_cause(OSError(errno.ENOSPC, "No space left on device"))
        'free space'
    """
    import errno

    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "free space"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permissions"
    if isinstance(err, FileNotFoundError):
        return (
            "a file being written vanished: another process removed it, e.g. a cleanup "
            "job or a program deleting files in this folder"
        )
    return "free space, permissions, the storage's state"


def write_shard_task(task: ShardTask) -> ShardRecord:
    """Write (or re-use) one planned shard and leave its progress record.

    Every runner (local processes, Beam, ...) calls this function with the tasks
    :func:`rxdata.conversion.convert` plans; it is safe to call in any process that
    reaches ``task.context.images_root`` and ``task.context.output_dir``. A shard whose
    file still matches ``task.expected_digest`` (a resumed run) is kept, not rewritten,
    when none of its sites' inputs changed (:func:`site_input`) and none was skipped.

    Args:
        task: The shard, its sites' metadata rows and the context.

    Returns:
        The shard's :class:`ShardRecord` (``reused=True`` when a previous file was kept).

    Raises:
        ConvertError: A site is bad with ``on_error="raise"`` (the message names the file),
            or writing failed (no partial shard is left).
    """
    from rxdata.tfrecord import write_shard

    ctx = task.context
    # Identify the inputs before reading them: a file changed meanwhile is seen next run.
    # Each site's paths are built once, for its identity and its read.
    paths = [site_files(ctx, row) for row in task.rows]
    inputs = tuple(site_input(ctx, row, p) for row, p in zip(task.rows, paths, strict=True))
    previous = _previous(ctx, task)
    changed: tuple[str, ...] = ()
    if previous is not None:
        changed = tuple(_changes(task, previous, inputs))
        if not changed:
            return dataclasses.replace(previous, reused=True)
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        log.warning(
            "rewriting shard %s: its input changed since the previous run (%s%s)",
            task.spec.path,
            "; ".join(changed[:5]),
            more,
        )
    out = _io.join(ctx.output_dir, task.spec.path)
    if _io.isdir(out):
        raise ConvertError(f"{out} is a directory where the shard goes: remove it and re-run")
    _io.makedirs(_io.dirname(out))
    written: list[str] = []
    skipped: list[SkippedSite] = []
    contents: list[str] = []
    try:
        info = write_shard(
            out,
            _examples(ctx, task, paths, written, skipped, contents),
            compression=ctx.compression,  # type: ignore[arg-type]
        )
    except write_errors() as err:  # a full disk, a lost bucket, permissions
        raise ConvertError(
            f"writing shard {out} failed: {err}; no partial shard was left and complete "
            f"shards are kept: fix the cause ({write_failure_cause(err)}) and re-run the "
            "same command to resume"
        ) from err
    record = ShardRecord(
        path=task.spec.path,
        dataset=task.spec.dataset,
        count=int(info.count),
        digest=str(info.digest),
        size=int(info.size),
        site_ids=tuple(written),
        skipped=tuple(skipped),
        site_inputs=inputs,
        site_contents=tuple(contents),
        changed=changed,
    )
    if record.count != len(written):
        raise ConvertError(f"shard {out}: wrote {record.count} examples for {len(written)} sites")
    try:
        _io.makedirs(_io.join(ctx.output_dir, PROGRESS_DIR))
        _io.write_bytes_atomic(
            progress_path(ctx.output_dir, task.spec.path), json.dumps(record.to_json()).encode()
        )
    except write_errors() as err:
        raise ConvertError(
            f"recording shard {out} as done failed: {err}; complete shards are kept: fix "
            f"the cause ({write_failure_cause(err)}) and re-run the same command to resume "
            "(this shard is written again)"
        ) from err
    return record

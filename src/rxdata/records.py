"""A conversion's output folder as one object: :class:`Records`, opened by :func:`open_records`.

``rxdata convert IMAGES OUT`` writes ``OUT/manifest.json`` beside its shards. Like a TFDS
builder with its ``DatasetInfo``, a :class:`Records` is read from that manifest and knows
everything the writer recorded: whether the conversion is complete, its strategy, seed,
encoding and image shape, its splits (``train`` and ``test``, the data sets it converted)
with their shard files and sites, the input identity of every site, and (read from one
record, on first use) the label space of the release it was converted from: the 2019
competition's class ids or the Kaggle re-release's ``sirna_N`` names. Readers ask it
instead of re-deriving any of this from file names.

Contract:

* :func:`open_records` takes the conversion folder (the one holding ``manifest.json``), a
  folder inside it (``OUT/random-42/train``: that conversion, restricted to the shards
  below it), or a folder above exactly one conversion. Several conversions below the
  folder, or none, is an error that names them / says what was looked for.
* :meth:`Records.files` gives the shard files of a split. A split the conversion does not
  have is an :class:`~rxdata.errors.OptionsError` naming the ones it has (as TFDS does).
* An incomplete conversion (stopped by Ctrl-C or a crash, still running, or an
  interrupted ``--overwrite``) is never read silently: :meth:`Records.files` raises an
  :class:`~rxdata.errors.IncompleteConversionError` that says what is missing and how to
  finish it, unless ``allow_incomplete=True``, which reads the finished shards and logs
  how many sites that is of how many planned.
* :func:`resolve_source` is what :func:`rxdata.make_dataset` calls first: a
  :class:`Records`, a folder or file patterns in, shard files out, with these checks.

Nothing here imports TensorFlow; remote folders (``gs://``) go through :mod:`rxdata._io`.

Example:
    >>> import json, os, tempfile
    >>> out = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(out, "random-42", "train"))
    >>> _ = open(os.path.join(out, "random-42", "train", "001.tfrecord"), "wb")
    >>> manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION,
    ...     "complete": True, "layout": "kaggle", "options": {"strategy": "random",
    ...     "seed": 42, "encoding": "png", "compression": "none", "image_shape": [8, 8]},
    ...     "shards": [{"path": "random-42/train/001.tfrecord", "dataset": "train",
    ...     "count": 2, "site_ids": ["HUVEC-01_1_B03_1", "HUVEC-01_1_B03_2"],
    ...     "digest": "xxh3_128:99aa06d3014798d86001c324468d497f", "size": 0}]}
    >>> _ = open(os.path.join(out, MANIFEST_NAME), "w").write(json.dumps(manifest))
    >>> records = open_records(out)
    >>> records.splits, records.image_shape, records.split_sizes
    (('train',), (8, 8), {'train': 2})
    >>> records.sites()["cell_type"].tolist()
    ['HUVEC', 'HUVEC']
    >>> try:
    ...     records.files("test")
    ... except OptionsError as err:
    ...     print(str(err).split(";")[0])
    split='test' is not a split of this conversion
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from rxdata import _io
from rxdata.errors import IncompleteConversionError, OptionsError, RecordError
from rxdata.labels import LabelRelease
from rxdata.naming import DATASETS, parse_site_id

if TYPE_CHECKING:  # pragma: no cover
    from rxdata.splits import Split

__all__ = [
    "LOCK_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "PROGRESS_DIR",
    "Records",
    "check_relative",
    "find_conversion",
    "inside",
    "open_records",
    "read_manifest",
    "resolve_source",
]

log = logging.getLogger(__name__)

#: File name of the manifest in a conversion's output folder.
MANIFEST_NAME = "manifest.json"
#: The manifest's ``format`` value and the ``format_version`` this rxdata writes. Version
#: 2 records each shard's checksum as ``"digest": "xxh3_128:HEX"``; version 1 (earlier
#: rxdata) as ``"sha256": HEX``, still read and checked (:func:`rxdata._io.recorded_digest`).
#: An rxdata that reads only version 1 refuses version 2 by its number, instead of finding
#: no ``sha256`` to check.
MANIFEST_FORMAT = "rxdata-convert-manifest"
MANIFEST_VERSION = 2
_READABLE_VERSIONS = (1, MANIFEST_VERSION)
#: Folder of the per-shard progress records of a conversion under way.
PROGRESS_DIR = "_progress"
#: File name of the lock a running conversion holds in its output folder.
LOCK_NAME = ".rxdata-convert.lock"

_DRIVE = re.compile(r"^[A-Za-z]:")

#: Columns of :meth:`Records.sites`.
SITE_COLUMNS = ("site_id", "id_code", "dataset", "experiment", "cell_type", "plate", "well",
                "site", "file")  # fmt: skip


def check_relative(path: object) -> str:
    """What makes ``path`` unfit as a path inside an output folder ('' when it is fine).

    A shard path read from a manifest is relative, ``/``-separated, without ``..``, ``.``
    or empty parts, backslashes, NUL or a drive; otherwise the manifest is damaged.

    Example:
        >>> check_relative("random-42/train/001.tfrecord")
        ''
        >>> check_relative("../victim.txt")
        "'../victim.txt' leaves the output folder (a '..' part)"
    """
    if not isinstance(path, str) or not path:
        return f"{path!r} is not a relative path"
    if path.startswith("/") or _DRIVE.match(path) or "://" in path:
        return f"{path!r} is absolute; shard paths are relative to the output folder"
    if "\\" in path or "\0" in path:
        return f"{path!r} holds a backslash or NUL; shard paths are '/'-separated"
    parts = path.split("/")
    if ".." in parts:
        return f"{path!r} leaves the output folder (a '..' part)"
    if "" in parts or "." in parts:
        return f"{path!r} has an empty or '.' part"
    return ""


def inside(output_dir: str | os.PathLike[str], relative: str) -> str:
    """The path of ``relative`` under ``output_dir``, checked to stay inside it.

    Raises:
        RecordError: ``relative`` is not a plain relative path (:func:`check_relative`),
            or one of its folders (or the file itself) is a symbolic link.

    Example:
        >>> inside("out", "random-42/test/001.tfrecord") == os.path.join(
        ...     "out", "random-42", "test", "001.tfrecord")
        True
    """
    problem = check_relative(relative)
    if problem:
        raise RecordError(problem)
    link = _io.first_link(output_dir, relative)
    if link is not None:
        raise RecordError(
            f"{relative!r} passes through the symbolic link {_io.join(output_dir, link)}; "
            "rxdata follows no link inside an output folder"
        )
    return _io.join(output_dir, *relative.split("/"))


def read_manifest(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Load ``OUTPUT_DIR/manifest.json``, refusing a damaged one.

    The one reader of a manifest: the conversion (resuming, ``--overwrite``, ``verify``)
    and every reader (:func:`open_records`, :func:`rxdata.make_dataset`,
    :class:`rxdata.sites.Sites`) go through it, so nothing a manifest names outside its
    folder is ever opened.

    Raises:
        FileNotFoundError: No manifest in ``output_dir``, or ``output_dir`` is a file.
        RecordError: The manifest is not a valid rxdata-convert manifest, or it is
            damaged: it is a symbolic link or a folder, a shard path is absolute, has
            a ``..`` part, or is not a string (:func:`check_relative`), or a shard's
            checksum is not one this rxdata knows (:func:`rxdata._io.recorded_digest`:
            ``"digest": "xxh3_128:HEX"``, or ``"sha256": HEX`` of earlier versions), or a
            shard of a complete conversion records none.

    Example:
        >>> try:
        ...     read_manifest("no-such-dir")
        ... except FileNotFoundError as err:
        ...     print("missing")
        missing
    """
    path = _io.join(output_dir, MANIFEST_NAME)
    if _io.first_link(output_dir, MANIFEST_NAME):  # never read what a link points to
        raise RecordError(
            f"{path}: damaged manifest: a symbolic link; rxdata follows no link inside an "
            "output folder. Remove it and re-run the conversion"
        )
    try:
        raw = _io.read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no manifest; is this an rxdata-convert output directory?"
        ) from None
    except NotADirectoryError:
        raise FileNotFoundError(
            f"{output_dir}: not a folder; give the rxdata-convert output directory"
        ) from None
    except IsADirectoryError:
        raise RecordError(f"{path}: damaged manifest: a folder, not a file") from None
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise RecordError(
            f"{path}: not an rxdata-convert manifest (format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r})"
        )
    version = manifest.get("format_version")
    if type(version) is not int or version not in _READABLE_VERSIONS:  # `true` is not 1
        raise RecordError(
            f"{path}: manifest format_version {manifest.get('format_version')!r}, "
            f"this rxdata reads {' and '.join(map(str, _READABLE_VERSIONS))}: a newer rxdata "
            "wrote it (upgrade rxdata), or re-run the convert command (with --overwrite)"
        )
    if not isinstance(manifest.get("complete"), bool):  # every reader asks "is it done?"
        raise RecordError(
            f"{path}: damaged manifest: complete is {manifest.get('complete')!r}, not true "
            "or false; re-run the conversion (with --overwrite) to replace it"
        )
    shards = manifest.get("shards")
    for i, entry in enumerate(shards if isinstance(shards, list) else [None]):
        problem = check_relative(entry.get("path") if isinstance(entry, dict) else None)
        if problem:  # nothing the manifest names outside the output is ever opened
            raise RecordError(
                f"{path}: damaged manifest: shards[{i}].path {problem}; re-run the "
                "conversion (with --overwrite) to replace it"
            )
        # a checksum this rxdata cannot check is refused, and so is none where one is due
        if _io.recorded_digest(entry, path) is None and manifest["complete"]:
            raise RecordError(
                f"{path}: damaged manifest: shards[{i}] ({entry['path']!r}) records no "
                "checksum, which every shard of a complete conversion has; re-run the "
                "conversion (with --overwrite) to replace it"
            )
    return manifest


def _progress_path(root: str, shard_path: str) -> str:
    # rxdata.conversion.shard.progress_path: the same name (tested to agree)
    return _io.join(root, PROGRESS_DIR, shard_path.replace("/", "__") + ".json")


def _lock_holder(root: str) -> str | None:
    """The running conversion holding ``root``'s lock, in words, or ``None``."""
    path = os.path.join(root, LOCK_NAME)
    if _io.is_remote(root) or not os.path.isfile(path):
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        try:  # a shared lock is granted unless a conversion holds its exclusive one
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            try:
                info = json.loads(os.pread(fd, 4096, 0))
                return f"process {info['pid']} on {info['host']} since {info['started']}"
            except (OSError, ValueError, KeyError, TypeError):
                return "a process that is starting"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Records:
    """A conversion's output folder: its manifest, splits, shards and sites.

    Open one with :func:`open_records`; the attributes are what the manifest recorded.

    Attributes:
        root: The conversion folder (the one holding ``manifest.json``).
        manifest_path: Path of ``manifest.json``.
        complete: True when the conversion finished (the manifest lists every shard).
        running: The conversion writing into the folder now (process, host, start), or
            ``None``.
        strategy: How sites were grouped into shards (``random``, ``by_experiment``,
            ``by_exp_plate_site``).
        seed: The conversion's shuffle seed.
        encoding: ``png`` or ``raw``.
        compression: ``none``, ``gzip`` or ``zlib``.
        image_shape: ``(height, width)`` of every image.
        layout: ``kaggle`` or ``full``: the layout of the converted images.
        selected: The folder (relative to ``root``, POSIX) the records were opened by
            when it is inside the conversion, e.g. ``random-42/train``; ``""`` for all.
        manifest: The manifest as read (a read-only view of what the writer recorded).

    Example:
        >>> from rxdata.synthetic import SyntheticOptions, generate
        >>> import rxdata
        >>> data = generate("records-doc", SyntheticOptions.tiny(seed=2))
        >>> _ = rxdata.convert(data, "records-doc-out", workers=1, progress=False)
        >>> records = rxdata.open_records("records-doc-out")
        >>> records.complete, records.splits, records.split_sizes["test"]
        (True, ('train', 'test'), 112)
        >>> records.label_release, records.label_names([0])
        ('competition', ['0'])
    """

    root: str
    manifest_path: str
    complete: bool
    running: str | None
    strategy: str
    seed: int
    encoding: str
    compression: str
    image_shape: tuple[int, int]
    layout: str
    selected: str = ""
    manifest: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # --- what the manifest lists --------------------------------------------------------
    def _entries(self) -> list[dict[str, Any]]:
        prefix = self.selected.rstrip("/") + "/" if self.selected else ""
        return [e for e in self.manifest.get("shards", []) if str(e["path"]).startswith(prefix)]

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits present (data sets converted), train before test."""
        present = {str(e["dataset"]) for e in self._entries()}
        return tuple(d for d in DATASETS if d in present)

    @property
    def split_sizes(self) -> dict[str, int]:
        """Sites in each split (planned sites while the conversion is incomplete)."""
        sizes = dict.fromkeys(self.splits, 0)
        for e in self._entries():
            sizes[str(e["dataset"])] += len(e["site_ids"])
        return sizes

    @property
    def n_sites(self) -> int:
        """Sites in the records (planned sites while incomplete)."""
        return sum(self.split_sizes.values())

    def _check_split(self, split: str | None) -> None:
        if split is None:
            return
        if not isinstance(split, str) or split not in self.splits:
            where = f"{self.root}/{self.selected}" if self.selected else self.root
            raise OptionsError(
                f"split={split!r} is not a split of this conversion; {where} has "
                f"{list(self.splits)}"
                + (
                    f" (it was converted with datasets {list(self.splits)} only)"
                    if isinstance(split, str) and split in DATASETS
                    else ""
                )
            )

    def _path(self, relative: str) -> str:
        try:  # a shard reached through a link is never opened
            return inside(self.root, relative)
        except RecordError as err:
            raise RecordError(
                f"{self.manifest_path}: damaged manifest: {err}; re-run the conversion "
                "(with --overwrite) to replace it"
            ) from None

    def missing(self) -> list[str]:
        """Planned shards not (yet) written, as paths relative to :attr:`root`.

        Empty for a complete conversion whose files are all present.
        """
        out = []
        for e in self._entries():
            rel = str(e["path"])
            done = self.complete or _io.exists(_progress_path(self.root, rel))
            if not done or not _io.exists(self._path(rel)):
                out.append(rel)
        return out

    def check_complete(self) -> None:
        """Raise unless the conversion is complete and every shard file is present.

        Raises:
            IncompleteConversionError: it names what is missing and how to finish it.
        """
        missing = self.missing()
        if self.complete and not self.running and not missing:
            return
        total = len(self._entries())
        if self.running:
            why = f"a conversion is still writing it ({self.running})"
            fix = "wait for it to finish"
        elif not self.complete:
            why = (
                "its conversion did not finish (stopped by Ctrl-C, a crash, or an "
                "interrupted --overwrite)"
            )
            fix = "re-run the same `rxdata convert` command to finish it (finished shards are kept)"
        else:
            why = "shard files listed in its manifest are gone"
            fix = "re-run the same `rxdata convert` command to write them again"
        example = f", e.g. {missing[0]}" if missing else ""
        raise IncompleteConversionError(
            f"{self.root} is not a complete conversion: {why}; {len(missing)} of {total} "
            f"shards are missing{example}. To use it, {fix}; `rxdata verify {self.root}` "
            "checks the result. To read the finished shards anyway, pass "
            "allow_incomplete=True (--allow-incomplete)."
        )

    def files(self, split: str | None = None, *, allow_incomplete: bool = False) -> list[str]:
        """The shard files of ``split`` (``None``: every split), in manifest order.

        Args:
            split: ``"train"``, ``"test"`` (the splits in :attr:`splits`) or ``None``.
            allow_incomplete: Read an incomplete conversion's finished shards (a log
                line says how many sites of how many) instead of raising.

        Raises:
            OptionsError: ``split`` is not one of :attr:`splits`.
            IncompleteConversionError: the conversion is incomplete or still running.
            RecordError: the manifest is damaged (a shard reached through a link).
        """
        return [file for file, _ in self.shards(split, allow_incomplete=allow_incomplete)]

    def shards(
        self, split: str | None = None, *, allow_incomplete: bool = False
    ) -> list[tuple[str, Mapping[str, Any]]]:
        """:meth:`files` with each shard's manifest entry: ``(file, entry)`` pairs.

        The entry holds what the writer recorded of the shard: ``path``, ``dataset``,
        ``site_ids`` and, once the conversion is complete, ``count`` and ``digest`` (the
        checksum, read with :func:`rxdata._io.recorded_digest`: manifests of earlier
        versions hold ``sha256`` instead).
        Arguments and errors as :meth:`files`.
        """
        self._check_split(split)
        entries = [e for e in self._entries() if split is None or e["dataset"] == split]
        if not allow_incomplete:
            self.check_complete()
            return [(self._path(str(e["path"])), e) for e in entries]
        gone = set(self.missing())
        kept = [e for e in entries if e["path"] not in gone]
        planned = sum(len(e["site_ids"]) for e in entries)
        read = sum(len(e["site_ids"]) for e in kept)
        if gone & {e["path"] for e in entries}:
            log.warning(
                "%s: incomplete conversion: reading %d of %d sites (%d of %d shards)",
                self.root, read, planned, len(kept), len(entries),
            )  # fmt: skip
        if not kept:
            raise IncompleteConversionError(
                f"{self.root}: no finished shard{'' if split is None else f' in {split!r}'} "
                "yet; re-run the same `rxdata convert` command to finish the conversion"
            )
        return [(self._path(str(e["path"])), e) for e in kept]

    def sites(self, split: str | None = None) -> pd.DataFrame:
        """One row per site of ``split`` (``None``: all), in shard order.

        Columns :data:`SITE_COLUMNS`: ``site_id, id_code, dataset, experiment, cell_type,
        plate, well, site, file`` (``file``: the shard's path). Read from the manifest:
        no record is opened.
        """
        self._check_split(split)
        rows = []
        for e in self._entries():
            if split is not None and e["dataset"] != split:
                continue
            file = self._path(str(e["path"]))
            for site_id in e["site_ids"]:
                key = parse_site_id(site_id)
                rows.append(
                    (
                        key.site_id, key.id_code, str(e["dataset"]), key.experiment,
                        key.cell_type, key.plate, key.well, key.site, file,
                    )
                )  # fmt: skip
        table: pd.DataFrame = pd.DataFrame(rows, columns=list(SITE_COLUMNS))
        return table

    def wells(self, split: str | None = None) -> pd.Index:
        """The ``id_code`` of each well of ``split``, sorted by experiment, plate and well."""
        sites = self.sites(split)
        order = sites.drop_duplicates("id_code").sort_values(
            ["experiment", "plate", "well"], kind="stable"
        )
        index: pd.Index = pd.Index(order["id_code"].to_numpy(dtype=object), name="id_code")
        return index

    @property
    def experiments(self) -> list[str]:
        """Experiments present, sorted."""
        return sorted(self.sites()["experiment"].unique().tolist())

    def input_identities(self) -> dict[str, str]:
        """Each written site's input identity, by site id.

        ``ROW:IMAGES``: digests of its metadata row and image files
        (:func:`rxdata.conversion.shard.site_input`); a re-run rewrites a shard when one
        changes.
        """
        out: dict[str, str] = {}
        for e in self._entries():
            out.update(zip(e.get("site_ids", []), e.get("site_inputs", []), strict=False))
        return out

    # --- labels ---------------------------------------------------------------------------
    @property
    def label_release(self) -> LabelRelease | None:
        """The label space the records were converted from.

        ``"rerelease"``: the Kaggle re-release's names (``sirna_N``, ``UNTREATED``);
        ``"competition"``: integer class ids (the 2019 competition CSVs, and the full
        release's ``sirna_id``); ``None`` when no site is labelled. The conversion
        records it in its manifest (:func:`rxdata.labels.label_release_of` of the metadata
        it converted).

        Raises:
            RecordError: The manifest does not record it (written by an earlier
                development version) or records something else.
        """
        if "label_release" not in self.manifest:
            raise RecordError(
                f"{self.manifest_path} does not record its label space (written by an "
                "earlier rxdata); re-run the same convert command: it re-uses every shard "
                "and records it"
            )
        recorded = self.manifest["label_release"]
        if recorded not in ("competition", "rerelease", None):
            raise RecordError(
                f"{self.manifest_path}: label_release {recorded!r}, expected 'competition', "
                "'rerelease' or null: a damaged manifest; re-run the convert command"
            )
        return recorded  # type: ignore[no-any-return]

    def label_names(self, class_ids: Sequence[int]) -> list[str]:
        """Class ids written in this release's label space.

        ``0`` -> ``'sirna_332'`` for re-release records, ``'0'`` otherwise.
        """
        if self.label_release == "rerelease":
            from rxdata.labels import to_rerelease_names

            return [str(n) for n in to_rerelease_names(list(class_ids))]
        return [str(int(i)) for i in class_ids]

    def __str__(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE"
        sizes = ", ".join(f"{k}: {v} sites" for k, v in self.split_sizes.items())
        return (
            f"{self.root} ({state}; {self.strategy}-{self.seed}, {self.encoding}, "
            f"{self.image_shape[0]}x{self.image_shape[1]}; {sizes})"
        )


def find_conversion(folder: str | os.PathLike[str], *, below: bool = True) -> tuple[str, str]:
    """The conversion folder for ``folder`` and the part of it selected (relative, POSIX).

    ``folder`` itself holding ``manifest.json``; a folder inside a conversion (the nearest
    manifest above it); or, with ``below``, a folder above exactly one conversion
    (searched two levels down).

    Raises:
        FileNotFoundError: ``folder`` does not exist, or no conversion is at, above or
            below it.
        OptionsError: several conversions lie below ``folder`` (the message lists them).

    Example:
        >>> try:
        ...     find_conversion("no-such-folder")
        ... except FileNotFoundError as err:
        ...     print(str(err).split(":")[0])
        no-such-folder
    """
    path = os.fspath(folder).rstrip("/") or "/"
    if not _io.isdir(path):
        what = "is a file" if _io.exists(path) else "does not exist"
        raise FileNotFoundError(f"{path}: {what}; expected the output folder of `rxdata convert`")
    if _io.exists(_io.join(path, MANIFEST_NAME)):
        return path, ""
    current, parts = path, list[str]()
    while True:  # a folder inside a conversion
        parent = _io.parent(current)
        if not parent or parent == current:
            break
        parts.insert(0, _basename(current))
        if _io.exists(_io.join(parent, MANIFEST_NAME)):
            if not _io.is_remote(path):  # the root spelled as the caller spelled the folder
                parent = os.path.normpath(os.path.join(path, *[os.pardir] * len(parts)))
            return parent, "/".join(parts)
        current = parent
    found: list[str] = []
    for child in sorted(_io.listdir(path)) if below else []:
        sub = _io.join(path, child.rstrip("/"))
        if not _io.isdir(sub):
            continue
        if _io.exists(_io.join(sub, MANIFEST_NAME)):
            found.append(sub)
            continue
        for grandchild in sorted(_io.listdir(sub)):
            deeper = _io.join(sub, grandchild.rstrip("/"))
            if _io.isdir(deeper) and _io.exists(_io.join(deeper, MANIFEST_NAME)):
                found.append(deeper)
    if len(found) == 1:
        return found[0], ""
    if found:
        raise OptionsError(f"{path} holds {len(found)} conversions: {found}; give one of them")
    searched = "in it, above it or in its sub-folders" if below else "in it or above it"
    raise FileNotFoundError(
        f"{path}: no {MANIFEST_NAME} {searched}, so it is not an `rxdata convert` output; "
        "for records without a manifest (rxrx1-utils'), give a file pattern such as "
        f"'{path}/*.tfrecord'"
    )


def _basename(path: str) -> str:
    return posixpath.basename(path.replace(os.sep, "/").rstrip("/"))


def open_records(folder: str | os.PathLike[str]) -> Records:
    """Open the conversion at, above or (alone) below ``folder``; see :func:`find_conversion`.

    Raises:
        FileNotFoundError: no conversion there.
        OptionsError: several conversions below ``folder``, or ``folder`` is inside a
            conversion but holds none of its shards.
        RecordError: the manifest is not a valid rxdata manifest.

    Example:
        >>> try:
        ...     open_records("no-such-folder")
        ... except FileNotFoundError:
        ...     print("no conversion")
        no conversion
    """
    root, selected = find_conversion(folder)
    manifest = read_manifest(root)
    options = manifest.get("options") or {}
    try:
        height, width = options["image_shape"]
        records = Records(
            root=root,
            manifest_path=_io.join(root, MANIFEST_NAME),
            complete=bool(manifest.get("complete")),
            running=_lock_holder(root),
            strategy=str(options["strategy"]),
            seed=int(options["seed"]),
            encoding=str(options["encoding"]),
            compression=str(options["compression"]),
            image_shape=(int(height), int(width)),
            layout=str(manifest.get("layout", "")),
            selected=selected,
            manifest=manifest,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise RecordError(
            f"{_io.join(root, MANIFEST_NAME)}: options lack {err}; expected the manifest "
            "rxdata convert writes"
        ) from None
    if selected and not records._entries():
        raise OptionsError(
            f"{folder} is inside the conversion {root} but holds none of its shards; give "
            f"{root} (its splits: {list(dataclasses.replace(records, selected='').splits)})"
        )
    return records


_WILDCARDS = frozenset("*?[")


def _static_prefix(pattern: str) -> str:
    parts = pattern.replace(os.sep, "/").split("/")
    for i, part in enumerate(parts):
        if _WILDCARDS & set(part):
            return "/".join(parts[:i])
    return posixpath.dirname(pattern.replace(os.sep, "/"))


def _check_patterns(patterns: Sequence[str], allow_incomplete: bool) -> None:
    """Refuse file patterns inside an incomplete conversion (the glob would read it silently)."""
    seen: set[str] = set()
    for pattern in patterns:
        start = _static_prefix(pattern) if not _io.isfile(pattern) else posixpath.dirname(pattern)
        current = start.rstrip("/") or "."
        for _ in range(3):  # shards lie at most two folders below their manifest
            if current in seen or (_io.is_remote(current) and current.count("/") < 3):
                break  # seen, or a bucket's root
            seen.add(current)
            if _io.exists(_io.join(current, MANIFEST_NAME)):
                try:
                    records = open_records(current)
                except (RecordError, OptionsError, FileNotFoundError):
                    break  # not ours to judge: the pipeline reads the files as given
                if not allow_incomplete and (not records.complete or records.running):
                    records.check_complete()
                break
            parent = _io.parent(current) if current not in (".", "/") else current
            if not parent or parent == current:
                break
            current = parent


def resolve_source(
    source: Records | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    split: Split | str | None = None,
    allow_incomplete: bool = False,
) -> tuple[list[str | os.PathLike[str]], Split | None]:
    """What :func:`rxdata.make_dataset` reads: shard files from a source, with the checks.

    Args:
        source: A :class:`Records`; a conversion folder (see :func:`open_records`); or,
            as before, a file pattern or a list of them (for records without a manifest,
            such as rxrx1-utils'), returned unchanged.
        split: A split name of the conversion (``"train"``, ``"test"``): only its shards
            are read. Anything else (``None``, an :class:`rxdata.Split`) is returned
            unchanged for the pipeline's own filter.
        allow_incomplete: Read the finished shards of an incomplete conversion.

    Returns:
        ``(files, split)``: the files (or the patterns, as a list) and what is left of
        ``split`` for the pipeline (``None`` once a split name was used).

    Raises:
        OptionsError: a split name with file patterns, or one the conversion lacks.
        IncompleteConversionError: the conversion (or the one the patterns lie in) is
            incomplete or still running, and ``allow_incomplete`` is False.
    """
    if not isinstance(allow_incomplete, bool):
        raise OptionsError(f"allow_incomplete={allow_incomplete!r} must be True or False")
    records: Records | None = None
    if isinstance(source, Records):
        records = source
    elif isinstance(source, (str, os.PathLike)) and _io.isdir(os.fspath(source)):
        records = open_records(source)
    if records is not None:
        if split is not None and not isinstance(split, str):
            return list(records.files(None, allow_incomplete=allow_incomplete)), split
        return list(records.files(split, allow_incomplete=allow_incomplete)), None
    if isinstance(split, str):
        raise OptionsError(
            f"split={split!r} names a split of a conversion; give its folder (or "
            "rxdata.open_records(folder)) instead of file patterns, or use a glob of that "
            "split's shards"
        )
    patterns: list[str | os.PathLike[str]] = (
        [source] if isinstance(source, (str, os.PathLike)) else list(source)  # type: ignore[arg-type]
    )
    _check_patterns([os.fspath(p) for p in patterns], allow_incomplete)
    return patterns, split

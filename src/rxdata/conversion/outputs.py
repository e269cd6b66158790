"""The files of a conversion's output folder, and the rule that keeps every path inside it.

Contract (containment, as git keeps paths inside its work tree):

* :func:`list_output` is the one listing of an output folder. The stray-shard check,
  ``overwrite``, the removal of a killed run's temporaries and
  :func:`rxdata.conversion.verify` all use it. It walks the folder with ``os.scandir``
  and follows no symbolic link, so nothing behind a link is ever listed, deleted or read.
* A symbolic link inside the output folder (to a file or a folder, wherever it points)
  is refused by the conversion (:func:`refuse_links`) and reported by ``verify``:
  rxdata writes, deletes and reads only files that are really inside the folder. The
  output folder itself may be a link: that is the path the user chose.
* A shard path read from a manifest is relative, ``/``-separated, without ``..``, ``.``
  or empty parts, backslashes or a drive (:func:`rxdata.records.check_relative`), and
  reaches its file through no link (:func:`rxdata.records.inside`); otherwise the
  manifest is damaged and nothing is opened. That rule lives in :mod:`rxdata.records`,
  beside the one manifest reader, so readers without TensorFlow keep it too.
* Paths are never globbed: a folder named ``x[ab]`` is itself, not ``xa`` and ``xb``.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from rxdata import _io
from rxdata.conversion.options import REPORT_NAME
from rxdata.errors import Option, OutputExistsError
from rxdata.records import LOCK_NAME, MANIFEST_NAME, PROGRESS_DIR

log = logging.getLogger(__name__)


def is_temporary(path: str) -> bool:
    """An rxdata temporary: ``.NAME.tmp-PID-XXXX`` (or ``NAME.tmp-...`` before 0.2).

    Example:
        >>> is_temporary("random-42/.001.tfrecord.tmp-12-ab"), is_temporary("a.tfrecord")
        (True, False)
    """
    return ".tmp-" in posixpath.basename(path.replace(os.sep, "/"))


def is_rxdata_file(relative: str) -> bool:
    """A file that a conversion writes into its output folder (``/``-separated path).

    Example:
        >>> is_rxdata_file("manifest.json"), is_rxdata_file("notes.txt")
        (True, False)
    """
    if relative.endswith(".tfrecord") or is_temporary(relative):
        return True
    if relative.startswith(PROGRESS_DIR + "/"):
        return True
    return relative in (MANIFEST_NAME, REPORT_NAME, LOCK_NAME)


@dataclass(frozen=True)
class OutputFiles:
    """What an output folder holds, read without following any link.

    Attributes:
        files: Every regular file, as a sorted ``/``-separated path relative to the folder.
        links: Every symbolic link (to a file or a folder), never followed.
        special: FIFOs, sockets and devices, never opened.
    """

    files: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    special: tuple[str, ...] = ()

    @property
    def shards(self) -> list[str]:
        """The ``.tfrecord`` files, temporaries left out."""
        return [f for f in self.files if f.endswith(".tfrecord") and not is_temporary(f)]

    @property
    def temporaries(self) -> list[str]:
        """The temporaries of interrupted writes."""
        return [f for f in self.files if is_temporary(f)]

    @property
    def foreign(self) -> list[str]:
        """The files rxdata does not write."""
        return [f for f in self.files if not is_rxdata_file(f)]


def list_output(output_dir: str | os.PathLike[str]) -> OutputFiles:
    """The files and symbolic links under ``output_dir``; a missing folder holds none.

    Example:
        >>> import pathlib
        >>> pathlib.Path("listed/a").mkdir(parents=True)
        >>> _ = pathlib.Path("listed/a/001.tfrecord").write_bytes(b"")
        >>> pathlib.Path("listed/b").symlink_to("/tmp")
        >>> found = list_output("listed")
        >>> found.shards, found.links
        (['a/001.tfrecord'], ('b',))
    """
    files, links, special = _io.scan_tree(output_dir)
    return OutputFiles(tuple(files), tuple(links), tuple(special))


def refuse_links(output_dir: str, listing: OutputFiles) -> None:
    """Refuse an output folder that holds a symbolic link or a special file.

    Raises:
        OutputExistsError: The message names the link and where it points (or the
            special file).
    """
    if listing.special:
        raise OutputExistsError(
            f"{output_dir} holds {_io.join(output_dir, *listing.special[0].split('/'))}, "
            "which is not a regular file (a FIFO, socket or device): rxdata neither opens "
            "nor deletes it. Remove it, or choose another output directory"
        )
    if not listing.links:
        return
    link = _io.join(output_dir, *listing.links[0].split("/"))
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    more = f" (and {len(listing.links) - 1} more)" if len(listing.links) > 1 else ""
    raise OutputExistsError(
        f"{output_dir} holds the symbolic link {link} -> {target}{more}: rxdata writes, "
        "deletes and reads only files inside its output folder and follows no link there "
        "(files behind it would be overwritten, or read by a glob with the new shards). "
        "Remove the link, or choose another output directory"
    )


def remove_files(output_dir: str, relatives: Iterable[str], *, why: str) -> None:
    """Delete files of the output folder, then the folders that this emptied."""
    folders: set[str] = set()
    for relative in relatives:
        path = _io.join(output_dir, *relative.split("/"))
        if _io.exists(path):
            log.info("%s: removing %s", why, path)
            _io.remove(path)
        if "/" in relative:
            folders.add(posixpath.dirname(relative))
    for folder in sorted(folders, key=lambda f: -f.count("/")):
        parts = folder.split("/")
        while parts:  # deepest first
            if not _io.remove_empty_dir(_io.join(output_dir, *parts)):
                break
            parts.pop()


def refuse_foreign(output_dir: str, listing: OutputFiles) -> None:
    """Refuse to replace a folder that holds files rxdata did not write.

    Raises:
        OutputExistsError: The message names up to five of them.
    """
    foreign = listing.foreign
    if foreign:
        overwrite = Option("overwrite")
        raise OutputExistsError(
            f"{output_dir} holds {len(foreign)} file(s) that rxdata did not write, e.g. "
            f"{[_io.join(output_dir, f) for f in foreign[:5]]}; {overwrite} "
            "deletes conversion outputs only and will not leave them mixed in: move them "
            "out, or choose another output directory",
            options=[overwrite],
        )


__all__ = [
    "OutputFiles",
    "is_rxdata_file",
    "is_temporary",
    "list_output",
    "refuse_foreign",
    "refuse_links",
    "remove_files",
]

"""``overwrite`` with other options: the new conversion is built beside the old one.

Contract (nothing good is lost; replace atomically, as git updates a ref):

* When ``OUTPUT`` holds a complete conversion made with other options (or another shard
  plan) and ``overwrite=True``, the run writes into the staging folder
  ``PARENT/.NAME.rxdata-staging`` (``PARENT`` holds ``OUTPUT``, links resolved). Until the
  new conversion is complete ``OUTPUT`` is not touched: reading it and
  ``rxdata verify`` work on the old conversion meanwhile.
* When the new conversion is complete (manifest written, files fsynced), the two folders
  swap names in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two
  renames, the old folder moved aside first), and the old conversion is deleted. A kill
  at any instant leaves ``OUTPUT`` holding the old or the new complete conversion.
* A killed run leaves ``OUTPUT`` as it was plus the staging folder: the next run with
  the same options resumes the staging folder, and any run into ``OUTPUT`` that does not
  need it clears it.
* Where the two renames are used, a kill between them leaves no conversion in ``OUTPUT``
  (the old one moved aside, the new one complete in the staging folder). The next run
  with the same options finishes the swap, says so, and keeps every shard (they are
  checked as any resumed run's are); one with other options starts afresh in ``OUTPUT``
  and keeps the moved-aside folder, saying where it is. A kill after the swap, before
  the old conversion is deleted, leaves the old one moved aside: the next run into the
  (complete) ``OUTPUT`` deletes it.
* Only the holder of ``OUTPUT``'s lock (:mod:`rxdata.conversion.lock`) touches the
  staging folder; the lock moves with the new conversion when the names swap.
* The parent folder must be writable and on the same file system; otherwise the run is
  refused and nothing is deleted. Remote (``gs://``) folders cannot be renamed
  atomically: there ``overwrite`` deletes the old shards first, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any

from rxdata import _io
from rxdata.conversion.outputs import list_output, refuse_foreign, refuse_links
from rxdata.errors import ConvertError, RecordError
from rxdata.records import LOCK_NAME, MANIFEST_NAME, read_manifest

log = logging.getLogger(__name__)

_STAGING = ".rxdata-staging"
_OLD = ".rxdata-old-"


def staging_path(output_dir: str | os.PathLike[str]) -> str:
    """The staging folder of ``output_dir``: a hidden sibling (links resolved).

    Example:
        >>> staging_path("/data/out") == os.path.join(
        ...     os.path.realpath("/data"), ".out.rxdata-staging")
        True
    """
    real = os.path.realpath(os.fspath(output_dir))
    return os.path.join(os.path.dirname(real), f".{os.path.basename(real)}{_STAGING}")


def _complete(folder: str) -> dict[str, Any] | None:
    """The folder's manifest if it is readable and complete, else None."""
    if not _io.exists(_io.join(folder, MANIFEST_NAME)):
        return None
    try:
        manifest = read_manifest(folder)
    except RecordError:
        return None
    return manifest if manifest.get("complete") else None


def work_folder(output_dir: str, overwrite: bool, fresh: Mapping[str, Any]) -> str:
    """Where this run writes: ``output_dir``, or its staging folder when replacing.

    Args:
        output_dir: The output folder the user named.
        overwrite: The ``overwrite`` option.
        fresh: The new run's manifest (its ``options`` and ``plan_sha256`` are compared).

    Returns:
        ``output_dir``, or :func:`staging_path` when ``output_dir`` holds a complete
        conversion with other options or plan and ``overwrite`` is set.

    Raises:
        OutputExistsError: The output holds a symbolic link or files rxdata did not write.
        ConvertError: No staging folder can be made beside the output.
    """
    if _io.is_remote(output_dir):
        return output_dir
    staging = staging_path(output_dir)
    if os.path.islink(staging):  # a planted link would send the new shards elsewhere
        raise ConvertError(
            f"{staging}, where overwrite builds a replacement of {output_dir}, is a "
            "symbolic link; rxdata follows none: remove it"
        )
    _finish_interrupted_swap(output_dir, staging, fresh)
    old = _complete(output_dir) if overwrite else None
    _drop_replaced(output_dir)
    if old is None or _same_conversion(old, fresh):
        if _io.isdir(staging):
            _clear_staging(staging)
        return output_dir
    listing = list_output(output_dir)
    refuse_links(output_dir, listing)
    refuse_foreign(output_dir, listing)
    real, cwd = os.path.realpath(output_dir), os.path.realpath(os.getcwd())
    if os.path.commonpath([real, cwd]) == real:
        raise ConvertError(
            f"the working directory {cwd} is inside {output_dir}: overwrite replaces that "
            "folder by swapping it with a new one, which would leave this process (and "
            "your shell) in the deleted old folder. Run from another folder (cd ..)"
        )
    parent = os.path.dirname(staging)
    try:
        os.makedirs(staging, exist_ok=True)
        same_fs = os.stat(staging).st_dev == os.stat(output_dir).st_dev
    except OSError as err:
        raise ConvertError(
            f"cannot make the staging folder {staging} ({err.strerror}): {output_dir} "
            "holds a complete conversion with other options, and overwrite builds the new "
            f"one beside it before replacing it. Make {parent} writable, remove the old "
            "conversion yourself, or choose another output directory"
        ) from err
    if not same_fs:
        _io.remove_empty_dir(staging)
        raise ConvertError(
            f"{output_dir} is a mount point (or on another file system than {parent}): "
            "overwrite cannot build the new conversion beside it and swap the two. Remove "
            "the old conversion yourself, or choose an output folder inside it"
        )
    log.info(
        "%s holds a complete conversion with other options: building the new one in %s; "
        "the old one stays readable until the new one is complete",
        output_dir,
        staging,
    )
    return staging


def _same_conversion(manifest: Mapping[str, Any], fresh: Mapping[str, Any]) -> bool:
    """Whether ``manifest`` was made with ``fresh``'s options and shard plan."""
    return bool(
        manifest.get("options") == fresh["options"]
        and manifest.get("plan_sha256") == fresh["plan_sha256"]
    )


def _finish_interrupted_swap(output_dir: str, staging: str, fresh: Mapping[str, Any]) -> None:
    """Finish a replacement that a kill stopped between its two renames.

    Then ``output_dir`` holds no conversion (at most this run's lock) and the staging
    folder a complete one; with this run's options and plan, the swap is completed and
    the run goes on as a resumed one. Anything else is left to :func:`work_folder`.
    """
    if not _io.isdir(staging) or os.path.islink(staging):
        return
    new = _complete(staging)
    if new is None or not _same_conversion(new, fresh):
        return
    listing = list_output(output_dir)
    if listing.links or listing.special or any(f != LOCK_NAME for f in listing.files):
        return  # the output holds something: not the state a kill between renames leaves
    log.warning(
        "%s holds no conversion and %s a complete one made with these options: an "
        "interrupted replacement; finishing it (the shards are checked, not rebuilt)",
        output_dir,
        staging,
    )
    os.makedirs(output_dir, exist_ok=True)
    commit(staging, output_dir)


def commit(work_dir: str, output_dir: str) -> None:
    """Put a complete conversion built in ``work_dir`` in place of ``output_dir``'s.

    Nothing is done when ``work_dir`` is ``output_dir``.
    """
    if work_dir == output_dir:
        return
    real = os.path.realpath(output_dir)
    # The lock this run holds moves with the new conversion: a hard link to the same
    # file (the same lock), so that no other run can take the folder during the swap.
    with contextlib.suppress(OSError):
        os.remove(os.path.join(work_dir, LOCK_NAME))
    with contextlib.suppress(OSError):
        os.link(os.path.join(real, LOCK_NAME), os.path.join(work_dir, LOCK_NAME))
    parent, name = os.path.dirname(real), os.path.basename(real)
    replaced = os.path.join(parent, f".{name}{_OLD}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    if _io.exchange(work_dir, real):
        _io.rename(work_dir, replaced)
    else:  # two renames: a kill between them leaves both folders, see the module docs
        _io.rename(real, replaced)
        _io.rename(work_dir, real)
    log.info("%s: replaced the previous conversion (removing %s)", output_dir, replaced)
    _io.remove_tree(replaced)


def _drop_replaced(output_dir: str) -> None:
    """Delete folders a killed run moved aside, once ``output_dir`` is complete again."""
    real = os.path.realpath(output_dir)
    parent, prefix = os.path.dirname(real), f".{os.path.basename(real)}{_OLD}"
    try:
        # Only names commit() makes (PID-HEX8): another output's staging folder, or a
        # user's folder, may share the prefix.
        names = [
            n
            for n in os.listdir(parent)
            if n.startswith(prefix) and re.fullmatch(r"\d+-[0-9a-f]{8}", n[len(prefix) :])
        ]
    except OSError:
        return
    if not names:
        return
    if _complete(real) is None:
        log.warning(
            "%s: kept %s, a previous conversion moved aside by an interrupted replacement, "
            "since %s holds no complete conversion; move it back by hand if you need it",
            output_dir,
            os.path.join(parent, names[0]),
            output_dir,
        )
        return
    for name in names:
        log.info("removing %s, left by an interrupted replacement", os.path.join(parent, name))
        _io.remove_tree(os.path.join(parent, name))


def _clear_staging(staging: str) -> None:
    """Clear an abandoned staging folder (rxdata files only; otherwise it is kept)."""
    listing = list_output(staging)
    if listing.foreign or listing.links:
        log.warning("%s holds files rxdata did not write; leaving it", staging)
        return
    log.info("removing %s, an unfinished replacement no longer needed", staging)
    _io.remove_tree(staging)


__all__ = ["commit", "staging_path", "work_folder"]

"""The lock a running conversion holds on its output directory.

Two conversions writing into one folder would delete each other's temporaries, rewrite
each other's manifest and fail with messages about disk space or permissions. So
:func:`rxdata.conversion.convert` holds ``OUTPUT_DIR/.rxdata-convert.lock`` for its whole
run, and a second run into the same folder is refused at once, naming the folder and the
holder (process id, host, start time, command).

The lock is an ``fcntl.flock`` on that file: the operating system releases it when the
holding process ends in any way (Ctrl-C, ``kill -9``, a crash), so a crashed run never
leaves the folder locked; the file's text (the holder) is only information. The file is
removed when the run ends. ``flock`` works between processes of one machine, and on NFS
(v4, or v3 with lock support) between machines.

Not protected: ``gs://`` (and other remote) output folders, where no such lock exists;
run one conversion per remote folder (a Beam or Dask job is one conversion: only its
driver takes the lock). Where the file system refuses locks, a warning says that
concurrent runs are not detected. ``filelock`` (PyPI) is not used: it truncates the lock
file when it opens it, erasing the holder's name that the refusal reports.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

from rxdata import _io
from rxdata.errors import ConvertError
from rxdata.records import LOCK_NAME

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def output_lock(output_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the conversion lock of ``output_dir`` (created if missing) while in the block.

    Raises:
        ConvertError: Another process holds it (the message names the folder and holder).

    Example:
        >>> with output_lock("locked-out"):
        ...     try:
        ...         with output_lock("locked-out"):
        ...             pass
        ...     except ConvertError as err:
        ...         print(str(err).split(" (")[0])
        locked-out is in use by another conversion
    """
    out_dir = os.fspath(output_dir)
    if _io.is_remote(out_dir) or fcntl is None:
        log.debug("%s: no lock on this storage; run one conversion per folder", out_dir)
        yield
        return
    created = not os.path.isdir(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:  # a file at OUTPUT_DIR (or above it), no permission, ...
        what = "it is a file" if os.path.isfile(out_dir) else err.strerror
        raise ConvertError(
            f"cannot create the output directory {out_dir} ({what}); choose another "
            "output directory"
        ) from err
    path = os.path.join(out_dir, LOCK_NAME)
    fd = _acquire(path, out_dir)
    try:
        yield
    finally:
        # Remove the file while still holding the lock: a run that opened it meanwhile
        # sees that its file is no longer the one at the path and opens the new one.
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)
        if created:
            _io.remove_empty_dir(out_dir)


def _acquire(path: str, out_dir: str) -> int:
    for _ in range(100):
        try:  # never through a symbolic link: the holder's record is written into the file
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as err:
            if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                fix = "the output folder is not writable: choose another output directory"
            else:
                fix = "if it is a symbolic link or not a file, remove it"
            raise ConvertError(f"cannot open the lock {path} ({err.strerror}); {fix}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                log.warning(
                    "%s: cannot lock %s (%s); two conversions into this folder would not "
                    "be detected",
                    out_dir,
                    path,
                    err,
                )
                return fd
            holder = _holder(fd)
            os.close(fd)
            raise ConvertError(
                f"{out_dir} is in use by another conversion ({holder}); wait for it to "
                f"finish or stop it, or choose another output directory (the lock "
                f"{path} is released by itself when that process ends, even by a crash)"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = -1
        if current == os.fstat(fd).st_ino:
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(sys.argv)[:500],
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            return fd
        os.close(fd)  # the previous holder removed the file as we opened it: try again
    raise ConvertError(f"could not lock {path}: it keeps being replaced")


def _holder(fd: int) -> str:
    """The holder recorded in the lock file, in words."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        return f"process {info['pid']} on {info['host']} since {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting"


def holding_output_lock(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` (a function with an ``output_dir`` argument) holding that folder's lock.

    Example:
        >>> @holding_output_lock
        ... def job(output_dir):
        ...     return os.path.exists(os.path.join(output_dir, LOCK_NAME))
        >>> job("locked-job")
        True
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        output_dir = signature.bind(*args, **kwargs).arguments["output_dir"]
        with output_lock(output_dir):
            return fn(*args, **kwargs)

    return locked

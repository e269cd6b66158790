"""File access for local paths and remote URLs (``gs://``, ``s3://``, ``hdfs://``).

Local paths use the standard library (fast, no TensorFlow import). Anything with a URL
scheme goes through ``tf.io.gfile``, imported only when such a path is first seen, so the
pure modules never pull in TensorFlow for local data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")

PathLike = str | os.PathLike[str]


def is_remote(path: PathLike) -> bool:
    return bool(_URL.match(os.fspath(path)))


def _gfile() -> Any:
    import tensorflow as tf  # deferred: only remote paths need it

    return tf.io.gfile


def join(base: PathLike, *parts: str) -> str:
    base_s = os.fspath(base)
    if is_remote(base_s):
        return "/".join([base_s.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base_s, *parts)


def read_bytes(path: PathLike) -> bytes:
    """Read a whole file; raises FileNotFoundError (local or remote) when absent."""
    path_s = os.fspath(path)
    if is_remote(path_s):
        gfile = _gfile()
        if not gfile.exists(path_s):
            raise FileNotFoundError(path_s)
        with gfile.GFile(path_s, "rb") as f:
            data: bytes = f.read()
        return data
    with open(path_s, "rb") as f:
        return f.read()


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write a file under a temporary name, then rename it into place."""
    path_s = os.fspath(path)
    tmp = f"{path_s}.tmp-{os.getpid()}"
    if is_remote(path_s):
        gfile = _gfile()
        with gfile.GFile(tmp, "wb") as f:
            f.write(data)
        gfile.rename(tmp, path_s, overwrite=True)
        return
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path_s)


def exists(path: PathLike) -> bool:
    path_s = os.fspath(path)
    if is_remote(path_s):
        return bool(_gfile().exists(path_s))
    return os.path.exists(path_s)


def isdir(path: PathLike) -> bool:
    path_s = os.fspath(path)
    if is_remote(path_s):
        return bool(_gfile().isdir(path_s))
    return os.path.isdir(path_s)


def makedirs(path: PathLike) -> None:
    path_s = os.fspath(path)
    if is_remote(path_s):
        _gfile().makedirs(path_s)
    else:
        os.makedirs(path_s, exist_ok=True)


def rename(src: PathLike, dst: PathLike) -> None:
    src_s, dst_s = os.fspath(src), os.fspath(dst)
    if is_remote(src_s):
        _gfile().rename(src_s, dst_s, overwrite=True)
    else:
        os.replace(src_s, dst_s)


def remove(path: PathLike) -> None:
    path_s = os.fspath(path)
    if is_remote(path_s):
        _gfile().remove(path_s)
    else:
        os.remove(path_s)


def glob(pattern: PathLike) -> list[str]:
    pattern_s = os.fspath(pattern)
    if is_remote(pattern_s):
        return sorted(str(p) for p in _gfile().glob(pattern_s))
    import glob as _glob

    return sorted(_glob.glob(pattern_s))


def walk_files(root: PathLike, suffix: str = "") -> Iterator[str]:
    """Yield every file under ``root`` (recursively) whose name ends with ``suffix``."""
    root_s = os.fspath(root)
    if is_remote(root_s):
        for dirpath, _dirs, files in _gfile().walk(root_s):
            for name in files:
                if name.endswith(suffix):
                    yield join(dirpath, name)
        return
    for dirpath, _dirs, files in os.walk(root_s):
        for name in files:
            if name.endswith(suffix):
                yield os.path.join(dirpath, name)


def local_path(path: PathLike) -> Path | None:
    """Return a ``Path`` for local paths, ``None`` for remote ones."""
    return None if is_remote(path) else Path(path)

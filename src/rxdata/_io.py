"""The one door to files: every file access of rxdata goes through this module.

Local paths use the standard library (fast, no TensorFlow import). A path with a URL
scheme (``scheme://...``) goes through ``tf.io.gfile``, imported only when such a path is
first seen, so the pure modules never pull in TensorFlow for local data. No other module
branches on local versus remote itself.

Why ``tf.io.gfile`` rather than fsspec: the shards are written by ``tf.io.TFRecordWriter``
and read by ``tf.data``, which reach storage through TensorFlow's own file systems; using
the same door for everything else (images, CSVs, manifests) means one set of credentials,
one set of supported schemes and one behaviour for every file of a run. The schemes that
work are those TensorFlow has registered: local paths, ``gs://`` (built into TensorFlow),
and whatever a TensorFlow file-system plugin adds (``s3://``, ``hdfs://``, ``az://`` need
``tensorflow-io``; without it they fail with TensorFlow's "File system scheme not
implemented" error).

Durability: :func:`rename` (which :func:`write_bytes_atomic`, :func:`atomic_writer` and
:func:`rxdata.tfrecord.write_shard` commit with) flushes the file to the disk before
renaming it into place, and then the directory (local paths, where the OS supports it),
so a power cut leaves either the old or the new file, never a renamed but empty one.
Object stores (``gs://``) make a file visible only when it is complete. :func:`exchange`
swaps two folders' names in one step (Linux), for replacing a whole folder atomically.

The shard checksum: this module owns it (:data:`DIGEST_ALGORITHM`, XXH3-128; see
:func:`recorded_digest`). A digest is recorded self-describing, ``ALGORITHM:HEX``
(``"xxh3_128:06b0..."``), as OCI does; :class:`HashingWriter` computes it while a file is
written and :class:`HashingReader` while one is read, so neither costs a second pass.

Containment: :func:`scan_tree` lists a folder without following any symbolic link,
:func:`first_link` finds a link on a path, and :func:`glob_escape` makes a path literal
before a pattern is built from it; :func:`linked_folder` tells which matches of a glob were
reached through a folder link.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import xxhash

from rxdata.errors import RecordError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_BLOCK = 1 << 22  # 4 MiB reads when hashing

PathLike = str | os.PathLike[str]


def is_remote(path: PathLike) -> bool:
    """True for ``scheme://`` paths (handled by ``tf.io.gfile``).

    Example:
        >>> is_remote("gs://bucket/x"), is_remote("/tmp/x")
        (True, False)
    """
    return bool(_URL.match(os.fspath(path)))


def _gfile() -> Any:
    import tensorflow as tf  # deferred: only remote paths need it

    return tf.io.gfile


def join(base: PathLike, *parts: str) -> str:
    """Join path parts with ``/`` for URLs and ``os.path.join`` for local paths.

    Example:
        >>> join("gs://b/", "x", "y.csv")
        'gs://b/x/y.csv'
    """
    base_s = os.fspath(base)
    if is_remote(base_s):
        return "/".join([base_s.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base_s, *parts)


def dirname(path: PathLike) -> str:
    """The folder of ``path`` (``/``-separated for URLs).

    Example:
        >>> dirname("gs://b/x/y.csv")
        'gs://b/x'
    """
    path_s = os.fspath(path)
    if is_remote(path_s):
        return path_s.rsplit("/", 1)[0]
    return os.path.dirname(path_s)


def absolute(path: PathLike) -> str:
    """``path`` made absolute (local paths; URLs are already absolute and come back as is)."""
    path_s = os.fspath(path)
    return path_s if is_remote(path_s) else os.path.abspath(path_s)


def parent(path: PathLike) -> str:
    """The folder above ``path`` (absolute for local paths; a trailing ``/`` is ignored)."""
    path_s = os.fspath(path).rstrip("/") or os.fspath(path)
    if is_remote(path_s):
        return path_s.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path_s))


def open(path: PathLike, mode: str = "rb") -> IO[bytes]:
    """Open a file in binary mode (``"rb"``, ``"wb"`` or ``"ab"``), local or remote.

    Example:
        >>> with open("door.bin", "wb") as f:
        ...     _ = f.write(b"abc")
        >>> open("door.bin").read()
        b'abc'
    """
    if mode not in ("rb", "wb", "ab"):
        raise ValueError(f"mode={mode!r}: the file door opens binary files only (rb, wb, ab)")
    path_s = os.fspath(path)
    if is_remote(path_s):
        if mode == "rb" and not _gfile().exists(path_s):
            raise FileNotFoundError(path_s)
        return cast(IO[bytes], _gfile().GFile(path_s, mode))
    return cast(IO[bytes], builtins.open(path_s, mode))


def read_bytes(path: PathLike) -> bytes:
    """Read a whole file; raises FileNotFoundError (local or remote) when absent.

    Remote read failures are ``OSError`` too (``PermissionError`` for a denied read), as
    local ones are, so a caller tells an input problem from its own writing failing.
    """
    path_s = os.fspath(path)
    if not is_remote(path_s):
        with open(path_s, "rb") as f:  # the one door (tests watch it)
            return f.read()
    import tensorflow as tf

    try:
        with open(path_s, "rb") as f:
            return bytes(f.read())
    except tf.errors.NotFoundError:
        raise FileNotFoundError(errno.ENOENT, "not found", path_s) from None
    except tf.errors.PermissionDeniedError as err:
        raise PermissionError(errno.EACCES, err.message, path_s) from err
    except tf.errors.OpError as err:
        raise OSError(errno.EIO, err.message, path_s) from err


# ---------------------------------------------------------------------------------------
# The shard checksum
# ---------------------------------------------------------------------------------------
DIGEST_ALGORITHM = "xxh3_128"
"""The checksum rxdata records for every shard it writes: XXH3, 128 bits (``xxhash``).

It finds accidental damage (truncation, bit rot, a stale or swapped file), not an
attacker who can also rewrite the manifest: no security is asked of it, so a fast
non-cryptographic hash does: 0.02 ms of CPU per raw 512 px site (1.5 MB) against 0.8 for
SHA-256, the checksum before it. 128 bits make an accidental match out of the question."""

_HASHES: dict[str, Callable[[], Any]] = {
    DIGEST_ALGORITHM: xxhash.xxh3_128,
    "sha256": hashlib.sha256,  # read only: manifests of earlier versions ("sha256": HEX)
}
_HEX_LENGTH = {DIGEST_ALGORITHM: 32, "sha256": 64}
_LEGACY_KEY = "sha256"  # the per-shard key of manifests before DIGEST_KEY

#: The per-shard key of a manifest entry (and progress record) holding its digest.
DIGEST_KEY = "digest"
#: Every algorithm a recorded digest may name: the one written, and SHA-256 (read only).
DIGEST_ALGORITHMS = tuple(_HASHES)


def digest_algorithm(digest: str) -> str:
    """The algorithm of a digest ``ALGORITHM:HEX``, checked against what rxdata knows.

    Raises:
        RecordError: Not ``ALGORITHM:HEX`` with a known algorithm and its length of
            lower-case hex digits (the message says what was found and what is known).

    Example:
        >>> digest_algorithm("xxh3_128:" + "0" * 32)
        'xxh3_128'
        >>> try:
        ...     digest_algorithm("md5:" + "0" * 32)
        ... except RecordError as err:
        ...     print(str(err).split(";")[0])
        checksum algorithm 'md5' is not one this rxdata knows (xxh3_128, sha256)
    """
    algorithm, sep, hex_ = str(digest).partition(":")
    if not sep:
        raise RecordError(f"checksum {digest!r} is not ALGORITHM:HEX (e.g. xxh3_128:06b0...)")
    _hasher(algorithm)
    if len(hex_) != _HEX_LENGTH[algorithm] or hex_.strip("0123456789abcdef"):
        raise RecordError(
            f"checksum {digest!r}: a {algorithm} checksum has {_HEX_LENGTH[algorithm]} "
            "lower-case hex digits"
        )
    return algorithm


def recorded_digest(entry: Mapping[str, Any], where: str) -> str | None:
    """The checksum a shard's manifest entry or progress record holds, as ``ALGORITHM:HEX``.

    The one parser of a recorded checksum. ``entry[DIGEST_KEY]`` is read; entries written
    before it (rxdata before the XXH3 checksum) hold ``"sha256": HEX``, read as
    ``"sha256:HEX"``, so their shards are still checked, by SHA-256. ``None`` when the
    entry holds no checksum (an incomplete conversion's plan entry).

    Args:
        entry: The entry (a JSON object).
        where: The file it comes from, for the message.

    Raises:
        RecordError: The value is not a checksum this rxdata knows: a damaged manifest
            (or one a newer rxdata wrote), or the entry holds both keys (no rxdata writes
            both: which one to check would be a guess); the message names ``where``, the
            shard and the fix.

    Example:
        >>> recorded_digest({"sha256": "ab" * 32}, "manifest.json")[:12]
        'sha256:ababa'
        >>> recorded_digest({"path": "x.tfrecord"}, "manifest.json") is None
        True
    """
    if DIGEST_KEY in entry and _LEGACY_KEY in entry:  # no writer records both: tampered
        raise RecordError(
            f"{where}: damaged manifest: shard {entry.get('path')!r} records both "
            f"{DIGEST_KEY!r} and {_LEGACY_KEY!r} (rxdata writes one); re-run the convert "
            "command (with --overwrite) to rewrite it"
        )
    if DIGEST_KEY in entry:
        value = entry[DIGEST_KEY]
    elif _LEGACY_KEY in entry:
        value = f"sha256:{entry[_LEGACY_KEY]}"
    else:
        return None
    try:
        digest_algorithm(value)
    except RecordError as err:
        raise RecordError(
            f"{where}: damaged manifest: shard {entry.get('path')!r}: {err}; re-run the "
            "convert command (with --overwrite) to rewrite it, or upgrade rxdata"
        ) from None
    return str(value)


def _hasher(algorithm: str) -> Any:
    """A new running hash of ``algorithm``; an unknown one is refused here, and only here."""
    if algorithm not in _HASHES:
        raise RecordError(
            f"checksum algorithm {algorithm!r} is not one this rxdata knows "
            f"({', '.join(_HASHES)}); a newer rxdata may have written it"
        )
    return _HASHES[algorithm]()


class HashingWriter:
    """A binary file writer that computes the checksum and size of what it writes.

    Example:
        >>> with HashingWriter(open("h.bin", "wb")) as w:
        ...     _ = w.write(b"ab"); _ = w.write(b"c")
        >>> w.digest() == "xxh3_128:" + xxhash.xxh3_128_hexdigest(b"abc"), w.size
        (True, 3)
    """

    def __init__(self, file: IO[bytes], algorithm: str = DIGEST_ALGORITHM) -> None:
        self._file = file
        self._algorithm = algorithm
        self._hash = _hasher(algorithm)
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        self._file.write(data)
        return len(data)

    def digest(self) -> str:
        """The checksum of everything written, ``ALGORITHM:HEX``."""
        return f"{self._algorithm}:{self._hash.hexdigest()}"

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def fileno(self) -> int:
        return self._file.fileno()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HashingReader:
    """A file object that hashes every byte read through it.

    Example:
        >>> _ = write_bytes_atomic("r.bin", b"abc")
        >>> reader = HashingReader(open("r.bin"), "sha256")
        >>> reader.read(1), reader.drain()[:15]
        (b'a', 'sha256:ba7816bf')
    """

    def __init__(self, source: Any, algorithm: str = DIGEST_ALGORITHM) -> None:
        self._source = source
        self._algorithm = algorithm
        self._hash = _hasher(algorithm)

    def read(self, n: int) -> bytes:
        data = self._source.read(n)
        self._hash.update(data)
        return bytes(data)

    def drain(self) -> str:
        """Read (and hash) the rest of the file; the checksum of the whole file."""
        while self.read(1 << 20):
            pass
        return f"{self._algorithm}:{self._hash.hexdigest()}"


def _fsync_file(f: IO[bytes] | HashingWriter) -> None:
    f.flush()
    with contextlib.suppress(OSError, AttributeError, ValueError):
        os.fsync(f.fileno())


def fsync(path: PathLike) -> None:
    """Flush a local file's data to the disk (files written by others, e.g. TensorFlow)."""
    path_s = os.fspath(path)
    if is_remote(path_s) or not os.path.isfile(path_s):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path_s, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_dir(path: PathLike) -> None:
    """``fsync`` a local folder so a rename in it is durable (no-op remotely / on Windows)."""
    path_s = os.fspath(path)
    if is_remote(path_s) or not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path_s or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temporary_name(path: PathLike) -> str:
    """A hidden sibling of ``path`` to write to before renaming (``.NAME.tmp-PID-XXXX``)."""
    path_s = os.fspath(path)
    folder, name = dirname(path_s), path_s.rsplit("/", 1)[-1]
    if not is_remote(path_s):
        name = os.path.basename(path_s)
    tmp = f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return join(folder, tmp) if folder else tmp


@contextlib.contextmanager
def atomic_writer(path: PathLike) -> Iterator[HashingWriter]:
    """Write ``path`` atomically and hash it on the way: a temporary file, renamed at the end.

    On an exception the temporary file is removed and ``path`` is left as it was. The
    writer's ``digest()`` (:data:`DIGEST_ALGORITHM`) and ``size`` describe the final file.

    Example:
        >>> with atomic_writer("a.bin") as w:
        ...     _ = w.write(b"abc")
        >>> read_bytes("a.bin"), w.size
        (b'abc', 3)
    """
    path_s = os.fspath(path)
    tmp = temporary_name(path_s)
    try:
        with HashingWriter(open(tmp, "wb")) as writer:
            yield writer
            _fsync_file(writer)
        rename(tmp, path_s)
    except BaseException:
        with contextlib.suppress(Exception):
            if exists(tmp):
                remove(tmp)
        raise


def write_bytes_atomic(path: PathLike, data: bytes) -> str:
    """Write a file under a temporary name, ``fsync`` it, rename it into place; its digest."""
    with atomic_writer(path) as w:
        w.write(data)
    return w.digest()


def file_digests(path: PathLike, algorithms: Sequence[str] = (DIGEST_ALGORITHM,)) -> list[str]:
    """A local or remote file's checksums (``ALGORITHM:HEX``), one pass in 4 MiB blocks.

    Example:
        >>> _ = write_bytes_atomic("x.bin", b"abc")
        >>> [d[:20] for d in file_digests("x.bin", ("xxh3_128", "sha256"))]
        ['xxh3_128:06b05ab6733', 'sha256:ba7816bf8f01c']
    """
    return _hash_file(path, algorithms)[0]


def _hash_file(path: PathLike, algorithms: Sequence[str]) -> tuple[list[str], int]:
    """The file's checksums by each of ``algorithms`` and its size: one read, 4 MiB blocks."""
    hashes = [_hasher(a) for a in algorithms]
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            for h in hashes:
                h.update(block)
            size += len(block)
    return [f"{a}:{h.hexdigest()}" for a, h in zip(algorithms, hashes, strict=True)], size


def file_digest(path: PathLike, algorithm: str = DIGEST_ALGORITHM) -> str:
    """A local or remote file's checksum by ``algorithm`` (default :data:`DIGEST_ALGORITHM`).

    Example:
        >>> _ = write_bytes_atomic("x.bin", b"abc")
        >>> file_digest("x.bin")
        'xxh3_128:06b05ab6733a618578af5f94892f3950'
    """
    return file_digests(path, (algorithm,))[0]


def digest_and_size(path: PathLike) -> tuple[str, int]:
    """The checksum (:data:`DIGEST_ALGORITHM`) and size in bytes of a local or remote file."""
    digests, size = _hash_file(path, (DIGEST_ALGORITHM,))
    return digests[0], size


def file_identity(path: PathLike) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file, or ``None`` when it does not exist (as make and rsync).

    Other errors (a symlink loop, no permission on the folder) are raised: the caller
    reports them for the file.

    Example:
        >>> _ = write_bytes_atomic("id.bin", b"abcd")
        >>> file_identity("id.bin")[0], file_identity("no-such-file")
        (4, None)
    """
    path_s = os.fspath(path)
    if is_remote(path_s):
        import tensorflow as tf

        try:  # one request per file: no exists() first
            st = _gfile().stat(path_s)
        except tf.errors.NotFoundError:
            return None
        return int(st.length), int(st.mtime_nsec)
    try:
        st = os.stat(path_s)
    except FileNotFoundError:
        return None
    return int(st.st_size), int(st.st_mtime_ns)


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


def isfile(path: PathLike) -> bool:
    return exists(path) and not isdir(path)


def makedirs(path: PathLike) -> None:
    path_s = os.fspath(path)
    if is_remote(path_s):
        _gfile().makedirs(path_s)
    else:
        os.makedirs(path_s, exist_ok=True)


def rename(src: PathLike, dst: PathLike) -> None:
    """Move ``src`` to ``dst``, replacing it; local renames are made durable (dir fsync)."""
    src_s, dst_s = os.fspath(src), os.fspath(dst)
    if is_remote(src_s):
        _gfile().rename(src_s, dst_s, overwrite=True)
    else:
        fsync(src_s)  # the data reaches the disk before the new name does
        os.replace(src_s, dst_s)
        fsync_dir(os.path.dirname(dst_s))


def exchange(a: PathLike, b: PathLike) -> bool:
    """Swap the names of two local folders in one atomic step; False where unsupported.

    Linux's ``renameat2(RENAME_EXCHANGE)``: at every instant each name holds one complete
    folder. Elsewhere (another OS, a file system without it, remote paths) nothing is done
    and False comes back, so that the caller falls back to two renames.

    Example:
        >>> import pathlib
        >>> pathlib.Path("ex-a").mkdir(); pathlib.Path("ex-b").mkdir()
        >>> _ = (pathlib.Path("ex-a") / "a").write_bytes(b"")
        >>> if exchange("ex-a", "ex-b"):
        ...     assert (pathlib.Path("ex-b") / "a").exists()
    """
    a_s, b_s = os.fspath(a), os.fspath(b)
    if is_remote(a_s) or is_remote(b_s) or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # a C library without renameat2 (glibc < 2.28)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a_s), at_fdcwd, os.fsencode(b_s), rename_exchange) == 0:
        fsync_dir(os.path.dirname(os.path.abspath(b_s)))
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a_s)


def remove(path: PathLike) -> None:
    path_s = os.fspath(path)
    if is_remote(path_s):
        _gfile().remove(path_s)
    else:
        os.remove(path_s)


def remove_empty_dir(path: PathLike) -> bool:
    """Remove ``path`` if it is an empty folder; True when removed."""
    path_s = os.fspath(path)
    if not isdir(path_s) or listdir(path_s):
        return False
    if is_remote(path_s):
        with contextlib.suppress(Exception):
            _gfile().rmtree(path_s)
        return True
    try:
        os.rmdir(path_s)
    except OSError:
        return False
    return True


def remove_tree(path: PathLike) -> None:
    """Delete a folder and everything in it; a symbolic link inside is removed, not followed.

    Local folders use ``shutil.rmtree``, which on Linux and macOS resists symlink attacks
    (it works through file descriptors and never follows a link). A missing folder is fine.
    """
    path_s = os.fspath(path)
    if is_remote(path_s):
        if _gfile().exists(path_s):
            _gfile().rmtree(path_s)
        return
    import shutil

    if os.path.islink(path_s):
        os.remove(path_s)
    elif os.path.isdir(path_s):
        shutil.rmtree(path_s)


def listdir(path: PathLike) -> list[str]:
    """The names in a folder, sorted."""
    path_s = os.fspath(path)
    if is_remote(path_s):
        return sorted(str(n).rstrip("/") for n in _gfile().listdir(path_s))
    return sorted(os.listdir(path_s))


def glob_escape(path: PathLike) -> str:
    """``path`` with its glob characters (``*?[``) made literal, to build a pattern from.

    Every pattern built from a user-supplied path goes through this first: an output
    folder named ``x[ab]`` must not match the folders ``xa`` and ``xb``.

    Example:
        >>> glob_escape("out ü*?[y] é/run")
        'out ü[*][?][[]y] é/run'
    """
    import glob as _glob

    path_s = os.fspath(path)
    match = _URL.match(path_s)
    if match:  # never touch the scheme ("gs://")
        return match.group(0) + _glob.escape(path_s[match.end() :])
    return _glob.escape(path_s)


def glob(pattern: PathLike) -> list[str]:
    """The paths matching a pattern, sorted; escape literal parts with :func:`glob_escape`."""
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


def linked_folder(pattern: PathLike, path: str) -> str | None:
    """The folder link a glob of ``pattern`` went through to reach ``path``, if any.

    Only the folders that the pattern's wildcards matched count: a link in the literal
    part (``/data/link/*.tfrecord``) was named on purpose, and a matched file that is
    itself a link is read as a file. Remote paths have no links.

    Example:
        >>> import pathlib
        >>> pathlib.Path("lf/real").mkdir(parents=True)
        >>> pathlib.Path("lf/link").symlink_to("real")
        >>> _ = (pathlib.Path("lf/real") / "a.tfrecord").write_bytes(b"")
        >>> linked_folder("lf/*/a.tfrecord", "lf/link/a.tfrecord")
        'lf/link'
        >>> linked_folder("lf/link/*.tfrecord", "lf/link/a.tfrecord") is None
        True
    """
    pattern_s = os.fspath(pattern)
    if is_remote(pattern_s):
        return None
    literal = 0
    for part in pattern_s.split(os.sep):
        if re.search(r"[*?[]", part):
            break
        literal += 1
    parts = path.split(os.sep)
    for i in range(literal + 1, len(parts)):
        folder = os.sep.join(parts[:i])
        if os.path.islink(folder):
            return folder
    return None


def scan_tree(root: PathLike) -> tuple[list[str], list[str], list[str]]:
    """Every file under ``root``, and every link and special file, following no link (as git).

    Returns:
        ``(files, links, special)``: paths relative to ``root`` with ``/`` separators,
        sorted. ``files`` are regular files. ``links`` are symbolic links (to files or
        folders, dangling or not), reported and never followed, so nothing behind a link
        is listed. ``special`` are FIFOs, sockets and devices (opening one can block).
        Object stores (``gs://``) have only files. A missing ``root`` gives empty lists.

    Example:
        >>> import pathlib
        >>> (pathlib.Path("tree") / "a").mkdir(parents=True)
        >>> _ = (pathlib.Path("tree") / "a" / "f.txt").write_bytes(b"x")
        >>> (pathlib.Path("tree") / "ln").symlink_to("a")
        >>> scan_tree("tree")
        (['a/f.txt'], ['ln'], [])
    """
    root_s = os.fspath(root)
    files: list[str] = []
    links: list[str] = []
    special: list[str] = []
    if is_remote(root_s):
        if isdir(root_s):
            prefix = len(root_s.rstrip("/")) + 1
            files = [p[prefix:] for p in walk_files(root_s)]
        return sorted(files), links, special
    pending = [("", root_s)]
    while pending:
        relative, folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            name = f"{relative}/{entry.name}" if relative else entry.name
            if entry.is_symlink():  # checked before anything follows it
                links.append(name)
            elif entry.is_dir(follow_symlinks=False):
                pending.append((name, entry.path))
            elif entry.is_file(follow_symlinks=False):
                files.append(name)
            else:
                special.append(name)
    return sorted(files), sorted(links), sorted(special)


def first_link(root: PathLike, relative: str) -> str | None:
    """The first component of ``root/relative`` below ``root`` that is a symbolic link.

    ``relative`` is ``/``-separated. Components that do not exist end the check (nothing
    to follow there). Remote paths have no links: ``None``.

    Example:
        >>> import pathlib
        >>> pathlib.Path("fl/real").mkdir(parents=True)
        >>> pathlib.Path("fl/link").symlink_to("real")
        >>> first_link("fl", "link/x.tfrecord"), first_link("fl", "real/x.tfrecord")
        ('link', None)
    """
    root_s = os.fspath(root)
    if is_remote(root_s):
        return None
    parts = relative.split("/")
    for i in range(1, len(parts) + 1):
        if os.path.islink(os.path.join(root_s, *parts[:i])):
            return "/".join(parts[:i])
    return None


def local_path(path: PathLike) -> Path | None:
    """Return a ``Path`` for local paths, ``None`` for remote ones."""
    return None if is_remote(path) else Path(path)


__all__ = [
    "DIGEST_ALGORITHM",
    "DIGEST_ALGORITHMS",
    "DIGEST_KEY",
    "HashingReader",
    "HashingWriter",
    "atomic_writer",
    "digest_algorithm",
    "digest_and_size",
    "dirname",
    "exchange",
    "exists",
    "file_digest",
    "file_digests",
    "file_identity",
    "first_link",
    "fsync",
    "fsync_dir",
    "glob",
    "glob_escape",
    "is_remote",
    "isdir",
    "isfile",
    "join",
    "linked_folder",
    "listdir",
    "local_path",
    "makedirs",
    "open",
    "parent",
    "read_bytes",
    "recorded_digest",
    "remove",
    "remove_empty_dir",
    "remove_tree",
    "rename",
    "scan_tree",
    "temporary_name",
    "walk_files",
    "write_bytes_atomic",
]

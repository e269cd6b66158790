"""The sites of a conversion as dicts of numpy values, for PyTorch and plain Python.

Contract: :class:`Sites` is an iterable that reads TFRecord shards in plain Python
(:func:`rxdata.reader.read_records` and :func:`rxdata.reader.decode_example`) and never
imports TensorFlow, so it runs in a PyTorch ``DataLoader`` worker or any training loop.
Inside a ``DataLoader`` it deals the shards out among the workers, so that
``num_workers=N`` reads each site exactly once per epoch. A conversion is read through
its :class:`~rxdata.records.Records` handle (the split, the site count, the refusal of an
incomplete or damaged conversion), as :func:`rxdata.make_dataset` reads it; shard files
and globs stay supported for records without a manifest. PyTorch itself is optional:
this module needs numpy only (Pillow for png records). docs/training.md, "PyTorch", shows
the DataLoader recipe; docs/performance.md compares its speed with tf.data's.

Example:
    >>> import numpy as np, tempfile, os
    >>> from rxdata import tfrecord
    >>> path = os.path.join(tempfile.mkdtemp(), "one.tfrecord")
    >>> site = {"experiment": "U2OS-02", "plate": 3, "well": "C04", "site": 2}
    >>> _ = tfrecord.write_shard(path, [tfrecord.encode_example(
    ...     site, image=np.zeros((4, 4, 6), np.uint8))])
    >>> [(s["id_code"], s["site"], s["image"].dtype.name) for s in Sites(path)]
    [('U2OS-02_3_C04', 2, 'uint8')]
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from rxdata import _io
from rxdata.errors import OptionsError, RecordError
from rxdata.reader import OnError, decode_example, list_shards, read_records
from rxdata.records import Records, open_records
from rxdata.tfrecord import SIRNA_ID

__all__ = ["Sites"]

#: What an absent optional value becomes in a :class:`Sites` record (as in the tf.data
#: pipeline: ``""`` for text, ``-1`` for integers), so that batching code can stack them.
_MISSING_TEXT = ""
_MISSING_INT = -1
_ON_ERRORS = ("raise", "skip", "warn")


class Sites:
    """The sites of a conversion (or of shard files) as dicts of numpy values, no TensorFlow.

    An iterable for plain-Python training loops and ``torch.utils.data.DataLoader``: each
    iteration reads this part's shards in Python (:func:`decode_example`; nothing imports
    TensorFlow) and yields one dict per site, with the image as ``(H, W, C)`` ``uint8`` and
    the metadata of :func:`decode_example`. Absent optional values are ``""`` (text) and
    ``-1`` (``sirna_id`` of an unlabeled site), as in the tf.data pipeline, so that
    PyTorch's default collate batches every key.

    Sharding: the sites are split into ``shard_count`` parts, and inside a DataLoader
    worker each part again among the loader's workers (``torch.utils.data.get_worker_info``,
    looked up only when PyTorch is already imported), so that ``DataLoader(num_workers=N)``
    reads each site exactly once per epoch. Whole shard files are dealt out round robin;
    with fewer files than parts, every part reads every file and keeps every
    ``count``-th record. Use ``shard_index``/``shard_count`` for several processes
    (``torch.distributed``: rank and world size).

    A conversion is read through its :class:`~rxdata.records.Records` (given, or opened
    from a folder with :func:`~rxdata.records.open_records`): it names the shards of a
    split, counts the sites, and refuses an incomplete or damaged conversion, exactly as
    :func:`rxdata.make_dataset` does.

    Integrity: each record's length CRC is checked. Given a conversion, each shard's bytes
    are also hashed as they are read and compared with the manifest's checksum at the
    shard's end (every byte checked; XXH3-128, or SHA-256 for a manifest of an earlier
    version); bare shard files have no such check (the payload
    CRC needs a fast CRC-32C that Python lacks).

    Args:
        source: A :class:`~rxdata.records.Records`; a conversion's output folder (or a
            folder inside it, or above exactly one: :func:`~rxdata.records.open_records`);
            or, for records without a manifest, a glob pattern, a shard path, or a list
            of them.
        split: With a conversion: only the shards of this split (``"train"`` or
            ``"test"``, one of :attr:`Records.splits <rxdata.records.Records.splits>`);
            default all.
        allow_incomplete: With a conversion: read the finished shards of an incomplete
            one (a log line says how many sites of how many) instead of raising.
        shard_index: This process's part, ``0 <= shard_index < shard_count``.
        shard_count: The number of parts.
        decode: Decode images (default); ``False`` keeps the stored bytes.
        on_error: ``"raise"`` (default) a :class:`~rxdata.errors.RecordError` naming the
            file and record, ``"skip"`` bad records, or ``"warn"`` and skip them.
        check_digest: With a conversion folder, hash each shard as it is read and compare
            with the manifest's checksum (default). XXH3-128 costs about 0.02 ms of CPU
            per raw 512 px site (SHA-256, in manifests of earlier versions, 0.8 ms);
            ``False`` skips it, e.g. once ``rxdata verify`` has passed. (Named
            ``check_sha256`` while the checksum was SHA-256.)

    Attributes:
        files: The shard files, sorted.
        count: The number of sites in all parts (from the manifest), or ``None``.
        records: The conversion read, or ``None`` for bare shard files; its
            :meth:`~rxdata.records.Records.sites` is the site table.

    Raises:
        OptionsError: A bad ``shard_index``/``shard_count``/``on_error``, ``split``
            without a conversion, or a split the conversion lacks (the message names
            the ones it has).
        IncompleteConversionError: The conversion is incomplete or still running (and
            ``allow_incomplete`` is False).
        RecordError: The manifest is damaged (nothing it names outside is opened).
        FileNotFoundError: Nothing matches ``source``, or it is an empty list.

    Example:
        >>> import numpy as np, tempfile, os
        >>> from rxdata import tfrecord
        >>> folder = tempfile.mkdtemp()
        >>> for n in range(3):
        ...     site = {"experiment": "RPE-01", "plate": 1, "well": f"B0{n + 2}", "site": 1}
        ...     _ = tfrecord.write_shard(os.path.join(folder, f"{n}.tfrecord"),
        ...         [tfrecord.encode_example(site, image=np.zeros((2, 2, 6), np.uint8))])
        >>> sites = Sites(os.path.join(folder, "*.tfrecord"), shard_index=1, shard_count=2)
        >>> [(s["id_code"], s["sirna_id"], s["image"].shape) for s in sites]
        [('RPE-01_1_B03', -1, (2, 2, 6))]
    """

    def __init__(
        self,
        source: Records | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        split: str | None = None,
        allow_incomplete: bool = False,
        shard_index: int = 0,
        shard_count: int = 1,
        decode: bool = True,
        on_error: OnError = "raise",
        check_digest: bool = True,
    ) -> None:
        if on_error not in _ON_ERRORS:
            raise OptionsError(f"on_error={on_error!r}; allowed: {', '.join(_ON_ERRORS)}")
        if not isinstance(shard_count, int) or shard_count < 1:
            raise OptionsError(f"shard_count={shard_count!r}; need an integer >= 1")
        if not isinstance(shard_index, int) or not 0 <= shard_index < shard_count:
            raise OptionsError(
                f"shard_index={shard_index!r}; need an integer in 0..{shard_count - 1}"
            )
        self.shard_index, self.shard_count = shard_index, shard_count
        self.decode, self.on_error, self.check_digest = decode, on_error, check_digest
        if not isinstance(allow_incomplete, bool):
            raise OptionsError(f"allow_incomplete={allow_incomplete!r} must be True or False")
        self._digests: dict[str, str] = {}
        self.count: int | None = None
        self.records: Records | None = None
        if isinstance(source, (str, os.PathLike)) and _io.isdir(os.fspath(source)):
            source = open_records(source)
        if isinstance(source, Records):
            self.files = self._from_records(source, split, allow_incomplete)
        elif split is not None:
            raise OptionsError(
                f"split={split!r} needs a conversion (its manifest tells each shard's "
                f"split), not {source!r}; pass its folder, rxdata.open_records(folder), or "
                "a pattern of that split's shards"
            )
        else:
            self.files = list_shards(source)
            if not self.files:
                raise FileNotFoundError(
                    f"no shards to read: {source!r} names none; pass a conversion folder, "
                    "a glob of .tfrecord files or a list of them"
                )

    def _from_records(
        self, records: Records, split: str | None, allow_incomplete: bool
    ) -> list[str]:
        shards = records.shards(split, allow_incomplete=allow_incomplete)
        where = records.manifest_path
        for file, entry in shards:
            digest = _io.recorded_digest(entry, where)  # recorded once it is complete
            if digest is not None:
                self._digests[file] = digest
        self.count = sum(int(e.get("count", len(e["site_ids"]))) for _, e in shards)
        self.records = records
        return sorted(file for file, _ in shards)

    def part(self) -> tuple[int, int]:
        """``(index, count)`` of the part this process (and DataLoader worker) reads."""
        index, count = self.shard_index, self.shard_count
        torch_data = sys.modules.get("torch.utils.data")
        info = torch_data.get_worker_info() if torch_data is not None else None
        if info is not None:
            index, count = index * info.num_workers + info.id, count * info.num_workers
        return index, count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        index, count = self.part()
        if len(self.files) >= count:
            files, keep = self.files[index::count], None
        else:
            files, keep = self.files, (index, count)  # fewer files than parts
        position = 0
        for path in files:
            for record in self._read(path):
                position += 1
                if keep is None or (position - 1) % keep[1] == keep[0]:
                    yield _fill_missing(record)

    def _read(self, path: str) -> Iterator[dict[str, Any]]:
        """Every record of one shard, decoded; bad records handled by ``on_error``."""
        digest = self._digests.get(path) if self.check_digest else None
        records = read_records(path, on_error=self.on_error, digest=digest)
        for index, data in records:
            try:
                record = decode_example(data, decode=self.decode)
            except RecordError as err:
                if self.on_error == "raise":
                    raise RecordError(f"{path}: record {index}: {err}") from None
                if self.on_error == "warn":
                    warnings.warn(f"{path}: record {index}: {err}", stacklevel=3)
                continue
            yield record

    def __repr__(self) -> str:
        return (
            f"Sites({len(self.files)} shard(s), count={self.count}, "
            f"part {self.shard_index} of {self.shard_count})"
        )


def _fill_missing(record: dict[str, Any]) -> dict[str, Any]:
    for key, value in record.items():
        if value is None:
            record[key] = _MISSING_INT if key == SIRNA_ID else _MISSING_TEXT
    return record

"""Data roots on disk: the one rule that classifies a folder as an RxRx1 layout.

:mod:`rxdata.naming` owns the names (constants, keys, parsers, :func:`~rxdata.naming.image_path`)
and touches no file; this module is the part that looks at the disk. :func:`find_root`
classifies a root (Kaggle or full release, see its rule), :func:`detect_layout` is its
``layout``, and :class:`DataRoot` joins :func:`~rxdata.naming.image_path`'s relative paths
to a root, finding each experiment folder as it is spelled on disk (``HUVEC-1`` or
``HUVEC-01``). Readers, the converter, ``rxdata show`` and ``rxdata stats`` all call it.
Remote roots (``gs://``) go through :mod:`rxdata._io`; their answers are cached per
process (:func:`clear_cache`).

Example:
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/train/HEPG2-01/Plate1")
    >>> data = find_root(root)
    >>> data.layout, data.path(None, "HEPG2-1", 1, "B03", 2, 5) == (
    ...     f"{root}/train/HEPG2-01/Plate1/B03_s2_w5.png")
    ('kaggle', True)
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rxdata import _io
from rxdata.errors import MetadataError, OptionsError
from rxdata.naming import (
    DATASETS,
    EXPERIMENT_PATTERN,
    IMAGES_FOLDER,
    KAGGLE_FILES,
    LAYOUTS,
    METADATA_FILE,
    Layout,
    experiment_spellings,
    image_path,
)

__all__ = ["DataRoot", "clear_cache", "detect_layout", "find_root"]


def _parent(path: str) -> str:
    if _io.is_remote(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.normpath(path))


def _basename(path: str) -> str:
    return path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DataRoot:
    """A classified data root: where the images are and how they are named.

    Made by :func:`find_root`. ``base`` is the folder that :func:`image_path`'s relative
    paths hang off; it differs from ``root`` (what the user gave) when ``root`` is the
    full release's ``images/`` folder itself (``base`` is then its parent) or holds the
    Kaggle folders inside ``images/`` (``base`` is then ``{root}/images``).

    Attributes:
        root: The path as given (local or remote), as a string.
        base: The folder relative image paths are joined to.
        layout: ``'kaggle'`` or ``'full'``.
        datasets: The Kaggle data-set folders looked for (``('train', 'test')``).

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/images/HUVEC-01/Plate2")
        >>> data = find_root(f"{root}/images")
        >>> data.layout, data.base == root
        ('full', True)
        >>> data.path(None, "HUVEC-1", 2, "B03", 1, 4) == (
        ...     f"{root}/images/HUVEC-01/Plate2/B03_s1_w4.png")
        True
    """

    root: str
    base: str
    layout: Layout
    datasets: tuple[str, ...] = DATASETS

    def folder(self, dataset: str | None) -> str:
        """The folder that holds the experiment folders (``{base}/images`` or the data set's)."""
        if self.layout == "full":
            return _io.join(self.base, IMAGES_FOLDER)
        if not dataset:
            raise OptionsError(
                f"the Kaggle layout under {self.base} needs dataset='train' or 'test', "
                f"got {dataset!r}"
            )
        return _io.join(self.base, dataset)

    def locate(self, dataset: str | None, experiment: str) -> tuple[str | None, str]:
        """Find ``(dataset, experiment)`` as they are on disk.

        This is the one place experiment spellings are resolved against the disk: the
        folder is looked up in each of :func:`experiment_spellings` (``HUVEC-1`` finds
        ``HUVEC-01`` and back). In the Kaggle layout, ``dataset=None`` finds the
        experiment under ``train/`` or ``test/``. The full release has no dataset
        folders: ``dataset`` is returned as ``None``. When no folder exists the given
        spelling is returned, so that the caller's error names the path it expected.

        Raises:
            OptionsError: Kaggle layout, ``dataset=None``, and the experiment is under
                none of the data-set folders.
            ParseError: ``experiment`` is not an experiment name.
        """
        if _io.is_remote(self.base):
            return _locate_remote(self, dataset, str(experiment))
        return self._locate(dataset, str(experiment))

    def _locate(self, dataset: str | None, experiment: str) -> tuple[str | None, str]:
        spellings = experiment_spellings(str(experiment))
        if self.layout == "full":
            candidates: Sequence[str | None] = (None,)
        elif dataset:
            candidates = (dataset,)
        else:
            candidates = self.datasets
        for ds in candidates:
            folder = self.folder(ds)
            for name in spellings:
                if _io.isdir(_io.join(folder, name)):
                    return ds, name
        if self.layout == "kaggle" and not dataset:
            places = " nor ".join(_io.join(self.base, ds) for ds in self.datasets)
            raise OptionsError(
                f"experiment {experiment!r} (spelled {' or '.join(spellings)}) is under "
                f"neither {places}; pass dataset='train' or 'test'"
            )
        return (None if self.layout == "full" else dataset), str(experiment)

    def path(
        self,
        dataset: str | None,
        experiment: str,
        plate: int,
        well: str,
        site: int,
        channel: int,
    ) -> str:
        """Absolute path of one channel image, experiment and dataset found on disk.

        Example:
            >>> DataRoot("/nonexistent", "/nonexistent", "full").path(
            ...     None, "RPE-05", 3, "D19", 2, 1)
            '/nonexistent/images/RPE-05/Plate3/D19_s2_w1.png'
        """
        ds, exp = self.locate(dataset, experiment)
        return self.join(image_path(ds, exp, plate, well, site, channel, self.layout))

    def join(self, relative_path: str) -> str:
        """Join an :func:`image_path` (relative) to :attr:`base`."""
        return _io.join(self.base, *relative_path.split("/"))


# Each folder check on a remote root (gs://...) is a network round trip, and readers ask
# per site: remote answers are remembered for the process. A stale answer cannot give wrong
# pixels, only a loud ImageNotFoundError naming the path; `clear_cache()` forgets them.
@functools.lru_cache(maxsize=1024)
def _locate_remote(root: DataRoot, dataset: str | None, experiment: str) -> tuple[str | None, str]:
    return root._locate(dataset, experiment)


@functools.lru_cache(maxsize=256)
def _detect_remote(root: str, datasets: tuple[str, ...]) -> DataRoot | None:
    return _detect_uncached(root, datasets)


def clear_cache() -> None:
    """Forget the remembered layouts and experiment folders of remote (``gs://``) roots.

    Call it after changing the folders of a remote data root within one process.

    Example:
        >>> clear_cache()
    """
    _locate_remote.cache_clear()
    _detect_remote.cache_clear()


def _detect(root: str, datasets: Sequence[str]) -> DataRoot | None:
    """The detection rule of :func:`find_root`; ``None`` when nothing is recognised."""
    if _io.is_remote(root):
        return _detect_remote(root, tuple(datasets))
    return _detect_uncached(root, tuple(datasets))


def _detect_uncached(root: str, datasets: tuple[str, ...]) -> DataRoot | None:
    ds = datasets

    def has_datasets(folder: str) -> bool:
        return any(_io.isdir(_io.join(folder, d)) for d in ds)

    images = _io.join(root, IMAGES_FOLDER)
    if _io.isdir(images):
        if has_datasets(images):
            return DataRoot(root, images, "kaggle", ds)
        if has_datasets(root):
            found = [d for d in ds if _io.isdir(_io.join(root, d))]
            raise MetadataError(
                f"{root}: ambiguous data root, it holds both the full release's images/ and "
                f"the Kaggle folder(s) {found}; pass the folder of one layout, or layout="
            )
        return DataRoot(root, root, "full", ds)
    if has_datasets(root):
        return DataRoot(root, root, "kaggle", ds)
    if _basename(root) == IMAGES_FOLDER and _io.isdir(root):
        experiments = [
            p
            for p in _io.glob(_io.join(_io.glob_escape(root), "*-*"))
            if re.fullmatch(EXPERIMENT_PATTERN, _basename(p))
        ]
        if experiments:
            return DataRoot(root, _parent(root), "full", ds)
    if _io.exists(_io.join(root, METADATA_FILE)):
        return DataRoot(root, root, "full", ds)
    if any(_io.exists(_io.join(root, f)) for f in KAGGLE_FILES[:2]):
        return DataRoot(root, root, "kaggle", ds)
    return None


def find_root(
    root: str | os.PathLike[str],
    *,
    layout: str | None = None,
    datasets: Sequence[str] = DATASETS,
) -> DataRoot:
    """Classify a data root: the one layout rule every rxdata reader uses.

    The rule, first match wins:

    1. ``{root}/images/`` is a folder: the full release with ``base=root``, unless
       ``images/`` itself holds ``train/`` or ``test/`` (Kaggle images kept in an
       ``images/`` folder: Kaggle with ``base={root}/images``). A root that also holds
       ``train/`` or ``test/`` next to ``images/`` is ambiguous: an error.
    2. ``{root}/train/`` or ``{root}/test/`` is a folder: Kaggle, ``base=root``.
    3. ``root`` is itself a folder named ``images`` holding experiment folders
       (``HUVEC-01``...): the full release with ``base`` its parent.
    4. Metadata only: ``{root}/metadata.csv`` means the full release, ``train.csv`` or
       ``test.csv`` Kaggle (``base=root``; there are no images to find).

    An explicit ``layout`` is trusted: the detected root is used when it agrees,
    otherwise ``base=root``.

    Args:
        root: The data root as given (local path or ``gs://`` URL).
        layout: ``'kaggle'``, ``'full'`` or ``None`` to detect.
        datasets: The Kaggle data-set folder names (``train``, ``test``).

    Raises:
        MetadataError: nothing recognisable under ``root`` (the message names ``root``
            and what was looked for), or both layouts at once.
        OptionsError: ``layout`` is not one of :data:`LAYOUTS`.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/train/HEPG2-01")
        >>> data = find_root(root)
        >>> data.layout, data.locate(None, "HEPG2-1")
        ('kaggle', ('train', 'HEPG2-01'))
    """
    root_s = os.fspath(root)
    if layout is not None and layout not in LAYOUTS:
        raise OptionsError(f"layout={layout!r} is not one of {LAYOUTS}")
    try:
        found = _detect(root_s, datasets)
    except MetadataError:
        if layout is None:
            raise
        found = None
    if layout is None:
        if found is None:
            raise MetadataError(
                f"{root_s}: no RxRx1 layout found; looked for {IMAGES_FOLDER}/ (full release), "
                f"{'/ or '.join(datasets)}/ (Kaggle), a folder named {IMAGES_FOLDER} holding "
                f"experiment folders, {METADATA_FILE} or {' or '.join(KAGGLE_FILES[:2])}"
            )
        return found
    if found is not None and found.layout == layout:
        return found
    return DataRoot(root_s, root_s, "kaggle" if layout == "kaggle" else "full", tuple(datasets))


def detect_layout(root: str | os.PathLike[str], *, datasets: Sequence[str] = DATASETS) -> Layout:
    """The layout of a data root by the rule of :func:`find_root`.

    Raises:
        MetadataError: no layout (or both) found under ``root``.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "images").mkdir()
        >>> detect_layout(d)
        'full'
    """
    return find_root(root, datasets=datasets).layout

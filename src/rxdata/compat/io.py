"""rxrx1-utils' ``rxrx.io`` names, argument orders and defaults, as thin calls into rxdata.

Contract:

* Every public name of ``rxrx.io`` is here, with the same parameters in the same order
  and the same defaults, so ``from rxdata.compat import io as rio`` (was
  ``from rxrx import io as rio``) is the whole migration. Each function calls rxdata's
  public API; nothing here reads a file itself.
* Results have the old shapes, dtypes and columns: sites are ``(H, W, C) uint8``, RGB
  pictures ``(H, W, 3) int64``, :func:`combine_metadata` the old site table indexed by
  ``id_code``, and :func:`image_path` the very string the old function built.
* What the old module got silently wrong stays fixed: the image size is read from the
  files (the old code assumed 512 x 512), a missing, corrupt or 16-bit PNG raises
  :class:`~rxdata.errors.ImageNotFoundError` or :class:`~rxdata.errors.ImageDecodeError`
  naming the file, and malformed metadata rows raise
  :class:`~rxdata.errors.MetadataError` naming the file and row.
* :data:`DEFAULT_BASE_PATH` is still Recursion's competition bucket, as a default for
  paths only: nothing is ever downloaded. A call that cannot read a ``gs://`` path (no
  network, no access, a bucket that no longer serves the files) raises
  :class:`~rxdata.errors.ImageReadError` naming the path and saying to pass
  ``base_path`` (a local folder or your own ``gs://`` copy).
* No TensorFlow at import time (the old module imported it to read files); ``gs://``
  paths load it when first read, as everywhere in rxdata.

New code should call ``rxdata`` directly; the migration guide maps each name here to its
rxdata counterpart.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

import rxdata
from rxdata import color, images
from rxdata.errors import ImageReadError, MetadataError, OptionsError, RxDataError

__all__ = [
    "DEFAULT_BASE_PATH",
    "DEFAULT_CHANNELS",
    "DEFAULT_IMAGES_BASE_PATH",
    "DEFAULT_METADATA_BASE_PATH",
    "RGB_MAP",
    "combine_metadata",
    "convert_tensor_to_rgb",
    "image_path",
    "load_image",
    "load_images_as_tensor",
    "load_site",
    "load_site_as_rgb",
]

DEFAULT_BASE_PATH = "gs://rxrx1-us-central1"
"""rxrx1-utils' default data root, Recursion's 2019 competition bucket. Only a default for
paths: rxdata downloads nothing, and reading from it needs network access and a bucket
that still serves the files. Pass your own ``base_path`` instead."""

DEFAULT_METADATA_BASE_PATH = f"{DEFAULT_BASE_PATH}/metadata"
"""Where :func:`combine_metadata` looks by default (the old value, ``{bucket}/metadata``)."""

DEFAULT_IMAGES_BASE_PATH = f"{DEFAULT_BASE_PATH}/images"
"""Where the image functions look by default (the old value, ``{bucket}/images``)."""

DEFAULT_CHANNELS: tuple[int, ...] = color.DEFAULT_CHANNELS
"""The six RxRx1 channels, ``(1, 2, 3, 4, 5, 6)``: the same object as
``rxdata.color.DEFAULT_CHANNELS``."""

RGB_MAP: dict[int, dict[str, Any]] = {
    channel: {"rgb": np.array(entry["rgb"]), "range": list(entry["range"])}
    for channel, entry in color.RGB_MAP.items()
}
"""The colour map in the old types (``'rgb'`` a numpy array, ``'range'`` a list), so code
that edits a copy of it keeps working. Values are those of ``rxdata.color.RGB_MAP``."""

_RGB_DTYPE = np.int64  # what the old convert_tensor_to_rgb returned (np.array(..., dtype=int))


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _remote_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn a failure to reach a ``gs://`` path into a message that says what to pass.

    TensorFlow's file errors (no network, no access) become an
    :class:`~rxdata.errors.ImageReadError`.
    """

    @functools.wraps(fn)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except RxDataError:
            raise
        except Exception as err:
            if not type(err).__module__.startswith("tensorflow"):
                raise
            text = str(err).strip().splitlines()
            where = next((w for w in str(err).split() if w.startswith("gs://")), "gs://")
            default = where.startswith(DEFAULT_BASE_PATH)
            raise ImageReadError(
                f"cannot read {where} ({text[0] if text else type(err).__name__})"
                + (
                    f"; that is rxrx1-utils' default bucket {DEFAULT_BASE_PATH}, which "
                    "needs network access and is not downloaded"
                    if default
                    else ""
                )
                + "; pass base_path= a local copy of the data (or a gs:// copy you can read)"
            ) from None

    return call


def _number(value: Any) -> Any:
    """Accept a decimal string (e.g. from ``id_code.split('_')``) where a number is meant.

    The old functions formatted whatever they got into the path, so ``plate='1'`` worked;
    anything that is not a plain digit string is passed on for rxdata to validate.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


@_remote_errors
def load_image(image_path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Load one channel PNG as an ``(H, W) uint8`` array.

    Calls ``rxdata.images.read_png``, which also checks that the file is an 8-bit grayscale PNG
    (the old function returned whatever ``imread`` made of it, RGB for a colour PNG).

    Args:
        image_path: A local path or a ``gs://`` URL.

    Returns:
        The channel image.

    Raises:
        ImageNotFoundError: The file does not exist (names the path).
        ImageDecodeError: Corrupt, or not an 8-bit grayscale PNG (names the file).

    Example:
        >>> import os, tempfile, numpy as np
        >>> from PIL import Image
        >>> path = os.path.join(tempfile.mkdtemp(), "B02_s1_w1.png")
        >>> Image.fromarray(np.full((2, 3), 7, np.uint8)).save(path)
        >>> image = load_image(path)
        >>> image.shape, image.dtype.name, int(image[0, 0])
        ((2, 3), 'uint8', 7)
    """
    image: npt.NDArray[np.uint8] = images.read_png(image_path)
    return image


@_remote_errors
def load_images_as_tensor(
    image_paths: Sequence[str | os.PathLike[str]], dtype: npt.DTypeLike = np.uint8
) -> npt.NDArray[Any]:
    """Stack channel PNGs into one ``(H, W, len(image_paths))`` array of ``dtype``.

    Each file is read with ``rxdata.images.read_png``. The old function allocated a
    ``512 x 512`` array whatever the files held; here the size is read from the first file
    and every other file must have the same size. Values are cast to ``dtype`` as before
    (no scaling).

    Args:
        image_paths: One path per channel, in the order of the last axis.
        dtype: The result's dtype (default ``uint8``, as before).

    Returns:
        The stacked channels.

    Raises:
        OptionsError: ``image_paths`` is empty or a single string.
        ImageNotFoundError: A file does not exist (names the path).
        ImageDecodeError: A file is corrupt, not 8-bit grayscale, or of another size than
            the first (names the file).

    Example:
        >>> import os, tempfile, numpy as np
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> paths = [os.path.join(root, f"B02_s1_w{c}.png") for c in (1, 2)]
        >>> for c, path in enumerate(paths, 1):
        ...     Image.fromarray(np.full((4, 5), c, np.uint8)).save(path)
        >>> t = load_images_as_tensor(paths, dtype=np.float32)
        >>> t.shape, t.dtype.name, t[0, 0].tolist()
        ((4, 5, 2), 'float32', [1.0, 2.0])
    """
    if isinstance(image_paths, (str, bytes, os.PathLike)):
        raise OptionsError(
            f"image_paths={image_paths!r} is a single path; pass a list with one path per channel"
        )
    paths = list(image_paths)
    if not paths:
        raise OptionsError(
            "image_paths is empty; pass one path per channel (the size is read from them)"
        )
    first: npt.NDArray[np.uint8] = images.read_png(paths[0])
    shape = (int(first.shape[0]), int(first.shape[1]))
    planes = [first, *(images.read_png(path, expected_shape=shape) for path in paths[1:])]
    stacked: npt.NDArray[Any] = np.stack(planes, axis=-1).astype(dtype, copy=False)
    return stacked


def convert_tensor_to_rgb(
    t: npt.ArrayLike,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    vmax: float = 255,
    rgb_map: Mapping[int, Mapping[str, Any]] = RGB_MAP,
) -> npt.NDArray[np.int64]:
    """Colour a site as an ``(H, W, 3) int64`` RGB picture, values 0..255.

    Calls ``rxdata.convert_tensor_to_rgb`` (identical values) and returns ``int64`` like the
    old function; ``rxdata.convert_tensor_to_rgb`` itself returns ``uint8``, eight times
    smaller. Any image size works (the old function reshaped to ``512 x 512``).

    Args:
        t: The site, ``(H, W, C)`` with ``C == len(channels)`` (a batch ``(..., H, W, C)``
            works too).
        channels: The channel number of each plane of ``t``.
        vmax: The input value that means full scale.
        rgb_map: Colour map: channel -> ``{'rgb': (r, g, b), 'range': (lo, hi)}``.

    Returns:
        The RGB picture.

    Raises:
        OptionsError: Channel count mismatch, a channel missing from ``rgb_map``, a bad
            map entry or a bad ``vmax``.

    Example:
        >>> import numpy as np
        >>> site = np.zeros((1, 1, 6), np.uint8)
        >>> site[..., 0] = 51  # channel 1 at the top of its range
        >>> rgb = convert_tensor_to_rgb(site)
        >>> rgb.dtype.name, rgb[0, 0].tolist()
        ('int64', [19, 0, 249])
    """
    rgb: npt.NDArray[np.uint8] = rxdata.convert_tensor_to_rgb(t, channels, vmax, rgb_map)
    return rgb.astype(_RGB_DTYPE)


def image_path(
    dataset: str,
    experiment: str,
    plate: int,
    address: str,
    site: int,
    channel: int,
    base_path: str | os.PathLike[str] = DEFAULT_IMAGES_BASE_PATH,
) -> str:
    """The path of one channel image: ``{base_path}/{dataset}/{experiment}/Plate{plate}/...``.

    The seventh argument is ``base_path``, as before (in ``rxdata.image_path`` it is the
    layout, and the result is relative). The relative part comes from
    ``rxdata.image_path``, which checks every value (an unknown dataset, a plate outside
    1-4 or a channel outside 1-6 raises :class:`~rxdata.errors.ParseError` instead of
    naming a file that cannot exist); it is joined to ``base_path`` with ``os.path.join``
    like the old function, so the string is the one it built. Numbers may be given as
    digit strings (``'1'``), as the old function allowed.

    Args:
        dataset: ``'train'`` or ``'test'``.
        experiment: e.g. ``'HEPG2-01'``.
        plate: 1-4.
        address: The well, e.g. ``'B03'``.
        site: 1 or 2.
        channel: 1-6.
        base_path: The folder holding ``train/`` and ``test/`` (local or ``gs://``).

    Returns:
        The path; ``rxdata.parse_image_path`` reads it back.

    Raises:
        ParseError: A value is out of range or malformed.

    Example:
        >>> image_path("train", "HEPG2-01", 1, "B03", 2, 5)
        'gs://rxrx1-us-central1/images/train/HEPG2-01/Plate1/B03_s2_w5.png'
        >>> image_path("test", "U2OS-04", "3", "D19", 1, 1, "rxrx1")
        'rxrx1/test/U2OS-04/Plate3/D19_s1_w1.png'
    """
    relative: str = rxdata.image_path(
        dataset, experiment, _number(plate), address, _number(site), _number(channel)
    )
    return os.path.join(os.fspath(base_path), *relative.split("/"))


@_remote_errors
def load_site(
    dataset: str,
    experiment: str,
    plate: int,
    well: str,
    site: int,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    base_path: str | os.PathLike[str] = DEFAULT_IMAGES_BASE_PATH,
) -> npt.NDArray[np.uint8]:
    """Load a site's channel images as one ``(H, W, len(channels)) uint8`` array.

    Calls ``rxdata.load_site`` with the old default ``base_path``. The size is read from the
    files (the old function assumed 512 x 512); a full-release root (``images/...``) is
    recognised too.

    Args:
        dataset: ``'train'`` or ``'test'``.
        experiment: e.g. ``'RPE-05'``.
        plate: 1-4.
        well: e.g. ``'D19'``.
        site: 1 or 2.
        channels: Channel numbers to stack, in this order.
        base_path: The folder holding ``train/`` and ``test/`` (local or ``gs://``).

    Returns:
        The site, channels last.

    Raises:
        ImageNotFoundError: A channel file is missing (names the path).
        ImageDecodeError: A channel is corrupt, not 8-bit grayscale or of another size.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(f"{root}/train/RPE-05/Plate3")
        >>> for c in (1, 2):
        ...     Image.fromarray(np.full((2, 3), c, np.uint8)).save(
        ...         image_path("train", "RPE-05", 3, "D19", 2, c, root))
        >>> x = load_site("train", "RPE-05", 3, "D19", 2, (2, 1), root)
        >>> x.shape, x.dtype.name, x[0, 0].tolist()
        ((2, 3, 2), 'uint8', [2, 1])
    """
    loaded: npt.NDArray[np.uint8] = rxdata.load_site(
        dataset,
        experiment,
        _number(plate),
        well,
        _number(site),
        channels,
        base_path,
        layout="kaggle",  # rxrx1-utils always built {base}/{dataset}/{experiment}/...
    )
    return loaded


@_remote_errors
def load_site_as_rgb(
    dataset: str,
    experiment: str,
    plate: int,
    well: str,
    site: int,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    base_path: str | os.PathLike[str] = DEFAULT_IMAGES_BASE_PATH,
    rgb_map: Mapping[int, Mapping[str, Any]] = RGB_MAP,
) -> npt.NDArray[np.int64]:
    """Load a site and colour it: an ``(H, W, 3) int64`` picture, as before.

    Calls ``rxdata.load_site_as_rgb`` (which returns ``uint8``) and widens the result to
    the old ``int64``.

    Args:
        dataset: ``'train'`` or ``'test'``.
        experiment: e.g. ``'RPE-05'``.
        plate: 1-4.
        well: e.g. ``'D19'``.
        site: 1 or 2.
        channels: Channel numbers to load and colour.
        base_path: The folder holding ``train/`` and ``test/`` (local or ``gs://``).
        rgb_map: Colour map: channel -> ``{'rgb': (r, g, b), 'range': (lo, hi)}``.

    Returns:
        The RGB picture, values 0..255.

    Raises:
        ImageNotFoundError: A channel file is missing (names the path).
        ImageDecodeError: A channel is corrupt, not 8-bit grayscale or of another size.
        OptionsError: A channel is missing from ``rgb_map`` or its entry is malformed.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(f"{root}/test/HEPG2-08/Plate1")
        >>> Image.fromarray(np.full((2, 2), 51, np.uint8)).save(
        ...     image_path("test", "HEPG2-08", 1, "B02", 1, 1, root))
        >>> rgb = load_site_as_rgb("test", "HEPG2-08", 1, "B02", 1, (1,), root)
        >>> rgb.shape, rgb.dtype.name, rgb[0, 0].tolist()
        ((2, 2, 3), 'int64', [19, 0, 249])
    """
    rgb: npt.NDArray[np.uint8] = rxdata.load_site_as_rgb(
        dataset,
        experiment,
        _number(plate),
        well,
        _number(site),
        channels,
        base_path,
        layout="kaggle",
        rgb_map=rgb_map,
    )
    return rgb.astype(_RGB_DTYPE)


# The old table's columns (pandas sorted them alphabetically when concatenating); the
# index is ``id_code``.
_COLUMNS = ("cell_type", "dataset", "experiment", "plate", "sirna", "site", "well")
_CONTROL_COLUMNS = (*_COLUMNS, "well_type")
_DATASET_ORDER = {"test": 0, "train": 1}  # the old function concatenated test, then train


def _require_every_file(
    table: pd.DataFrame, base_path: str | os.PathLike[str], include_controls: bool
) -> None:
    """Raise like the old function when a CSV it needed gave no rows.

    ``rxdata.read_metadata`` accepts a partial set of Kaggle CSVs; the old function read
    ``test.csv`` and ``train.csv`` (and both ``*_controls.csv`` with controls) and failed
    when one was missing, so a table silently lacking part of the data set never came out.
    """
    is_treatment = (table["well_type"] == "treatment").to_numpy(dtype=bool)
    for dataset in _DATASET_ORDER:
        in_dataset = (table["dataset"] == dataset).to_numpy(dtype=bool)
        needed = [(f"{dataset}.csv", in_dataset & is_treatment)]
        if include_controls:
            needed.append((f"{dataset}_controls.csv", in_dataset & ~is_treatment))
        for name, rows in needed:
            if not rows.any():
                raise MetadataError(
                    f"{os.fspath(base_path)!s}: no rows from {name}; combine_metadata needs "
                    "train.csv and test.csv (and train_controls.csv and test_controls.csv "
                    "with include_controls=True), as before. Use rxdata.read_metadata(path) "
                    "to read a partial set"
                )


def _old_sirna(labels: pd.Series) -> pd.Series:
    """``sirna`` as the old code read it: float (NaN where unlabeled) for integer labels."""
    values = labels.astype(object).where(labels.notna(), np.nan)
    try:
        numbers: pd.Series = pd.to_numeric(values, errors="raise").astype("float64")
    except (ValueError, TypeError):  # string labels (the re-release): kept as written
        strings: pd.Series = pd.Series(values.tolist(), index=labels.index)
        return strings
    return numbers


@_remote_errors
def combine_metadata(
    base_path: str | os.PathLike[str] = DEFAULT_METADATA_BASE_PATH,
    include_controls: bool = True,
) -> pd.DataFrame:
    r"""The Kaggle metadata as the old site table: one row per site, indexed by ``id_code``.

    Reads the CSVs with ``rxdata.read_metadata`` (which validates every row) and reshapes
    the result to what the old function returned:

    * columns ``cell_type, dataset, experiment, plate, sirna, site, well`` and, with
      controls, ``well_type`` (the old function had none without them);
    * index ``id_code``, each value twice (sites 1 and 2);
    * rows: the test wells, then the train wells, each sorted by ``id_code`` (as strings)
      then site;
    * ``plate`` and ``site`` ``int64``; ``sirna`` ``float64`` with ``NaN`` for unlabeled
      test wells (the competition's integer labels); labels that are not numbers stay as
      the files write them (the re-release's ``sirna_250``, the full release's supplier
      ids such as ``s21721``); text columns as pandas reads text.

    For the typed table with class ids (``sirna_id``), call ``rxdata.read_metadata``.

    Args:
        base_path: The folder holding ``train.csv``, ``test.csv``, ``train_controls.csv``
            and ``test_controls.csv`` (local or ``gs://``); a full release's
            ``metadata.csv`` (or its folder) gives the same table, which the old function
            could not read.
        include_controls: Include the control wells (and the ``well_type`` column).

    Returns:
        The combined metadata.

    Raises:
        MetadataError: A file is missing or a row is malformed (names the file and row).

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> head = "id_code,experiment,plate,well"
        >>> _ = (d / "train.csv").write_text(f"{head},sirna\nHEPG2-01_1_B03,HEPG2-01,1,B03,513\n")
        >>> _ = (d / "test.csv").write_text(f"{head}\nHEPG2-08_2_C04,HEPG2-08,2,C04\n")
        >>> md = combine_metadata(d, include_controls=False)
        >>> md[["dataset", "site", "sirna"]]
                       dataset  site  sirna
        id_code
        HEPG2-08_2_C04    test     1    NaN
        HEPG2-08_2_C04    test     2    NaN
        HEPG2-01_1_B03   train     1  513.0
        HEPG2-01_1_B03   train     2  513.0
    """
    table: pd.DataFrame = rxdata.read_metadata(base_path, include_controls=include_controls)
    _require_every_file(table, base_path, include_controls)
    columns = _CONTROL_COLUMNS if include_controls else _COLUMNS
    out = pd.DataFrame(
        {
            "id_code": table["id_code"].astype(str),
            "cell_type": table["cell_type"].astype(str),
            "dataset": table["dataset"].astype(str),
            "experiment": table["experiment"].astype(str),
            "plate": table["plate"].astype(np.int64),
            "sirna": _old_sirna(table["sirna"]),
            "site": table["site"].astype(np.int64),
            "well": table["well"].astype(str),
            "well_type": table["well_type"].astype(str),
        }
    )
    order = out["dataset"].map(_DATASET_ORDER).rename("_order")
    out = pd.concat([out, order], axis=1).sort_values(["_order", "id_code", "site"], kind="stable")
    result: pd.DataFrame = out.set_index("id_code")[list(columns)]
    return result

"""rxdata: fast, correct, batch-effect-aware RxRx1 training data for TensorFlow/Keras.

The public API is re-exported here and listed in ``__all__``. Names are imported lazily:
``import rxdata`` is cheap, the pure numpy/pandas parts (metadata, colour, normalization,
splits) never import TensorFlow, and TensorFlow is loaded only when a TF-backed name
(``make_dataset``, ``convert``, ...) is first used. Error classes other than
``RxDataError`` live in :mod:`rxdata.errors`; keys and layout rules in :mod:`rxdata.naming`.

Example:
    >>> import rxdata
    >>> rxdata.parse_id_code("U2OS-01_1_B02").experiment
    'U2OS-01'
"""

from __future__ import annotations

import importlib
import warnings
from importlib import metadata as _importlib_metadata
from typing import TYPE_CHECKING, Any

try:
    __version__: str = _importlib_metadata.version("rxdata")
except _importlib_metadata.PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0+unknown"

# Public name -> submodule that defines it. One table keeps ``__all__``, lazy import and
# the API reference in step. These are the names a user reaches for; everything else lives
# in its module (``rxdata.errors``, ``rxdata.naming``, ``rxdata.plates``, ...).
_EXPORTS: dict[str, str] = {
    "RxDataError": "errors",  # the other error classes: rxdata.errors
    # metadata and names
    "read_metadata": "metadata",
    "parse_image_path": "naming",
    "parse_id_code": "naming",
    "parse_site_id": "naming",
    "image_path": "naming",
    "SyntheticOptions": "synthetic",
    # images and colour
    "load_site": "images",
    "load_site_as_rgb": "images",
    "convert_tensor_to_rgb": "color",
    # statistics and normalization
    "ChannelStats": "normalization",
    "Normalizer": "normalization",
    "normalize": "normalization",
    "compute_pixel_stats": "stats",
    # pictures
    "render_site": "figures",
    "render_plate": "figures",
    # TFRecords, pipeline and conversion
    "read_tfrecord": "reader",
    "PipelineOptions": "pipeline",
    "make_dataset": "pipeline",
    "ConvertOptions": "conversion",
    "convert": "conversion",
    "verify": "conversion",
    "Records": "records",
    "open_records": "records",
    # splits, plates and submissions
    "Split": "splits",
    "holdout_experiments": "splits",
    "experiment_folds": "splits",
    "group_split": "splits",
    "wilds_split": "splits",
    "plate_groups": "plates",
    "assign_plates": "plates",
    "average_sites": "submission",
    "write_submission": "submission",
    # batch effects: embedding correction, evaluation and test-time adaptation
    "tvn": "embedding",
    "accuracy_report": "evaluation",
    "predict_per_group": "adaptation",
    "dihedral_tta": "adaptation",
}

# Names that were top-level before 0.x and moved: old name -> submodule that has it now.
# ``rxdata.X`` still works for them, with a DeprecationWarning naming the new place.
_MOVED: dict[str, str] = {
    **dict.fromkeys(
        (
            "OptionsError",
            "ParseError",
            "MetadataError",
            "ImageNotFoundError",
            "ImageDecodeError",
            "StatsError",
            "RecordError",
            "ConvertError",
            "OutputExistsError",
            "VerifyError",
            "SplitError",
            "SubmissionError",
        ),
        "errors",
    ),
    "write_tfrecords": "conversion",  # deprecated itself: call rxdata.convert
    "ImageKey": "naming",
    "SiteKey": "naming",
    "WellKey": "naming",
    "read_pixel_stats": "metadata",
    "scan_images": "metadata",
    "read_png": "images",
    "inspect_png": "images",
    "DEFAULT_CHANNELS": "color",
    "RGB_MAP": "color",
    "GLOBAL_PIXEL_STATS": "normalization",
    "aggregate_stats": "stats",
    "SplitReport": "splits",
    "read_split": "splits",
    "write_split": "splits",
    "assign_plate": "plates",  # one plate's array; rxdata.assign_plates labels a whole table
    "PlateGroups": "plates",
    "infer_plate_group": "plates",
    "training_sites": "plates",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

# Public submodules, importable on attribute access (``rxdata.errors.ParseError`` after a
# plain ``import rxdata``).
_SUBMODULES = frozenset(
    {
        "cli",
        "color",
        "conversion",
        "errors",
        "figures",
        "images",
        "layers",
        "metadata",
        "naming",
        "normalization",
        "pipeline",
        "plates",
        "records",
        "splits",
        "stats",
        "submission",
        "synthetic",
        "tflog",
        "tfrecord",
    }
)


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use (PEP 562); warn for moved names."""
    module_name = _EXPORTS.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    moved_to = _MOVED.get(name)
    if moved_to is None:
        raise AttributeError(f"module 'rxdata' has no attribute {name!r}")
    hint = " (or rxdata.assign_plates for a whole table)" if name == "assign_plate" else ""
    warnings.warn(
        f"rxdata.{name} is deprecated; import it from rxdata.{moved_to}{hint}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f"{__name__}.{moved_to}"), name)  # not cached


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from rxdata.errors import *  # noqa: F403

"""rxdata: fast, correct, batch-effect-aware RxRx1 training data for TensorFlow/Keras.

The public API is re-exported here and listed in ``__all__``. Names are imported lazily:
``import rxdata`` is cheap, the pure numpy/pandas parts (metadata, colour, normalization,
splits) never import TensorFlow, and TensorFlow is loaded only when a TF-backed name
(``make_dataset``, ``write_tfrecords``, ...) is first used.

Example:
    >>> import rxdata
    >>> rxdata.parse_id_code("U2OS-01_1_B02").experiment
    'U2OS-01'
"""

from __future__ import annotations

import importlib
from importlib import metadata as _importlib_metadata
from typing import TYPE_CHECKING, Any

try:
    __version__: str = _importlib_metadata.version("rxdata")
except _importlib_metadata.PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0+unknown"

# Public name -> submodule that defines it. One table keeps ``__all__``, lazy import and
# the API reference in step.
_EXPORTS: dict[str, str] = {
    # errors
    "RxDataError": "errors",
    "OptionsError": "errors",
    "ParseError": "errors",
    "MetadataError": "errors",
    "ImageNotFoundError": "errors",
    "ImageDecodeError": "errors",
    "StatsError": "errors",
    "RecordError": "errors",
    "ConvertError": "errors",
    "OutputExistsError": "errors",
    "VerifyError": "errors",
    "SplitError": "errors",
    "SubmissionError": "errors",
    # metadata
    "ImageKey": "metadata",
    "SiteKey": "metadata",
    "WellKey": "metadata",
    "parse_image_path": "metadata",
    "parse_id_code": "metadata",
    "parse_site_id": "metadata",
    "image_path": "metadata",
    "read_metadata": "metadata",
    "read_pixel_stats": "metadata",
    "scan_images": "metadata",
    "SyntheticOptions": "synthetic",
    # images and colour
    "load_site": "images",
    "load_site_as_rgb": "images",
    "read_png": "images",
    "inspect_png": "images",
    "convert_tensor_to_rgb": "color",
    "DEFAULT_CHANNELS": "color",
    "RGB_MAP": "color",
    # statistics and normalization
    "ChannelStats": "normalization",
    "GLOBAL_PIXEL_STATS": "normalization",
    "Normalizer": "normalization",
    "normalize": "normalization",
    "compute_pixel_stats": "stats",
    "aggregate_stats": "stats",
    # pictures
    "render_site": "figures",
    "render_plate": "figures",
    # TFRecords, pipeline and conversion
    "read_tfrecord": "tfrecord",
    "write_tfrecords": "conversion",
    "PipelineOptions": "pipeline",
    "make_dataset": "pipeline",
    "ConvertOptions": "conversion",
    "convert": "conversion",
    "verify": "conversion",
    # splits, plates and submissions
    "Split": "splits",
    "SplitReport": "splits",
    "holdout_experiments": "splits",
    "experiment_folds": "splits",
    "group_split": "splits",
    "wilds_split": "splits",
    "read_split": "splits",
    "write_split": "splits",
    "plate_groups": "plates",
    "assign_plate": "plates",
    "PlateGroups": "plates",
    "infer_plate_group": "plates",
    "assign_plates": "plates",
    "training_sites": "plates",
    "average_sites": "submission",
    "write_submission": "submission",
    # batch effects: embedding correction, evaluation and test-time adaptation
    "center_scale": "embedding",
    "tvn": "embedding",
    "accuracy_by_group": "evaluation",
    "accuracy_report": "evaluation",
    "adapt_batchnorm": "adaptation",
    "predict_per_group": "adaptation",
    "dihedral_tta": "adaptation",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use (PEP 562)."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'rxdata' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from rxdata.errors import *  # noqa: F403

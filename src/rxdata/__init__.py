"""rxdata: fast, correct, batch-effect-aware RxRx1 training data for TensorFlow/Keras.

The names users reach for most are re-exported here and listed in ``__all__``; every other
public name lives in exactly one module (error classes other than ``RxDataError`` in
:mod:`rxdata.errors`, keys in :mod:`rxdata.naming`, the layout rule in
:mod:`rxdata.roots`). Every public module is an attribute (``rxdata.reader``,
``rxdata.labels``, ...). Names and modules are imported lazily: ``import rxdata`` is
cheap, the pure numpy/pandas parts (metadata, colour, normalization, splits) never import
TensorFlow, and TensorFlow is loaded only when a TF-backed name (``make_dataset``,
``convert``, ...) is first used. Type checkers see the real types through the imports
under ``if TYPE_CHECKING:`` at the end of this file.

Example:
    >>> import rxdata
    >>> rxdata.parse_id_code("U2OS-01_1_B02").experiment
    'U2OS-01'
    >>> rxdata.naming.NUM_CLASSES
    1139
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

__all__ = ["__version__", *sorted(_EXPORTS)]

# Every public module, imported on attribute access (``rxdata.errors.ParseError`` after a
# plain ``import rxdata``). tests/test_architecture.py checks that this is every module of
# the package whose name does not start with ``_``.
_SUBMODULES = frozenset(
    {
        "adaptation",
        "cli",
        "color",
        "compat",
        "conversion",
        "embedding",
        "errors",
        "evaluation",
        "figures",
        "filters",
        "images",
        "labels",
        "layers",
        "metadata",
        "naming",
        "normalization",
        "pipeline",
        "plates",
        "reader",
        "roots",
        "service",
        "splits",
        "stats",
        "submission",
        "synthetic",
        "tfrecord",
        "transforms",
    }
)


def __getattr__(name: str) -> Any:
    """Import a public name's or a public module's submodule on first use (PEP 562)."""
    module_name = _EXPORTS.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # binds rxdata.<name> itself
    raise AttributeError(f"module 'rxdata' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


# For type checkers and IDEs only: the same names as _EXPORTS and _SUBMODULES, with their
# real types (tests/test_api.py checks that the three lists agree). At run time the
# imports above stay lazy.
if TYPE_CHECKING:  # pragma: no cover
    from rxdata import (
        adaptation as adaptation,
    )
    from rxdata import (
        cli as cli,
    )
    from rxdata import (
        color as color,
    )
    from rxdata import (
        compat as compat,
    )
    from rxdata import (
        conversion as conversion,
    )
    from rxdata import (
        embedding as embedding,
    )
    from rxdata import (
        errors as errors,
    )
    from rxdata import (
        evaluation as evaluation,
    )
    from rxdata import (
        figures as figures,
    )
    from rxdata import (
        filters as filters,
    )
    from rxdata import (
        images as images,
    )
    from rxdata import (
        labels as labels,
    )
    from rxdata import (
        layers as layers,
    )
    from rxdata import (
        metadata as metadata,
    )
    from rxdata import (
        naming as naming,
    )
    from rxdata import (
        normalization as normalization,
    )
    from rxdata import (
        pipeline as pipeline,
    )
    from rxdata import (
        plates as plates,
    )
    from rxdata import (
        reader as reader,
    )
    from rxdata import (
        roots as roots,
    )
    from rxdata import (
        service as service,
    )
    from rxdata import (
        splits as splits,
    )
    from rxdata import (
        stats as stats,
    )
    from rxdata import (
        submission as submission,
    )
    from rxdata import (
        synthetic as synthetic,
    )
    from rxdata import (
        tfrecord as tfrecord,
    )
    from rxdata import (
        transforms as transforms,
    )
    from rxdata.adaptation import (
        dihedral_tta as dihedral_tta,
    )
    from rxdata.adaptation import (
        predict_per_group as predict_per_group,
    )
    from rxdata.color import (
        convert_tensor_to_rgb as convert_tensor_to_rgb,
    )
    from rxdata.conversion import (
        ConvertOptions as ConvertOptions,
    )
    from rxdata.conversion import (
        convert as convert,
    )
    from rxdata.conversion import (
        verify as verify,
    )
    from rxdata.embedding import (
        tvn as tvn,
    )
    from rxdata.errors import (
        RxDataError as RxDataError,
    )
    from rxdata.evaluation import (
        accuracy_report as accuracy_report,
    )
    from rxdata.figures import (
        render_plate as render_plate,
    )
    from rxdata.figures import (
        render_site as render_site,
    )
    from rxdata.images import (
        load_site as load_site,
    )
    from rxdata.images import (
        load_site_as_rgb as load_site_as_rgb,
    )
    from rxdata.metadata import read_metadata as read_metadata
    from rxdata.naming import (
        image_path as image_path,
    )
    from rxdata.naming import (
        parse_id_code as parse_id_code,
    )
    from rxdata.naming import (
        parse_image_path as parse_image_path,
    )
    from rxdata.naming import (
        parse_site_id as parse_site_id,
    )
    from rxdata.normalization import (
        ChannelStats as ChannelStats,
    )
    from rxdata.normalization import (
        Normalizer as Normalizer,
    )
    from rxdata.normalization import (
        normalize as normalize,
    )
    from rxdata.pipeline import (
        PipelineOptions as PipelineOptions,
    )
    from rxdata.pipeline import (
        make_dataset as make_dataset,
    )
    from rxdata.plates import (
        assign_plates as assign_plates,
    )
    from rxdata.plates import (
        plate_groups as plate_groups,
    )
    from rxdata.reader import (
        read_tfrecord as read_tfrecord,
    )
    from rxdata.splits import (
        Split as Split,
    )
    from rxdata.splits import (
        experiment_folds as experiment_folds,
    )
    from rxdata.splits import (
        group_split as group_split,
    )
    from rxdata.splits import (
        holdout_experiments as holdout_experiments,
    )
    from rxdata.splits import (
        wilds_split as wilds_split,
    )
    from rxdata.stats import (
        compute_pixel_stats as compute_pixel_stats,
    )
    from rxdata.submission import (
        average_sites as average_sites,
    )
    from rxdata.submission import (
        write_submission as write_submission,
    )
    from rxdata.synthetic import (
        SyntheticOptions as SyntheticOptions,
    )

"""Checked by mypy (``make lint``), never run: the top-level names carry their real types.

``rxdata`` imports its names lazily (a module ``__getattr__``, which type checkers read as
``Any``); the ``if TYPE_CHECKING:`` imports in ``rxdata/__init__.py`` give them their types.
Each ``# type: ignore[...]`` below silences an error that exists only while the name is
typed: were it ``Any``, the ignore would be unused, which mypy reports
(``warn_unused_ignores`` in pyproject.toml). Everything sits under ``if TYPE_CHECKING:``,
which mypy checks and Python skips (pytest imports this file to look for doctests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import assert_type

    import rxdata
    from rxdata import errors, naming, pipeline, splits

    assert_type(rxdata.Split, type[splits.Split])
    assert_type(rxdata.PipelineOptions, type[pipeline.PipelineOptions])
    assert_type(rxdata.RxDataError, type[errors.RxDataError])
    assert_type(rxdata.parse_id_code("U2OS-01_1_B02"), naming.WellKey)
    assert_type(rxdata.naming.NUM_CLASSES, int)
    rxdata.make_dataset("records/*.tfrecord", batch_size="eight")  # type: ignore[arg-type]
    rxdata.read_tfrecord(8)  # type: ignore[arg-type]
    rxdata.convert("data")  # type: ignore[call-arg]

    # Every public module is a typed attribute of the package.
    rxdata.adaptation.no_such_name  # type: ignore[attr-defined]
    rxdata.cli.no_such_name  # type: ignore[attr-defined]
    rxdata.color.no_such_name  # type: ignore[attr-defined]
    rxdata.compat.no_such_name  # type: ignore[attr-defined]
    rxdata.conversion.no_such_name  # type: ignore[attr-defined]
    rxdata.embedding.no_such_name  # type: ignore[attr-defined]
    rxdata.errors.no_such_name  # type: ignore[attr-defined]
    rxdata.evaluation.no_such_name  # type: ignore[attr-defined]
    rxdata.figures.no_such_name  # type: ignore[attr-defined]
    rxdata.filters.no_such_name  # type: ignore[attr-defined]
    rxdata.images.no_such_name  # type: ignore[attr-defined]
    rxdata.labels.no_such_name  # type: ignore[attr-defined]
    rxdata.layers.no_such_name  # type: ignore[attr-defined]
    rxdata.metadata.no_such_name  # type: ignore[attr-defined]
    rxdata.naming.no_such_name  # type: ignore[attr-defined]
    rxdata.normalization.no_such_name  # type: ignore[attr-defined]
    rxdata.pipeline.no_such_name  # type: ignore[attr-defined]
    rxdata.plates.no_such_name  # type: ignore[attr-defined]
    rxdata.reader.no_such_name  # type: ignore[attr-defined]
    rxdata.roots.no_such_name  # type: ignore[attr-defined]
    rxdata.service.no_such_name  # type: ignore[attr-defined]
    rxdata.splits.no_such_name  # type: ignore[attr-defined]
    rxdata.stats.no_such_name  # type: ignore[attr-defined]
    rxdata.submission.no_such_name  # type: ignore[attr-defined]
    rxdata.synthetic.no_such_name  # type: ignore[attr-defined]
    rxdata.tfrecord.no_such_name  # type: ignore[attr-defined]
    rxdata.transforms.no_such_name  # type: ignore[attr-defined]

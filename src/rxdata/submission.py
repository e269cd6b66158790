"""From per-site predictions to a Kaggle submission, keyed by ``id_code`` throughout.

Contract:

- :func:`average_sites` combines the (usually two) sites of each well into one row,
  matching sites by their ``id_code``, never by position: predictions may come in any
  order, shuffled by a data pipeline or split across workers. The user chooses the mean of
  probabilities or the mean of logits.
- :func:`write_submission` writes Kaggle's ``id_code,sirna`` CSV for exactly the wells of
  ``test.csv`` (or of the test treatment wells of a metadata table), in that file's order,
  and refuses, with a :class:`~rxdata.errors.SubmissionError` naming the ``id_code`` values, a
  missing, duplicate or unknown well, or a label outside the treatment classes 0..1107.
  It writes integer labels (the 2019 competition) or the re-release's names, which
  renumbered every label (class 0 is ``sirna_332``; :func:`rxdata.labels.rerelease_names`).

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    >>> wells = average_sites(probs, id_codes=["A-01_1_B03", "A-01_1_B04", "A-01_1_B03"])
    >>> wells.round(2).values.tolist()
    [[0.8, 0.2], [0.2, 0.8]]
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Literal, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import sparse
from scipy.special import logsumexp

from rxdata import _io
from rxdata._text import preview
from rxdata.errors import ParseError, SubmissionError
from rxdata.labels import from_rerelease_names, rerelease_names, to_rerelease_names
from rxdata.naming import NUM_CLASSES, NUM_TREATMENTS

__all__ = ["average_sites", "read_test_wells", "write_submission"]

Kind = Literal["probs", "logits"]
LabelStyle = Literal["auto", "int", "sirna_N"]


def average_sites(
    predictions: ArrayLike,
    *,
    id_codes: Sequence[str] | pd.Series | pd.Index | ArrayLike,
    kind: Kind = "probs",
    sites: int | None = None,
    output: Kind | None = None,
) -> pd.DataFrame:
    """Average the predictions of the sites of each well, matched by ``id_code``.

    ``kind="probs"``: the arithmetic mean of the sites' probabilities. ``kind="logits"``:
    the mean of the logits, which is the normalized geometric mean of the probabilities
    (it favors classes both sites agree on). The result stays in the input's space unless
    ``output`` converts it (``"probs"`` applies a softmax to averaged logits; ``"logits"``
    takes the log of averaged probabilities).

    Args:
        predictions: sites x classes array.
        id_codes: the well ``id_code`` of each row (same length as ``predictions``).
        kind: what ``predictions`` holds, ``"probs"`` or ``"logits"``.
        sites: if given, every well must have exactly this many rows (e.g. 2); otherwise
            wells with one site (an image that failed to load) are averaged over what
            there is.
        output: the space of the result (default: same as ``kind``).

    Returns:
        A DataFrame indexed by ``id_code`` (in order of first appearance), one column per
        class ``0..C-1``.

    Raises:
        SubmissionError: shapes disagree, values are not finite, probabilities are
            negative, an ``id_code`` is missing, or (``sites``) a well has another count
            of sites (the message names the wells).

    Example:
        >>> import numpy as np
        >>> logits = np.array([[2.0, 0.0], [0.0, 1.0]])
        >>> average_sites(logits, id_codes=["A-01_1_B03"] * 2, kind="logits").values.tolist()
        [[1.0, 0.5]]
    """
    if kind not in ("probs", "logits"):
        raise SubmissionError(f"kind must be 'probs' or 'logits', got {kind!r}")
    if output is not None and output not in ("probs", "logits"):
        raise SubmissionError(f"output must be 'probs', 'logits' or None, got {output!r}")
    values = np.asarray(predictions, dtype=np.float64)
    if values.ndim != 2:
        raise SubmissionError(f"predictions must be 2-D (sites x classes), got {values.shape}")
    ids = pd.Series(np.asarray(id_codes, dtype=object)).astype("string")
    if len(ids) != len(values):
        raise SubmissionError(
            f"{len(ids)} id_codes for {len(values)} rows of predictions; give one per row"
        )
    if ids.isna().any():
        raise SubmissionError(f"id_codes has a missing value at row {int(ids.isna().argmax())}")
    if not np.isfinite(values).all():
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        raise SubmissionError(
            f"predictions hold NaN/inf for id_codes {preview(ids.iloc[bad].tolist())}"
        )
    if kind == "probs" and (values < 0).any():
        raise SubmissionError("predictions hold negative probabilities; use kind='logits'?")
    codes, wells = pd.factorize(ids)
    counts = np.bincount(codes, minlength=len(wells))
    if sites is not None:
        wrong = np.flatnonzero(counts != sites)
        if wrong.size:
            detail = [f"{wells[i]} ({counts[i]})" for i in wrong]
            raise SubmissionError(
                f"expected {sites} site(s) per well; these wells have other counts: "
                f"{preview(detail)}"
            )
    # Sum rows per well with a sparse one-hot (wells x sites) product, then divide.
    onehot = sparse.csr_matrix(
        (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(wells), len(codes))
    )
    mean = np.asarray(onehot @ values) / counts[:, None]
    target = kind if output is None else output
    if target != kind:
        if kind == "logits":
            mean = np.exp(mean - logsumexp(mean, axis=1, keepdims=True))
        else:
            mean = np.log(np.clip(mean, 1e-12, None))
    frame = pd.DataFrame(mean, index=pd.Index(wells, name="id_code", dtype="string"))
    return cast("pd.DataFrame", frame)


def read_test_wells(test_wells: str | os.PathLike[str] | pd.DataFrame) -> pd.Index:
    """The ``id_code`` values a submission must cover, in order.

    Args:
        test_wells: the path of Kaggle's ``test.csv`` (or ``sample_submission.csv``, any
            CSV with an ``id_code`` column), a DataFrame with ``id_code``, or the site
            table of :func:`rxdata.read_metadata` (its ``dataset == "test"`` treatment
            wells are used, in table order).

    Raises:
        SubmissionError: no ``id_code`` column, or an ``id_code`` listed twice in a
            well-level file.

    Example:
        >>> import pandas as pd
        >>> read_test_wells(pd.DataFrame({"id_code": ["A-01_1_B03", "A-01_1_B04"]})).tolist()
        ['A-01_1_B03', 'A-01_1_B04']
    """
    if isinstance(test_wells, pd.DataFrame):
        frame, where = test_wells, "test metadata"
    else:
        where = os.fspath(test_wells)
        data = _io.read_bytes(where)
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    if "id_code" not in frame.columns:
        raise SubmissionError(f"{where}: no 'id_code' column; columns are {list(frame.columns)}")
    if {"site", "dataset", "well_type"} <= set(frame.columns):
        # The site table: one row per site; keep test treatment wells once each.
        test = frame[
            (frame["dataset"].astype("string") == "test")
            & (frame["well_type"].astype("string") == "treatment")
        ]
        ids = test["id_code"].astype("string").drop_duplicates()
    else:
        ids = frame["id_code"].astype("string")
        dup = ids[ids.duplicated()]
        if len(dup):
            raise SubmissionError(f"{where}: id_code(s) listed twice: {preview(dup.tolist())}")
    if ids.isna().any() or (ids == "").any():
        raise SubmissionError(f"{where}: empty id_code values")
    return cast("pd.Index", pd.Index(ids.to_numpy(dtype=object), name="id_code", dtype="string"))


def _labels_series(
    predictions: pd.Series | pd.DataFrame | Mapping[str, int],
) -> pd.Series:
    """id_code -> label from a Series, a mapping, or a wells x classes DataFrame (argmax)."""
    if isinstance(predictions, pd.DataFrame):
        if list(predictions.columns) == ["id_code", "sirna"]:
            return cast("pd.Series", predictions.set_index("id_code")["sirna"])
        cols: list[object] = list(predictions.columns)
        if cols != list(range(len(cols))) or len(cols) not in (NUM_TREATMENTS, NUM_CLASSES):
            raise SubmissionError(
                "a DataFrame of predictions must have columns id_code,sirna or one score "
                f"column per class, 0..{NUM_TREATMENTS - 1} (treatments) or "
                f"0..{NUM_CLASSES - 1} (all classes), argmax taken; got {len(cols)} "
                f"columns {cols[:5]}..."
            )
        try:
            scores = predictions.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise SubmissionError(
                "score columns must be numbers; got dtypes "
                f"{sorted(set(map(str, predictions.dtypes)))}"
            ) from None
        finite = np.isfinite(scores).all(axis=1)
        if not finite.all():
            # argmax would turn a NaN row into class 0, and a NaN column would win every row
            bad = predictions.index[~finite].astype(str).tolist()
            raise SubmissionError(
                f"scores hold NaN or inf for {len(bad)} id_code(s): {preview(bad)}; "
                "expected finite scores"
            )
        best = scores.argmax(axis=1)
        return cast("pd.Series", pd.Series(best, index=predictions.index))
    if isinstance(predictions, pd.Series):
        return predictions
    if isinstance(predictions, Mapping):
        series = pd.Series(list(predictions.values()), index=list(predictions.keys()), dtype=object)
        return cast("pd.Series", series)
    raise SubmissionError(
        "predictions must be a Series or mapping id_code -> class id, or a DataFrame indexed "
        f"by id_code; got {type(predictions).__name__}"
    )


def _as_int_labels(labels: pd.Series) -> pd.Series:
    """Integer class ids; accepts ints, integral floats, digit strings and re-release names."""
    if pd.api.types.is_integer_dtype(labels.dtype) and not labels.isna().any():
        return labels.astype("int64")
    out = []
    bad: list[str] = []
    for id_code, value in labels.items():
        number: int | None = None
        if isinstance(value, (bool, np.bool_)):
            number = None
        elif (
            isinstance(value, (int, np.integer))
            or (isinstance(value, (float, np.floating)) and float(value).is_integer())
            or (isinstance(value, str) and value.isdigit())
        ):
            number = int(value)
        elif isinstance(value, str):
            try:  # the re-release's names: its own numbering, 'sirna_332' is class 0
                number = int(from_rerelease_names([value])[0])
            except ParseError:
                number = None
        if number is None:
            bad.append(f"{id_code}={value!r}")
        out.append(-1 if number is None else number)
    if bad:
        raise SubmissionError(
            "labels must be integer class ids or re-release names ('sirna_332' is class 0); "
            f"got {preview(bad)}"
        )
    return pd.Series(out, index=labels.index, dtype="int64")


def _label_style(test_wells: object) -> LabelStyle:
    """``"sirna_N"`` when a metadata frame's labels are the re-release's names, else ``"int"``."""
    if isinstance(test_wells, pd.DataFrame) and "sirna" in test_wells.columns:
        given = test_wells["sirna"].dropna().astype("string")
        if len(given) and bool(given.isin(rerelease_names()).all()):
            return "sirna_N"
    return "int"


def write_submission(
    path: str | os.PathLike[str],
    predictions: pd.Series | pd.DataFrame | Mapping[str, int],
    test_wells: str | os.PathLike[str] | pd.DataFrame,
    *,
    labels: LabelStyle = "auto",
    extra: Literal["raise", "ignore"] = "raise",
) -> pd.DataFrame:
    """Write Kaggle's ``id_code,sirna`` CSV for exactly the wells of ``test_wells``.

    Args:
        path: output CSV (local or ``gs://``); written atomically.
        predictions: ``id_code -> class id`` as a Series (e.g. from
            :func:`rxdata.plates.assign_plates`) or mapping, or a DataFrame indexed by
            ``id_code`` with one score column per class (the argmax is written), or a
            frame with columns ``id_code, sirna``. A score table has 1108 columns (the
            treatments) or 1139 (all classes), all finite.
        test_wells: ``test.csv`` (path or frame) or the metadata site table; see
            :func:`read_test_wells`. The CSV has one row per well, in this order.
        labels: ``"int"`` writes ``513`` (the 2019 competition); ``"sirna_N"`` writes
            the Kaggle re-release's name of the class (class 0 is ``sirna_332``: the
            re-release renumbered every label, see
            :func:`rxdata.labels.rerelease_names`); ``"auto"`` (default) writes those
            names when ``test_wells`` is a metadata table whose ``sirna`` column holds
            them (read from re-release CSVs), else integers.
        extra: predictions for wells not in ``test_wells`` (controls, say): ``"raise"``
            or ``"ignore"`` them.

    Returns:
        The frame written (columns ``id_code``, ``sirna``).

    Raises:
        SubmissionError: a test well without a prediction, an ``id_code`` predicted twice,
            an unknown well (with ``extra="raise"``), a label outside 0..1107 (test
            wells are treatments), a score table with NaN/inf scores or with neither
            1108 nor 1139 columns; the message names the ``id_code`` values.

    Example:
        >>> import pandas as pd
        >>> test = pd.DataFrame({"id_code": ["A-01_1_B04", "A-01_1_B03"]})
        >>> preds = pd.Series({"A-01_1_B03": 0, "A-01_1_B04": 1107})
        >>> _ = write_submission("submission.csv", preds, test, labels="sirna_N")
        >>> print(open("submission.csv").read().strip())
        id_code,sirna
        A-01_1_B04,sirna_141
        A-01_1_B03,sirna_332
    """
    if labels not in ("auto", "int", "sirna_N"):
        raise SubmissionError(f"labels must be 'auto', 'int' or 'sirna_N', got {labels!r}")
    if labels == "auto":
        labels = _label_style(test_wells)
    if extra not in ("raise", "ignore"):
        raise SubmissionError(f"extra must be 'raise' or 'ignore', got {extra!r}")
    wells = read_test_wells(test_wells)
    series = _labels_series(predictions)
    index = pd.Index(series.index.astype("string"))
    if index.has_duplicates:
        raise SubmissionError(
            "id_code(s) predicted more than once: "
            f"{preview(index[index.duplicated()].unique().tolist())}"
        )
    series = pd.Series(series.to_numpy(), index=index)
    missing = wells.difference(index, sort=False)
    if len(missing):
        raise SubmissionError(
            f"{len(missing)} test well(s) have no prediction: {preview(missing.tolist())}"
        )
    unknown = index.difference(wells, sort=False)
    if len(unknown) and extra == "raise":
        raise SubmissionError(
            f"{len(unknown)} predicted id_code(s) are not test wells: "
            f"{preview(unknown.tolist())} (pass extra='ignore' to drop them)"
        )
    chosen = _as_int_labels(series.loc[wells])
    out_of_range = chosen[(chosen < 0) | (chosen >= NUM_TREATMENTS)]
    if len(out_of_range):
        detail = [f"{k}={v}" for k, v in out_of_range.items()]
        raise SubmissionError(
            f"labels outside the treatment classes 0..{NUM_TREATMENTS - 1}: {preview(detail)}"
        )
    values = chosen.to_numpy()
    sirna = to_rerelease_names(values) if labels == "sirna_N" else values
    frame = pd.DataFrame({"id_code": wells.to_numpy(dtype=object), "sirna": sirna})
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    _io.write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))
    return cast("pd.DataFrame", frame)

"""Batch correction of embeddings against control wells (numpy only, no TensorFlow).

Contract: every function takes an ``(n, d)`` array of embeddings (a model's
penultimate-layer outputs, one row per site or well), an ``(n,)`` array naming each row's
batch (a plate such as ``"HUVEC-01/3"`` or an experiment) and an ``(n,)`` boolean mask of
control rows, and returns a new ``(n, d)`` float64 array; the inputs are never modified.
Statistics come from the control rows of each batch only, so a batch never seen in
training (a held-out experiment) is corrected by its own controls, as Recursion corrects
its embeddings (Celik et al., "Building, benchmarking, and exploring perturbative maps of
transcriptional and morphological data", 2024; the EFAAR benchmarking code).

* :func:`center_scale`: per batch, subtract the controls' mean and divide by their
  standard deviation, dimension by dimension, that standard deviation floored at 10% of
  the dimension's standard deviation within batches (``variance_floor=0.01`` of its
  variance: the variance floor of speech recognisers, HTK's ``HCompV -f``). Without the
  floor a ReLU unit that fires weakly on 1 of a plate's 62 control sites has a standard
  deviation near 1e-6 there, and dividing by it multiplied the plate's treatment values
  up to 458,000 times; TVN's whitening then spread that over every component (the
  batch-effect benchmark's TVN row fell from 0.80 to 0.20 held-out accuracy on one
  seed).
* :func:`tvn` (typical variation normalization) as EFAAR defines it
  (``tvn_on_controls`` in recursionpharma/EFAAR_benchmarking, ``efaar.py``; Ando et al.,
  "Improving phenotypic measurements in high-content imaging screens", 2017): a PCA
  fitted on the control rows only (pass the negative controls), every row rotated into
  it and scaled so that the controls have unit variance in each component (whitening);
  then, batch by batch, center-scale by that batch's controls and a CORAL-style alignment
  (multiply by the inverse square root of the batch controls' covariance plus
  ``ridge`` times the identity; EFAAR's ridge is 0.5). ``align=False`` is the variant
  this module shipped first: per-batch :func:`center_scale`, then one whitening fitted
  on the controls of every batch pooled, with no per-batch alignment (an ablation).

A batch without a control row raises :class:`~rxdata.errors.StatsError`: silently
leaving it uncorrected would mix corrected and uncorrected rows.

Example:
    >>> import numpy as np
    >>> x = np.array([[1.0, 10.0], [3.0, 14.0], [5.0, 30.0], [0.0, 0.0]])
    >>> center_scale(x, ["p1", "p1", "p1", "p2"], [True, True, False, True]).tolist()
    [[-1.0, -1.0], [1.0, 1.0], [3.0, 9.0], [0.0, 0.0]]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rxdata.errors import OptionsError, StatsError

__all__ = ["center_scale", "tvn"]

#: A batch's control standard deviation below this marks a constant dimension, which is
#: centered but not scaled (divided by 1, as scikit-learn's StandardScaler, which EFAAR
#: uses, does): dividing by a floor instead would blow a dimension the controls never
#: use, such as a ReLU unit silent on every control of one plate, up to 1/EPSILON times
#: the treatments' values. Eigenvalues below EPSILON x the largest are dropped by tvn.
EPSILON = 1e-6
#: A batch's control variance is at least this fraction of the dimension's variance
#: within batches (see :func:`center_scale`).
VARIANCE_FLOOR = 0.01
#: Added to each batch's control covariance before :func:`tvn`'s alignment (EFAAR's 0.5).
RIDGE = 0.5


def _inputs(
    embeddings: ArrayLike, groups: ArrayLike, controls: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.str_], NDArray[np.bool_]]:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise OptionsError(f"embeddings: expected an (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise OptionsError(f"embeddings: row {row} holds a NaN or infinity")
    g = np.asarray(groups).astype(str)
    c = np.asarray(controls)
    if g.shape != (len(x),) or c.shape != (len(x),):
        raise OptionsError(
            f"groups {g.shape} and controls {c.shape} must be 1-D with one entry per "
            f"embedding row ({len(x)})"
        )
    if c.dtype != np.bool_:
        raise OptionsError(f"controls: expected a boolean mask, got dtype {c.dtype}")
    return x, g, c


def center_scale(
    embeddings: ArrayLike,
    groups: ArrayLike,
    controls: ArrayLike,
    *,
    scale: bool = True,
    variance_floor: float = VARIANCE_FLOOR,
) -> NDArray[np.float64]:
    """Center (and scale) each batch's embeddings by the statistics of its control rows.

    Args:
        embeddings: ``(n, d)`` embeddings.
        groups: ``(n,)`` batch of each row (plate or experiment names; any values).
        controls: ``(n,)`` boolean mask of the control rows (e.g. negative-control wells).
        scale: Also divide by the controls' standard deviation; ``False`` only subtracts
            their mean.
        variance_floor: A batch's control variance is raised to at least this fraction
            (0..1) of the dimension's variance within batches (over all rows, controls
            and treatments, pooled over the batches), so that a dimension nearly
            constant on one batch's controls is not divided by nearly zero. 0 turns the
            floor off. A dimension constant everywhere (standard deviation below
            ``EPSILON``) is divided by 1, as scikit-learn's StandardScaler does.

    Returns:
        The corrected ``(n, d)`` embeddings; each batch's controls have mean 0 (and
        standard deviation 1 where their variance is above the floor).

    Raises:
        OptionsError: Shapes do not match or an embedding is not finite.
        StatsError: A batch has no control row.

    Example:
        >>> center_scale([[2.0], [4.0], [9.0]], ["a", "a", "a"], [True, True, False]).ravel()
        array([-1.,  1.,  6.])
        >>> silent = [[0.0], [0.0], [5.0]]  # a unit the controls never use
        >>> center_scale(silent, ["a"] * 3, [True, True, False]).ravel().round(2)  # floored
        array([ 0.  ,  0.  , 21.21])
        >>> center_scale(silent, ["a"] * 3, [True, True, False], variance_floor=0).ravel()
        array([0., 0., 5.])
    """
    x, g, c = _inputs(embeddings, groups, controls)
    if (
        isinstance(variance_floor, bool)
        or not isinstance(variance_floor, int | float)
        or not 0.0 <= variance_floor <= 1.0
    ):
        raise OptionsError(f"variance_floor={variance_floor!r}: expected a number in 0..1")
    batches = []
    for group in np.unique(g):
        rows = g == group
        ref = x[rows & c]
        if len(ref) == 0:
            raise StatsError(
                f"batch {group!r} has no control rows ({int(rows.sum())} rows); every "
                "batch needs controls to be corrected: drop the batch or mark its controls"
            )
        batches.append((rows, ref))
    # the dimension's own scale: its variance within batches (all rows, pooled), so that
    # neither the batch shifts being removed nor silent controls set it
    within = sum(x[rows].var(axis=0) * rows.sum() for rows, _ in batches) / len(x)
    out = np.empty_like(x)
    for rows, ref in batches:
        centered = x[rows] - ref.mean(axis=0)
        sd = np.sqrt(np.maximum(ref.var(axis=0), variance_floor * within))
        out[rows] = centered / np.where(sd < EPSILON, 1.0, sd) if scale else centered
    return out


def _whitening(ref: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and PCA whitening matrix of ``ref`` (null directions dropped)."""
    mean = ref.mean(axis=0)
    centered = ref - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centered.T @ centered / len(ref))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    keep = eigenvalues > EPSILON * max(float(eigenvalues[0]), EPSILON)
    return mean, eigenvectors[:, keep] / np.sqrt(eigenvalues[keep])


def _inverse_sqrt(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """``matrix ** -0.5`` of a symmetric positive definite matrix."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    result: NDArray[np.float64] = (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
    return result


def tvn(
    embeddings: ArrayLike,
    groups: ArrayLike,
    controls: ArrayLike,
    *,
    align: bool = True,
    ridge: float = RIDGE,
    variance_floor: float = VARIANCE_FLOOR,
) -> NDArray[np.float64]:
    """Typical variation normalization: control whitening, then per-batch alignment.

    With ``align=True`` (the definition EFAAR's ``tvn_on_controls`` follows): the
    covariance of the control rows (pooled over the batches) is diagonalised; every row is
    centered on the controls' mean, rotated into the eigenvectors and each direction
    divided by the square root of its eigenvalue (PCA whitening). Then each batch is
    center-scaled by its own control rows (:func:`center_scale`) and multiplied by
    ``(C_b + ridge * I) ** -0.5``, ``C_b`` the covariance of the batch's control rows
    (CORAL-style alignment; a batch with one control row has ``C_b = 0``). Pass the
    negative controls as ``controls``: TVN treats their variation as the typical,
    biologically neutral one; positive controls have strong phenotypes of their own.

    With ``align=False`` (an ablation, the variant rxdata shipped first): per-batch
    :func:`center_scale`, then the whitening fitted on the centered control rows of
    every batch pooled, and no alignment step.

    Directions in which the controls do not vary (eigenvalue below ``EPSILON`` times the
    largest; e.g. beyond the number of controls when embeddings have more dimensions than
    there are controls) are dropped rather than divided by nearly zero, as a PCA whitening
    of the controls does: the result has ``k <= d`` columns, ``k`` the rank of the
    controls.

    Args:
        embeddings: ``(n, d)`` embeddings.
        groups: ``(n,)`` batch of each row (plates, or experiments when a plate has few
            controls: an RxRx1 plate has one negative-control well).
        controls: ``(n,)`` boolean mask of the control rows (the negative controls).
        align: Per-batch center-scale and CORAL alignment after the whitening (EFAAR);
            ``False`` for the first variant described above.
        ridge: Added to the diagonal of each batch's control covariance before its
            inverse square root is taken (> 0; ``align=True`` only).
        variance_floor: As in :func:`center_scale`.

    Returns:
        The normalized ``(n, k)`` embeddings, components by decreasing control variance.

    Raises:
        OptionsError: Shapes do not match, an embedding is not finite, fewer than two
            control rows, or ``ridge`` is not a positive number.
        StatsError: A batch has no control row.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 3)) @ [[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0, 0, 3]]
        >>> z = tvn(x, np.repeat(["a", "b"], 100), np.ones(200, bool), align=False)
        >>> np.allclose(np.cov(z.T, bias=True), np.eye(3))
        True
        >>> z = tvn(x, np.repeat(["a", "b"], 100), np.ones(200, bool))  # EFAAR: aligned
        >>> np.allclose(z[:100].mean(axis=0), 0), z.shape
        (True, (200, 3))
    """
    x, g, c = _inputs(embeddings, groups, controls)
    if c.sum() < 2:
        raise OptionsError(f"tvn needs at least 2 control rows, got {int(c.sum())}")
    if isinstance(ridge, bool) or not isinstance(ridge, int | float) or not ridge > 0:
        raise OptionsError(f"ridge={ridge!r}: expected a positive number")
    if not align:
        cs = center_scale(x, g, c, variance_floor=variance_floor)
        mean, whitening = _whitening(cs[c])
        first: NDArray[np.float64] = (cs - mean) @ whitening
        return first
    mean, whitening = _whitening(x[c])
    z = center_scale((x - mean) @ whitening, g, c, variance_floor=variance_floor)
    out = np.empty_like(z)
    identity = np.eye(z.shape[1])
    for group in np.unique(g):
        rows = g == group
        ref = z[rows & c]
        cov = np.cov(ref, rowvar=False, ddof=1) if len(ref) > 1 else np.zeros_like(identity)
        out[rows] = z[rows] @ _inverse_sqrt(np.atleast_2d(cov) + ridge * identity)
    return out

"""The one place where the examples touch Keras internals: ``model.fit`` under
``MultiWorkerMirroredStrategy`` (Keras 3.15, TensorFlow backend).

``model.fit`` fails there in two places, both inside Keras' TensorFlow trainer, with no
public option to avoid them (a custom ``train_step`` runs after the first failure, and the
second is in how Keras averages the logs a ``train_step`` returns):

1. Before the first step Keras builds the metrics from one batch, first averaging that
   batch over all replicas with ``strategy.reduce("MEAN", (x, y), axis=None)``. The
   collective strategy cannot reduce a tuple and fails with ``ValueError: Attempt to
   convert a value (PerReplica:{...}) to a Tensor``. Only the batch's structure, shapes
   and dtypes matter there, so :func:`fix_multi_worker_fit` builds from the local
   replica's part of the batch instead.
2. Keras averages each step's logs (scalars) over replicas with
   ``strategy.reduce("MEAN", value, axis=0)``, which fails on scalars with ``Invalid
   reduction dimension 0 for input with 0 dimensions``. ``axis=None`` is the mean over
   replicas that is meant, across all workers.

Upstream: https://github.com/tensorflow/tensorflow/issues/72388 (the second failure,
closed there as a Keras 3 issue). No Keras issue for the first was found; both reproduce
with the 25-line script in ``tests/test_examples.py``
(``test_keras_multi_worker_bug_still_exists``), which fails the day Keras fixes them:
then delete this module and its one call in ``train.py``.

Nothing here runs for other strategies: ``train.py`` calls :func:`fix_multi_worker_fit`
only for ``--target multi-worker``.
"""

from __future__ import annotations

from typing import Any

KERAS_ISSUE = "https://github.com/tensorflow/tensorflow/issues/72388"


def fix_multi_worker_fit(model: Any, strategy: Any) -> None:
    """Make ``model.fit`` work under ``MultiWorkerMirroredStrategy`` (see the module doc).

    Call after building and compiling ``model`` under ``strategy.scope()``, before
    ``fit``. Patches ``model`` (an instance attribute) and, for this ``strategy`` only,
    Keras' per-replica reduction of logs.
    """
    fix_symbolic_build(model, strategy)
    fix_log_reduction(strategy)


def fix_symbolic_build(model: Any, strategy: Any) -> None:
    """Failure 1: build the metrics from the local replica's part of the first batch."""
    import keras

    def build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(it)
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = build


def fix_log_reduction(strategy: Any) -> None:
    """Failure 2: average scalar logs over the replicas of ``strategy`` with ``axis=None``."""
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = getattr(tf_trainer.reduce_per_replica, "__wrapped__", None)
    original = original or tf_trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy_: Any, reduction: str) -> Any:
        if strategy_ is strategy and reduction == "auto":
            return keras.tree.map_structure(
                lambda v: strategy_.reduce("MEAN", v, axis=None), values
            )
        return original(values, strategy_, reduction)

    reduce_per_replica.__wrapped__ = original  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica

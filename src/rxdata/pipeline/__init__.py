"""The tf.data input pipeline over rxdata (and rxrx1-utils) TFRecord shards.

Contract:
    :func:`make_dataset` turns a file pattern into a ``tf.data.Dataset`` of batches:

    * ``training=True``: shuffled file order, parallel ``interleave`` over shards, a
      shuffle buffer of serialized records, parallel parse/decode, batching (with
      ``drop_remainder`` so every batch has a static shape), optional augmentation,
      ``prefetch``. Unlabelled sites are dropped when the label is ``sirna_id``.
    * ``training=False``: one pass, no shuffle, no augmentation, a deterministic order
      (the same on every run), every site kept, the last partial batch kept, and each
      example carries its ``id_code`` and ``site`` so predictions cannot be misaligned.
    * Normalization by a :class:`rxdata.Normalizer` (``global`` / ``experiment`` /
      ``plate`` / ``controls`` / ``image``), with per-plate statistics looked up in the
      graph from each site's experiment and plate (:mod:`rxdata.transforms`). Either on the
      CPU (``normalize_on="cpu"``: the batch holds ``dtype`` images) or on the
      accelerator (``normalize_on="accelerator"``: the batch holds uint8 images plus each
      example's ``mean`` and ``std``, applied in the model by
      :class:`rxdata.layers.Standardize`, with identical results, 4x fewer bytes and no
      float work on the host CPU).
    * Works under ``tf.distribute``: pass the ``input_context`` that
      ``strategy.distribute_datasets_from_function`` gives; ``batch_size`` is then the
      global batch and each pipeline reads its own shards.

Layout:
    Stages are plain functions (:mod:`rxdata.pipeline.stages`: list shards, check
    layout, read, filter, parse, batch, statistics, augment, normalize, pack,
    distribute), each taking one small option group (:mod:`rxdata.pipeline.options`);
    the site filters are one :class:`~rxdata.pipeline.selection.Selection`;
    :func:`make_dataset` (:mod:`rxdata.pipeline.dataset`) composes them.

Batch structure (``output="tuple"``):
    * training: ``(x, labels)`` where ``x`` is the images, or in accelerator mode a dict
      ``{"image": uint8, "mean": float32 [B, C], "std": float32 [B, C]}``;
    * ``training=False``: ``(x, labels, ids)`` with ``ids = {"id_code", "site"}``; Keras'
      ``predict`` uses only ``x``; :func:`predict` keeps ids and predictions together.
    * ``label=None`` drops ``labels`` from the tuple.

    ``output="dict"`` gives one dict per batch: ``image`` (plus ``mean``/``std`` in
    accelerator mode), ``label`` (when a label is chosen) and the site metadata
    ``id_code``, ``site``, ``experiment``, ``plate``, ``well``, ``cell_type``,
    ``well_type``, ``dataset`` and ``sirna_id`` (-1 when unlabelled).

Example:
    >>> import numpy as np
    >>> from rxdata import tfrecord
    >>> sites = [{"experiment": "HEPG2-01", "plate": 1, "well": f"B{i:02d}", "site": 1,
    ...           "sirna_id": i} for i in range(2, 7)]
    >>> images = np.zeros((8, 8, 6), np.uint8)
    >>> _ = tfrecord.write_shard("a.tfrecord",
    ...                          [tfrecord.encode_example(s, image=images) for s in sites])
    >>> ds = make_dataset("*.tfrecord", batch_size=2, training=False)
    >>> [ids["id_code"].numpy().tolist() for _x, _y, ids in ds][-1]
    [b'HEPG2-01_1_B06']
"""

from __future__ import annotations

from rxdata.pipeline.dataset import LABEL_SPACES, make_dataset, predict
from rxdata.pipeline.options import (
    AugmentOptions,
    DistributeOptions,
    OrderOptions,
    PipelineOptions,
    PlacementOptions,
    ReadOptions,
)
from rxdata.pipeline.selection import Selection

__all__ = [
    "LABEL_SPACES",
    "AugmentOptions",
    "DistributeOptions",
    "OrderOptions",
    "PipelineOptions",
    "PlacementOptions",
    "ReadOptions",
    "Selection",
    "make_dataset",
    "predict",
]

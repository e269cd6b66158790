"""Which sites a dataset keeps: the record filters of :func:`rxdata.pipeline.make_dataset`.

Each is checked against what RxRx1 records can hold before any record is read, because a
value no record holds would filter everything out and leave an empty dataset without a
word: experiments in either spelling (``HEPG2-1`` is ``HEPG2-01``, as the records spell
it), the four cell types, the three well types, and the parts of a
:class:`~rxdata.splits.Split`.

Example:
    >>> value_list(["HEPG2-1", "U2OS-02"], "experiments")
    ['HEPG2-01', 'U2OS-02']
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

from rxdata import naming
from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError, ParseError

if TYPE_CHECKING:  # pragma: no cover
    from rxdata.splits import Split

__all__ = ["KeepFn", "experiment_spelling", "feature_in", "in_set", "split_keys", "value_list"]

#: A predicate on a parsed record: ``dict of tensors -> bool tensor``.
KeepFn = Callable[[dict[str, tf.Tensor]], tf.Tensor]


def experiment_spelling(name: str, argument: str) -> str:
    """The records' spelling of an experiment (``HEPG2-1`` -> ``HEPG2-01``).

    Raises:
        OptionsError: not ``{CELLTYPE}-{batch}`` with an RxRx1 cell type (names ``argument``).

    Example:
        >>> experiment_spelling("HUVEC-1", "experiments")
        'HUVEC-01'
    """
    try:
        cell_type, _ = naming.parse_experiment(name)
    except ParseError as err:
        raise OptionsError(f"{argument}={name!r}: {err}") from None
    if cell_type not in naming.CELL_TYPES:
        raise OptionsError(f"{argument}={name!r}: no RxRx1 cell type {naming.CELL_TYPES}")
    return naming.normalize_experiment(name)


def value_list(values: Collection[str] | str | None, name: str) -> list[str] | None:
    """The values of an ``experiments``/``cell_types``/``well_types`` filter, checked.

    Raises:
        OptionsError: empty, or a value no RxRx1 record holds (names it and what is allowed).

    Example:
        >>> value_list("treatment", "well_types")
        ['treatment']
    """
    if values is None:
        return None
    items = [values] if isinstance(values, str) else [str(v) for v in values]
    if not items:
        raise OptionsError(f"{name} is empty; pass None to keep every site")
    known = {"cell_types": naming.CELL_TYPES, "well_types": naming.WELL_TYPES}.get(name)
    for i, item in enumerate(items):
        if known is None:  # experiments, in either spelling
            items[i] = experiment_spelling(item, name)
        elif item not in known:
            raise OptionsError(f"{name}={item!r}: no record holds it; expected one of {known}")
    return items


def in_set(tensor: tf.Tensor, values: Sequence[str]) -> tf.Tensor:
    """Elementwise: is each string of ``tensor`` one of ``values``?

    Example:
        >>> in_set(tf.constant(["a", "b"]), ["b"]).numpy()
        array([False,  True])
    """
    return tf.reduce_any(tf.equal(tensor[..., None], tf.constant(list(values))), axis=-1)


def feature_in(key: str, values: Sequence[str]) -> KeepFn:
    """A predicate keeping the records whose string feature ``key`` is one of ``values``.

    Example:
        >>> keep = feature_in("well_type", ["treatment"])
        >>> keep({"well_type": tf.constant(["treatment", "negative_control"])}).numpy()
        array([ True, False])
    """
    allowed = list(values)

    def keep(parsed: dict[str, tf.Tensor]) -> tf.Tensor:
        return in_set(parsed[key], allowed)

    no_autograph: KeepFn = tf.autograph.experimental.do_not_convert(keep)
    return no_autograph


def split_keys(split: Split, part: str | Iterable[str]) -> tuple[list[str], list[str]]:
    """``(feature names, allowed keys)`` of a split's part(s), each key's columns joined.

    Raises:
        OptionsError: a part the split does not have, or a split grouped by a column the
            records do not hold.

    Example:
        >>> from rxdata.splits import Split
        >>> split = Split({"train": {"HEPG2-1"}, "val": {"U2OS-01"}})
        >>> split_keys(split, "train")
        (['experiment'], ['HEPG2-01'])
    """
    parts = [part] if isinstance(part, str) else list(part)
    unknown = [p for p in parts if p not in split.names]
    if unknown:
        raise OptionsError(f"part {unknown} is not in the split's parts {list(split.names)}")
    usable = (*tfr.STRING_KEYS, tfr.PLATE, tfr.SITE)
    bad = [c for c in split.by if c not in usable]
    if bad:
        raise OptionsError(
            f"split groups by {bad}, which the records do not hold; usable: {list(usable)}"
        )
    joined = {
        "\x1f".join(
            experiment_spelling(v, "split") if c == tfr.EXPERIMENT else v
            for c, v in zip(split.by, key, strict=True)
        )
        for p in parts
        for key in split.keys(p)
    }
    return list(split.by), sorted(joined)

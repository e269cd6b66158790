"""Which sites a dataset keeps: the one selection value of the filter stage.

:class:`Selection` gathers :func:`~rxdata.pipeline.make_dataset`'s site filters
(``include_controls``, ``experiments``, ``cell_types``, ``well_types``, ``split`` and
``part``) into one frozen value that checks itself against what RxRx1 records can hold
(:mod:`rxdata.filters`) before any record is read, and turns into the record predicates
of :func:`rxdata.pipeline.stages.filter_sites`.

Example:
    >>> sel = Selection(experiments="HEPG2-1", include_controls=False)
    >>> sel.experiments, [sorted(keys) for keys, _ in sel.predicates()]
    (('HEPG2-01',), [['sirna_id'], ['experiment']])
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import tensorflow as tf

from rxdata import naming
from rxdata import tfrecord as tfr
from rxdata.errors import OptionsError
from rxdata.filters import KeepFn, feature_in, in_set, split_keys, value_list

if TYPE_CHECKING:  # pragma: no cover
    from rxdata.splits import Split

__all__ = ["Predicate", "Selection"]

#: A record predicate and the (small) features it reads: ``(keys, keep)``.
Predicate = tuple[frozenset[str], KeepFn]


def _split_predicate(by: tuple[str, ...], allowed: tuple[str, ...]) -> KeepFn:
    """Keep the records whose ``by`` columns, joined as ``split_keys`` joins them, are allowed."""

    def in_split(p: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [p[c] if p[c].dtype == tf.string else tf.strings.as_string(p[c]) for c in by]
        joined = tf.strings.join(parts, "\x1f") if len(parts) > 1 else parts[0]
        return in_set(joined, allowed)

    return in_split


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The sites a dataset keeps; every filter is off by default (keep every site).

    Attributes:
        include_controls: Keep control wells (classes 1108..1138 of ``sirna_id``).
        experiments: Keep only these experiments (either spelling: ``HEPG2-1`` is
            ``HEPG2-01``); stored in the records' spelling.
        cell_types: Keep only these cell types.
        well_types: Keep only these well types.
        split: A :class:`rxdata.Split`; keep the groups of ``part``.
        part: The part(s) of ``split`` to keep.

    Raises:
        OptionsError: A value no RxRx1 record holds, an empty filter, ``split`` without
            ``part`` or the reverse, a part the split lacks.

    Example:
        >>> Selection(well_types="treated")
        Traceback (most recent call last):
        ...
        rxdata.errors.OptionsError: well_types='treated': no record holds it; ...
    """

    include_controls: bool = True  # the full label space (1139 classes), as released
    experiments: Collection[str] | str | None = None  # None: every site is kept
    cell_types: Collection[str] | str | None = None
    well_types: Collection[str] | str | None = None
    split: Split | None = None
    part: str | Iterable[str] | None = None
    split_by: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    split_allowed: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        for name in ("experiments", "cell_types", "well_types"):
            values = value_list(getattr(self, name), name)
            object.__setattr__(self, name, None if values is None else tuple(values))
        if self.split is not None:
            if self.part is None:
                raise OptionsError("split= needs part= (the part name(s) to keep)")
            by, allowed = split_keys(self.split, self.part)
            object.__setattr__(self, "split_by", tuple(by))
            object.__setattr__(self, "split_allowed", tuple(allowed))
        elif self.part is not None:
            raise OptionsError("part= needs split=")

    def predicates(self) -> list[Predicate]:
        """The record predicates of this selection, each with the features it reads.

        Example:
            >>> Selection().predicates()
            []
        """
        out: list[Predicate] = []
        if not self.include_controls:  # controls are classes 1108..1138, whatever the label
            out.append(
                (frozenset({tfr.SIRNA_ID}), lambda p: p[tfr.SIRNA_ID] < naming.NUM_TREATMENTS)
            )
        for key, values in (
            (tfr.EXPERIMENT, self.experiments),
            (tfr.CELL_TYPE, self.cell_types),
            (tfr.WELL_TYPE, self.well_types),
        ):
            if values is not None:
                out.append((frozenset({key}), feature_in(key, list(values))))
        if self.split_by:
            out.append(
                (frozenset(self.split_by), _split_predicate(self.split_by, self.split_allowed))
            )
        return out

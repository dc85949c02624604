"""The forecasts of one horizon waiting for their actual value, kept in columns.

A forecast made at ``t`` for ``t + h`` waits until the first reading at or
after ``t + h``; then it is scored and its models learn from what it kept:
the reading's features (single precision, raw and/or standardised), the
names of those features, the horizon features and the value then.
:class:`Pending` holds these in flat arrays, one column per field, instead of
a tuple of Python objects per forecast: a day-trained device's pending
forecasts take a third of the memory (each float a 4- or 8-byte slot, not a
24-byte object), and they pickle as a few byte strings.

A reading's feature names depend on the sensors it carries, so each forecast
keeps a reference to its key tuple. The device hands the same tuple object
for the same set of names (:meth:`~online_models.device.DeviceModels.keep`),
so a checkpoint pickles each distinct set once and a forecast costs a memo
reference (a few bytes), like its ``source``.

>>> p = Pending(("persistence", "linear"))
>>> keys = ("temp", "humidity")
>>> p.append(10.0, 70.0, 0.5, (21.0, None), 21.0, "persistence", (None, [0.5, -1.0], 21.0, keys), None)
>>> len(p), p.first_made(), p.due(60.0), len(p)
(1, 10.0, None, 1)
>>> made, target, kept, hx, w, preds, served, source = p.due(70.0)
>>> made, preds, served, source, list(kept[1]), kept[2], kept[3]
(10.0, (21.0, None), 21.0, 'persistence', [0.5, -1.0], 21.0, ('temp', 'humidity'))
>>> len(p)
0
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

from online_models.features import Features

__all__ = ["Due", "Kept", "Pending", "kept_features"]

# What a forecast keeps of its reading: (raw features or None, standardised ones or None,
# the target's value then, the features' names); :meth:`Pending.due` gives the floats back
# as single-precision arrays.
Kept = tuple[Sequence[float] | None, Sequence[float] | None, float, tuple[str, ...]]
# A due forecast: (made, target, kept or None, horizon features or None, weight,
# predictions (None where a model made none), served value or None, source).
Due = tuple[
    float,
    float,
    Kept | None,
    "array[float] | None",
    float,
    tuple[float | None, ...],
    float | None,
    str,
]

_NAN = math.nan
_HEAD = 5  # made, target, weight, served value, anchor of the kept features


class Pending:
    """A FIFO of forecasts in columns (see the module docstring); ``names`` are the models'."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.head = array("d")  # _HEAD per forecast
        self.preds = array("d")  # one per model and forecast, NaN for none
        self.sources: list[str] = []  # which model the served forecast came from
        self.flags = array("b")  # bit 0: raw features kept, bit 1: scaled, bit 2: horizon features
        self.keys: list[tuple[str, ...] | None] = []  # the names of the kept features, shared
        self.raw = array("f")
        self.scaled = array("f")
        self.hx = array("d")
        self.widths = [0, 0, 0]  # floats per forecast in hx (raw and scaled: len of its keys)

    def __len__(self) -> int:
        return len(self.sources)

    def first_made(self) -> float:
        return self.head[0]

    def append(
        self,
        made: float,
        target: float,
        w: float,
        preds: Iterable[float | None],
        served: float | None,
        source: str,
        kept: Kept | None,
        hx: Sequence[float] | None,
    ) -> None:
        """One forecast: ``kept`` is (raw, scaled, value, keys) or None, where raw and scaled
        (either may be None) hold one float per name in ``keys``; ``hx`` the horizon features."""
        self.head.extend((made, target, w, _NAN if served is None else served, _NAN))
        self.preds.extend(_NAN if p is None else p for p in preds)
        self.sources.append(source)
        flags = 0
        keys = None
        if kept is not None:
            raw, scaled, anchor, keys = kept
            self.head[-1] = anchor
            if raw is not None:
                self.raw.extend(raw)
                flags |= 1
            if scaled is not None:
                self.scaled.extend(scaled)
                flags |= 2
        self.keys.append(keys)
        if hx is not None:
            self.hx.extend(hx)
            self.widths[2] = len(hx)
            flags |= 4
        self.flags.append(flags)

    def due(self, ts: float) -> Due | None:
        """The oldest forecast if its target time has come (removed), else None:
        (made, target, kept or None, horizon features or None, weight, predictions, served,
        source)."""
        if not self.sources or self.head[1] > ts:
            return None
        return self.popleft()

    def popleft(self) -> Due:
        made, target, w, served, anchor = self.head[:_HEAD]
        del self.head[:_HEAD]
        n = len(self.names)
        preds = tuple(None if p != p else p for p in self.preds[:n])
        del self.preds[:n]
        source = self.sources.pop(0)
        flags = self.flags.pop(0)
        keys = self.keys.pop(0)
        kept: Kept | None = None
        if flags & 3:
            assert keys is not None  # set whenever features are kept
            k = len(keys)
            raw: array[float] | None = None
            scaled: array[float] | None = None
            if flags & 1:
                raw = self.raw[:k]
                del self.raw[:k]
            if flags & 2:
                scaled = self.scaled[:k]
                del self.scaled[:k]
            kept = (raw, scaled, anchor, keys)
        hx: array[float] | None = None
        if flags & 4:
            k = self.widths[2]
            hx = self.hx[:k]
            del self.hx[:k]
        return made, target, kept, hx, w, preds, None if served != served else served, source


def kept_features(kept: Kept, target: str) -> Features:
    """The features (and their standardised twin, ``.scaled``) a pending forecast kept of its
    reading, back as the learners read them; ``target`` is the target's name.

    >>> x = kept_features(([21.0, 5.0], None, 21.5, ("temp", "dt")), "temp")
    >>> x, x.scaled
    ({'temp': 21.5, 'dt': 5.0}, None)
    """
    raw, scaled, value, keys = kept
    xm = Features(zip(keys, raw, strict=True)) if raw is not None else Features()
    xm[target] = value
    if scaled is not None:
        xm.scaled = dict(zip(keys, scaled, strict=True))
    return xm

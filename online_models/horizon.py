"""Horizon-aware features: what a forecast ``h`` seconds ahead is made from.

A forecast of the target at ``t + h`` needs other inputs than the nowcast:
how far the value now sits from its recent means, on time scales tied to
``h``; how the day usually goes from ``t`` to ``t + h``; and what the sensor
read one day before the target time. :class:`HorizonFeatures` keeps, per
device and with bounded state, what these need:

- exponential means of the target over ``h/4``, ``h`` and ``4h`` (for every
  horizon of the device; time-weighted, so irregular cadence is fine);
- a :class:`DayRing` of ``step``-second bin means covering the last day and
  the longest horizon (linearly interpolated across short silences);
- the device's typical interval between readings (its cadence).

:meth:`HorizonFeatures.vector` returns the features of one horizon at the
reading just added, as a dict (River's convention), every value a change
relative to the value now, or a change of the time of day:

- ``m_q``, ``m_1``, ``m_4``: the ``h/4``, ``h`` and ``4h`` means minus the value now;
- ``c1``, ``s1``, ``c2``, ``s2``: the change of the first two daily harmonics
  from now to the target time (``cos(φ(t+h)) - cos(φ(t))`` and so on,
  scaled to unit amplitude), which any daily cycle's expected change over
  ``h`` is a combination of;
- ``season``: the value one day before the target time minus the value now,
  and ``season_d``: how the value moved over the same ``h`` one day earlier
  (both 0 until a day of history exists, when ``has_day`` turns 1).

The seasonal naive baseline reads the same ring (:meth:`HorizonFeatures.day_before`).

>>> hf = HorizonFeatures((900, 3600), step=300)
>>> for i in range(400):  # 5-minute readings, 33 hours of a daily sine
...     t = 1_600_000_200.0 + 300 * i
...     hf.add(t, 20.0 + math.sin(2 * math.pi * t / 86_400))
>>> x = hf.vector(3600, t, 20.0 + math.sin(2 * math.pi * t / 86_400))
>>> sorted(x)
['c1', 'c2', 'has_day', 'm_1', 'm_4', 'm_q', 's1', 's2', 'season', 'season_d']
>>> x["has_day"], round(x["season_d"], 3) == round(hf.day_before(t + 3600) - hf.day_before(t), 3)
(1.0, True)
>>> hf.cadence
300.0
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

__all__ = ["DAY", "DayRing", "HorizonFeatures", "HorizonX", "NAMES"]

DAY = 86_400.0
_TAU = 2.0 * math.pi
NAMES = ("m_q", "m_1", "m_4", "c1", "s1", "c2", "s2", "season", "season_d", "has_day")
# how fast the cadence estimate follows the intervals between readings
_CADENCE_RATE = 0.02
# silences longer than this are not interpolated in the ring
_MAX_FILL_S = 6 * 3600.0


class HorizonX(dict[str, float]):
    """The horizon features of one forecast (a dict), with the value now (``anchor``) and the
    value one day before the target time (``day_before``, or ``None``) beside them.

    >>> x = HorizonX(m_1=0.5); x.anchor = 21.0
    >>> x["m_1"], x.anchor, x.day_before
    (0.5, 21.0, None)
    """

    anchor: float | None = None
    day_before: float | None = None
    made_ts: float | None = None  # when the forecast is made
    cadence: float | None = None  # the device's typical interval between readings, seconds


class DayRing:
    """The last ``span`` seconds of a series as ``step``-second bin means (bounded, O(1) a reading).

    Bins a short silence skipped are filled by linear interpolation between
    the bins on either side; after a longer one they stay empty.
    :meth:`at` returns the bin mean at a time, or ``None`` when that bin is
    empty or older than the span.

    >>> r = DayRing(step=60, span=600)
    >>> r.add(0.0, 10.0); r.add(30.0, 12.0); r.add(180.0, 14.0)
    >>> r.at(10.0), r.at(70.0), r.at(130.0), r.at(200.0), r.at(1000.0)
    (11.0, 12.0, 13.0, 14.0, None)
    """

    def __init__(self, step: int = 300, span: float = DAY + 6 * 3600.0) -> None:
        self.step = int(step)
        self.size = int(span // step) + 2
        self.bins = array("q", [-1]) * self.size
        self.means = array("d", [0.0]) * self.size
        self.current: int | None = None
        self.sum = 0.0
        self.count = 0

    def add(self, ts: float, value: float) -> None:
        """Fold one reading (in time order) into its bin."""
        b = int(ts // self.step)
        current = self.current
        if current is None:
            self.current = current = b
        if b != current:
            mean = self.sum / self.count
            gap = b - current
            if 1 < gap <= min(self.size, _MAX_FILL_S / self.step):
                for k in range(1, gap):
                    self._put(current + k, mean + (value - mean) * k / gap)
            self.current = b
            self.sum = 0.0
            self.count = 0
        self.sum += value
        self.count += 1
        self._put(b, self.sum / self.count)

    def _put(self, b: int, mean: float) -> None:
        slot = b % self.size
        self.bins[slot] = b
        self.means[slot] = mean

    def at(self, ts: float) -> float | None:
        b = int(ts // self.step)
        slot = b % self.size
        return self.means[slot] if self.bins[slot] == b else None


class HorizonFeatures:
    """Per-device state behind the horizon features (see the module docstring).

    ``horizons`` are the forecast horizons in seconds (0 is ignored);
    ``step`` the ring's bin width. Call :meth:`add` once per learned reading,
    in time order, then :meth:`vector` for each horizon that forecasts now.

    >>> hf = HorizonFeatures((60,))
    >>> hf.add(0.0, 21.0); hf.vector(60, 0.0, 21.0)["m_1"]
    0.0
    """

    def __init__(self, horizons: Iterable[int], step: int = 300) -> None:
        hs = sorted({int(h) for h in horizons if h > 0})
        self.horizons = tuple(hs)
        self.taus = tuple(sorted({float(t) for h in hs for t in (h / 4, h, 4 * h)}))
        self._index = {t: i for i, t in enumerate(self.taus)}
        self.means = array("d", [0.0]) * len(self.taus)
        self.ring = DayRing(step, DAY + max(hs, default=0) + 2 * step)
        self.last_ts: float | None = None
        self.cadence: float | None = None
        self.first_ts: float | None = None

    def add(self, ts: float, value: float) -> None:
        """Fold one reading into the means, the ring and the cadence."""
        last = self.last_ts
        means = self.means
        if last is None:
            self.first_ts = ts
            for i in range(len(means)):
                means[i] = value
        else:
            dt = ts - last
            cadence = self.cadence
            self.cadence = dt if cadence is None else cadence + _CADENCE_RATE * (dt - cadence)
            exp = math.exp
            for i, tau in enumerate(self.taus):
                means[i] += (1.0 - exp(-dt / tau)) * (value - means[i])
        self.ring.add(ts, value)
        self.last_ts = ts

    def mean(self, tau: float) -> float:
        """The exponential mean over ``tau`` seconds (one of :attr:`taus`)."""
        return self.means[self._index[tau]]

    def day_before(self, ts: float) -> float | None:
        """The bin mean one day before ``ts``, or ``None`` without history there."""
        return self.ring.at(ts - DAY)

    def vector(self, horizon: int, ts: float, value: float) -> HorizonX:
        """The features of a forecast ``horizon`` seconds ahead made now (see the module docstring)."""
        index = self._index
        means = self.means
        h = float(horizon)
        target = ts + h
        p0 = (ts % DAY) / DAY * _TAU
        p1 = (target % DAY) / DAY * _TAU
        # scale the harmonics' changes to unit amplitude: their size alone says little
        d1 = 2.0 * math.sin(min(math.pi / 2, _TAU * h / DAY / 2)) or 1.0
        d2 = 2.0 * math.sin(min(math.pi / 2, 2 * _TAU * h / DAY / 2)) or 1.0
        cos, sin = math.cos, math.sin
        then = self.ring.at(target - DAY)
        before = self.ring.at(ts - DAY)
        if then is not None and before is not None:
            season, season_d, has_day = then - value, then - before, 1.0
        else:
            season = season_d = has_day = 0.0
        x = HorizonX(
            {
                "m_q": means[index[h / 4]] - value,
                "m_1": means[index[h]] - value,
                "m_4": means[index[4 * h]] - value,
                "c1": (cos(p1) - cos(p0)) / d1,
                "s1": (sin(p1) - sin(p0)) / d1,
                "c2": (cos(2 * p1) - cos(2 * p0)) / d2,
                "s2": (sin(2 * p1) - sin(2 * p0)) / d2,
                "season": season,
                "season_d": season_d,
                "has_day": has_day,
            }
        )
        x.anchor = value
        x.day_before = then
        x.made_ts = ts
        x.cadence = self.cadence
        return x

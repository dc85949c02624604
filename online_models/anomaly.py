"""Sensor anomalies of one device, as events: spikes, level shifts, stuck values, silences, gas rises.

A :class:`Watch` sees every reading of its device (after duplicates, late
readings and glitches are set aside) and the served nowcast's interval for it,
and says whether the models may learn the reading. Kinds:

``spike``
    a reading far outside its own nowcast interval (more than ``far`` times the
    95 % band's half-width from its centre) that the next reading does not
    confirm; the models never see it.
``level_shift``
    ``confirm`` readings in a row far outside the interval on the same side: the
    series jumped. The models learn again from the confirming reading on (they
    must follow the new level); the readings held back while it was a suspected
    spike are not learned. Or a slow departure: the recent level (an exponential
    mean over about ``shift_short_s``) stands more than ``shift_z`` long-run
    deviations from the device's own level of the last days (``shift_long_s``)
    for ``shift_short_s``; three deviations is the control-chart convention. It
    ends when the distance falls under half that; nothing is held back (a real
    change must be learned).
``stuck``
    the same value for more than ``stuck_factor`` times this device's usual
    longest run of equal values (the 99th percentile of its past runs, tracked
    online), and at least ``stuck_min_s``. Readings of a stuck sensor are not
    learned: a model taught a flat line forecasts one.
``silent``
    no reading for more than ``silent_factor`` times the device's usual interval
    (its median, tracked online), and at least ``silent_min_s``. Raised by the
    processor's sweep while the silence lasts (:meth:`Watch.silence`), and ended
    by the next reading; offline, found at the next reading.
``gas_rise``
    a gas (``co``, ``lpg``, ``smoke``) whose recent log-level (mean over about
    ``gas_short_s``) stands more than ``gas_z`` deviations above its own long-run
    level (over about ``gas_long_s``) for ``gas_hold_s``. For gas the alarm
    matters more than the forecast, so nothing is held back from learning.

The usual run, interval and levels are learned per device with two floats
each (log-domain quantile trackers and exponential means), so the thresholds
are multiples of the device's own behaviour, not constants of a file. An event
is a :class:`Anomaly`: device, kind, start, end (``None`` while it lasts), the
value, the expected range and a score (how many thresholds away it was).

>>> w = Watch("d1")
>>> for i in range(40):  # a calm reading every 5 s, the nowcast right with a +-0.2 band
...     _ = w.observe(1000.0 + 5 * i, 21.0 + 0.1 * (i % 3), 21.0 + 0.1 * (i % 3), (-0.2, 0.2))
>>> w.observe(1200.0, 35.0, 21.1, (-0.2, 0.2)).learn  # far outside: held back
False
>>> v = w.observe(1205.0, 21.1, 21.1, (-0.2, 0.2))  # back in: it was a spike
>>> [(a.kind, a.start_ts, a.value) for a in v.events], v.learn
([('spike', 1200.0, 35.0)], True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["GASES", "Anomaly", "Verdict", "Watch"]

GASES = ("co", "lpg", "smoke")


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly of one device (``end_ts`` ``None``: still going on)."""

    device: str
    kind: str
    start_ts: float
    end_ts: float | None
    value: float
    expected_low: float
    expected_high: float
    score: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`Watch.observe` says of a reading: may the models learn it, and the events."""

    learn: bool = True
    events: tuple[Anomaly, ...] = ()


_LEARN = Verdict()
_HOLD = Verdict(learn=False)


class _LogQuantile:
    """The ``tau``-quantile of a positive quantity, tracked on the log scale (one float)."""

    __slots__ = ("log_q", "n", "tau")

    def __init__(self, tau: float) -> None:
        self.tau = tau
        self.log_q = 0.0
        self.n = 0

    def update(self, x: float, lr: float = 0.05) -> None:
        lx = math.log(max(x, 1e-9))
        self.n += 1
        if self.n == 1:
            self.log_q = lx
        else:
            self.log_q += lr * ((1.0 if lx > self.log_q else 0.0) - (1.0 - self.tau))

    @property
    def value(self) -> float:
        return math.exp(self.log_q)


@dataclass(slots=True)
class _Level:
    """Short and long exponential means of a series, in time, and the long-run variance."""

    short_s: float
    long_s: float
    clip: float = 3.0
    short: float = math.nan
    long: float = math.nan
    var: float = 0.0
    since: float = math.nan  # first ts: z is meaningful after a long span
    last: float = math.nan

    def update(self, ts: float, x: float) -> float | None:
        """Add ``x`` at ``ts``; the short mean's distance from the long one in long-run sds."""
        if math.isnan(self.short):
            self.short = self.long = x
            self.since = self.last = ts
            return None
        dt = max(ts - self.last, 0.0)
        self.last = ts
        a_s = 1.0 - math.exp(-dt / self.short_s)
        a_l = 1.0 - math.exp(-dt / self.long_s)
        self.short += a_s * (x - self.short)
        d = x - self.long
        self.long += a_l * d
        warm = self.var > 0.0 and ts - self.since >= self.long_s
        # a departure must not hide itself by widening the spread it is measured in:
        # once warm, a reading counts in the spread as at most `clip` deviations away
        # (Huber's clipping, at the alarm's own threshold: no second constant)
        if warm:
            bound = self.clip * math.sqrt(self.var)
            d = min(max(d, -bound), bound)
        self.var = (1.0 - a_l) * (self.var + a_l * d * d)
        if ts - self.since < self.long_s or self.var <= 0.0:
            return None
        return (self.short - self.long) / math.sqrt(self.var)


@dataclass(slots=True)
class _Suspect:
    start_ts: float
    value: float
    low: float
    high: float
    score: float
    side: int
    count: int = 1


@dataclass(slots=True)
class _Gas:
    level: _Level
    since: float | None = None  # when the rise began to hold
    raised: bool = False
    peak: float = 0.0


@dataclass
class Watch:
    """The anomaly detectors of one device (see the module docstring for each setting)."""

    device: str
    far: float = 4.0
    confirm: int = 3
    stuck_factor: float = 3.0
    stuck_min_s: float = 300.0
    silent_factor: float = 10.0
    silent_min_s: float = 60.0
    shift_short_s: float = 7200.0
    shift_long_s: float = 3 * 86400.0
    shift_z: float = 3.0
    gas_short_s: float = 600.0
    gas_long_s: float = 86400.0
    gas_z: float = 4.0
    gas_hold_s: float = 300.0
    _suspect: _Suspect | None = None
    _settling: int = 0
    _run_value: float = math.nan
    _run_start: float = math.nan
    _run_n: int = 0
    _stuck: Anomaly | None = None
    _runs: _LogQuantile = field(default_factory=lambda: _LogQuantile(0.99))
    _gaps: _LogQuantile = field(default_factory=lambda: _LogQuantile(0.5))
    _last_ts: float | None = None
    _silent_raised: bool = False
    _gas: dict[str, _Gas] = field(default_factory=dict)
    _drift: _Gas | None = None

    # ------------------------------------------------------------ every reading
    def observe(
        self,
        ts: float,
        value: float,
        nowcast: float | None,
        band: tuple[float, float] | None,
        gases: Mapping[str, float | None] | None = None,
    ) -> Verdict:
        """Judge one reading of the target: ``nowcast`` is the served nowcast made for it and
        ``band`` its 95 % interval's offsets (low, high), both ``None`` before there is one."""
        events: list[Anomaly] = []
        self._interval(ts, events)
        stuck = self._stuck_run(ts, value, events)
        learn = not stuck and self._spike(ts, value, nowcast, band, events)
        if learn:
            self._departure(ts, value, events)
        if gases:
            self._gas_rise(ts, gases, events)
        if not events:
            return _LEARN if learn else _HOLD
        return Verdict(learn, tuple(events))

    def silence(self, now: float) -> Anomaly | None:
        """An ongoing ``silent`` event if the device has been quiet too long (once per silence)."""
        if self._last_ts is None or self._silent_raised or self._gaps.n < 10:
            return None
        limit = self._silent_limit()
        if now - self._last_ts <= limit:
            return None
        self._silent_raised = True
        gap = now - self._last_ts
        return Anomaly(self.device, "silent", self._last_ts, None, gap, 0.0, limit, gap / limit)

    # ------------------------------------------------------------ the detectors
    def _silent_limit(self) -> float:
        return max(self.silent_factor * self._gaps.value, self.silent_min_s)

    def _interval(self, ts: float, events: list[Anomaly]) -> None:
        last = self._last_ts
        self._last_ts = ts
        if last is None:
            return
        gap = ts - last
        limit = self._silent_limit()
        if self._gaps.n >= 10 and gap > limit:
            events.append(Anomaly(self.device, "silent", last, ts, gap, 0.0, limit, gap / limit))
        else:  # a silence does not teach the usual interval
            self._gaps.update(gap)
        self._silent_raised = False

    def _stuck_run(self, ts: float, value: float, events: list[Anomaly]) -> bool:
        if value == self._run_value:
            self._run_n += 1
            length = ts - self._run_start
            if self._stuck is None and self._runs.n >= 20 and self._run_n >= 3:
                limit = max(self.stuck_factor * self._runs.value, self.stuck_min_s)
                if length > limit:
                    self._stuck = Anomaly(
                        self.device, "stuck", self._run_start, None, value, value, value,
                        length / limit,
                    )  # fmt: skip
                    events.append(self._stuck)
            return self._stuck is not None
        if self._stuck is not None:  # the run ended: close the event, learn nothing of the run
            s = self._stuck
            end = Anomaly(s.device, s.kind, s.start_ts, ts, s.value, s.value, s.value, s.score)
            events.append(end)
            self._stuck = None
        elif self._run_n >= 1 and not math.isnan(self._run_start):
            self._runs.update(max(ts - self._run_start, 1e-3))
        self._run_value, self._run_start, self._run_n = value, ts, 1
        return False

    def _spike(
        self,
        ts: float,
        value: float,
        nowcast: float | None,
        band: tuple[float, float] | None,
        events: list[Anomaly],
    ) -> bool:
        """Whether the models may learn this reading (a suspected spike is held back)."""
        if nowcast is None or band is None:
            self._suspect, self._settling = None, 0
            return True
        low, high = nowcast + band[0], nowcast + band[1]
        mid, half = (low + high) / 2.0, max((high - low) / 2.0, 1e-9)
        score = abs(value - mid) / half
        side = 1 if value > mid else -1
        s = self._suspect
        if score <= self.far or side == self._settling:
            if score <= self.far:
                self._settling = 0  # the models caught up with the new level
            if s is not None:  # it came back: the suspect was a spike
                events.append(
                    Anomaly(self.device, "spike", s.start_ts, ts, s.value, s.low, s.high, s.score)
                )
                self._suspect = None
            return True
        if s is None or s.side != side:
            self._suspect = _Suspect(ts, value, low, high, score / self.far, side)
            return False
        s.count += 1
        if s.count < self.confirm:
            return False
        events.append(
            Anomaly(self.device, "level_shift", s.start_ts, None, value, s.low, s.high, s.score)
        )
        self._suspect = None
        self._settling = side  # learn the new level until the nowcast reaches it
        return True

    def _departure(self, ts: float, value: float, events: list[Anomaly]) -> None:
        d = self._drift
        if d is None:
            d = self._drift = _Gas(_Level(self.shift_short_s, self.shift_long_s))
        z = d.level.update(ts, value)
        far = z is not None and abs(z) > self.shift_z
        if not far:
            if d.raised and (z is None or abs(z) < self.shift_z / 2.0):
                events.append(self._shift(d, ts, value, ts))
                d.since, d.raised, d.peak = None, False, 0.0
            elif not d.raised:
                d.since = None
            return
        assert z is not None
        d.peak = max(d.peak, abs(z) / self.shift_z)
        if d.since is None:
            d.since = ts
        if not d.raised and ts - d.since >= self.shift_short_s:
            d.raised = True
            events.append(self._shift(d, ts, value, None))

    def _shift(self, d: _Gas, ts: float, value: float, end: float | None) -> Anomaly:
        sd = math.sqrt(d.level.var)
        low, high = d.level.long - self.shift_z * sd, d.level.long + self.shift_z * sd
        return Anomaly(self.device, "level_shift", d.since or ts, end, value, low, high, d.peak)

    def _gas_rise(
        self, ts: float, gases: Mapping[str, float | None], events: list[Anomaly]
    ) -> None:
        for name, value in gases.items():
            if value is None or value <= 0.0:
                continue
            g = self._gas.get(name)
            if g is None:
                g = self._gas[name] = _Gas(_Level(self.gas_short_s, self.gas_long_s))
            z = g.level.update(ts, math.log(value))
            if z is None or z <= self.gas_z:
                if g.raised:
                    events.append(
                        Anomaly(self.device, "gas_rise", g.since or ts, ts, value, 0.0, 0.0, g.peak)
                    )
                g.since, g.raised, g.peak = None, False, 0.0
                continue
            g.peak = max(g.peak, z / self.gas_z)
            if g.since is None:
                g.since = ts
            if not g.raised and ts - g.since >= self.gas_hold_s:
                g.raised = True
                high = math.exp(g.level.long + self.gas_z * math.sqrt(g.level.var))
                events.append(
                    Anomaly(self.device, "gas_rise", g.since, None, value, 0.0, high, g.peak)
                )

"""Sensor anomalies of one device, as events: spikes, level shifts, stuck values, silences, gas rises.

A :class:`Watch` sees every reading of its device (after duplicates, late
readings and glitches are set aside) and the served nowcast's interval for it,
and says whether the models may learn the reading. Kinds:

``spike``
    a reading far outside its own nowcast interval (more than ``far`` times the
    95 % band's half-width from its centre, the half-width never less than the
    sensor's resolution, the least change seen between two readings) whose next
    reading comes back: nearer the level the reading left than the reading itself
    (judged against that level, whatever the models made of the suspect); the
    models never see it. A reading is only suspected after a calm one (within
    half of ``far``) and not right after a silence: a nowcast made from a
    surprise, or across a silence, is no reference.
``level_shift``
    ``confirm`` readings in a row that stay nearer the suspect than the level it
    left: the series jumped (reported whole, from the jump to the confirming
    reading: a jump is a moment, not a state). The models learn again from the
    confirming reading on (they must follow the new level); the readings held
    back while it was a suspected spike are not learned. Or a slow departure, an exponential control
    chart: the recent level (an exponential mean over ``shift_short_s``) stands
    more than ``shift_z`` of its usual distances (a standard deviation learned
    per device) from the device's long-run level (``shift_long_s``) for
    ``shift_hold_s``; three deviations is the control-chart convention, and a
    distance beyond them is left out of the usual spread, as out-of-control
    points are left out of a chart's limits. The chart speaks after a day (one
    daily cycle of the device). It ends when the distance falls under half the
    threshold; nothing is held back (a real change must be learned).
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

__all__ = ["GASES", "KINDS", "Anomaly", "Verdict", "Watch"]

GASES = ("co", "lpg", "smoke")
KINDS = ("spike", "level_shift", "stuck", "silent", "gas_rise")  # every kind a Watch raises


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


class _Values:
    """Pickled as its values alone, in slot order (no names): a checkpoint holds a watch per
    device."""

    __slots__ = ()

    def __getstate__(self) -> tuple[object, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        names: tuple[str, ...] = self.__slots__
        for name, value in zip(names, state, strict=True):
            object.__setattr__(self, name, value)


class _LogQuantile(_Values):
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
class _Level(_Values):
    """An exponential control chart: a short mean of a series against its long-run mean, in
    time, and the spread of their distance (the chart's own statistic, not the readings')."""

    short_s: float
    long_s: float
    warm_s: float = 86400.0
    clip: float = 3.0
    short: float = math.nan
    long: float = math.nan
    var: float = 0.0
    since: float = math.nan  # first ts: the chart speaks after warm_s
    last: float = math.nan

    def update(self, ts: float, x: float) -> float | None:
        """Add ``x`` at ``ts``; the short mean's distance from the long one in its usual sds."""
        if math.isnan(self.short):
            self.short = self.long = x
            self.since = self.last = ts
            return None
        dt = max(ts - self.last, 0.0)
        self.last = ts
        age = ts - self.since
        a_s = 1.0 - math.exp(-dt / self.short_s)
        # the plain mean of all so far until the long span is reached, then an exponential one
        a_l = max(1.0 - math.exp(-dt / self.long_s), dt / age if age > 0.0 else 1.0)
        self.short += a_s * (x - self.short)
        self.long += a_l * (x - self.long)
        d = self.short - self.long
        warm = age >= self.warm_s and self.var > 0.0
        # a departure must not hide itself by widening the spread it is measured in: once
        # warm, a distance beyond the alarm's own threshold is out of control and, as in a
        # control chart's limits, left out of the spread (the long mean still follows it)
        sd = math.sqrt(self.var)
        if not warm or abs(d) <= self.clip * sd:
            self.var += a_l * (d * d - self.var)
        return d / sd if warm else None


@dataclass(slots=True)
class _Suspect(_Values):
    start_ts: float
    value: float
    low: float
    high: float
    score: float
    side: int
    mid: float  # the level the reading left: what "came back" is judged against
    count: int = 1


@dataclass(slots=True)
class _Gas(_Values):
    level: _Level
    since: float | None = None  # when the rise began to hold
    raised: bool = False
    peak: float = 0.0


@dataclass(slots=True)  # pickled as its values alone: small in a checkpoint
class Watch(_Values):
    """The anomaly detectors of one device (see the module docstring for each setting)."""

    device: str
    far: float = 4.0
    confirm: int = 3
    stuck_factor: float = 3.0
    stuck_min_s: float = 300.0
    silent_factor: float = 10.0
    silent_min_s: float = 60.0
    shift_short_s: float = 1800.0
    shift_long_s: float = 3 * 86400.0
    shift_z: float = 3.0
    shift_hold_s: float = 1800.0
    gas_short_s: float = 600.0
    gas_long_s: float = 86400.0
    gas_z: float = 4.0
    gas_hold_s: float = 300.0
    _suspect: _Suspect | None = None
    _settling: int = 0
    _calm: bool = False  # the last reading was no surprise: a reference for the next
    _step: float = math.inf  # the sensor's resolution: the least change between two readings
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
            self._calm = False  # a nowcast across a silence is no reference
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
        if not math.isnan(self._run_value):
            self._step = min(self._step, abs(value - self._run_value))
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
            self._suspect, self._settling, self._calm = None, 0, False
            return True
        low, high = nowcast + band[0], nowcast + band[1]
        mid = (low + high) / 2.0
        # no reading is judged finer than the sensor's own resolution
        half = max((high - low) / 2.0, self._step if self._step < math.inf else 0.0, 1e-9)
        score = abs(value - mid) / half
        side = 1 if value > mid else -1
        s = self._suspect
        if s is not None:
            # judged against the level the suspect left, whatever the models made of it
            if abs(value - s.mid) <= abs(value - s.value):  # back: the suspect was a spike
                events.append(
                    Anomaly(self.device, "spike", s.start_ts, ts, s.value, s.low, s.high, s.score)
                )
                self._suspect, self._calm = None, True
                return True
            s.count += 1
            if s.count < self.confirm:
                return False
            events.append(
                # a jump is a moment, not a state: reported whole, from the jump to its proof
                Anomaly(self.device, "level_shift", s.start_ts, ts, value, s.low, s.high, s.score)
            )
            self._suspect, self._calm = None, False
            self._settling = side  # learn the new level until the nowcast reaches it
            return True
        calm, self._calm = self._calm, score <= self.far / 2.0
        if score <= self.far or side == self._settling or not calm:
            if score <= self.far:
                self._settling = 0  # the models caught up with the new level
            return True
        self._suspect = _Suspect(ts, value, low, high, score / self.far, side, mid)
        return False

    def _departure(self, ts: float, value: float, events: list[Anomaly]) -> None:
        d = self._drift
        if d is None:
            level = _Level(self.shift_short_s, self.shift_long_s, clip=self.shift_z)
            d = self._drift = _Gas(level)
        z = d.level.update(ts, value)
        if d.raised:
            if z is None or abs(z) < self.shift_z / 2.0:
                events.append(self._shift(d, ts, value, ts))
                d.since, d.raised, d.peak = None, False, 0.0
            elif z is not None:
                d.peak = max(d.peak, abs(z) / self.shift_z)
            return
        if z is None or abs(z) <= self.shift_z:
            d.since, d.peak = None, 0.0
            return
        d.peak = max(d.peak, abs(z) / self.shift_z)
        if d.since is None:
            d.since = ts
        if ts - d.since >= self.shift_hold_s:  # it persists: a level shift
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
                level = _Level(self.gas_short_s, self.gas_long_s, clip=self.gas_z)
                g = self._gas[name] = _Gas(level)
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

"""Sensor anomalies as events, each kind on a series built to hold it, and quiet on calm data."""

from __future__ import annotations

import math
import random

from online_models.anomaly import Watch

BAND = (-0.3, 0.3)  # the served nowcast's 95 % offsets in these series


def calm(watch: Watch, start: float, n: int, step: float = 5.0, seed: int = 0) -> float:
    """Feed ``n`` calm readings (a slow wave with noise, 0.1 °C steps); return the next ts."""
    rng = random.Random(seed)
    ts = start
    for i in range(n):
        value = round(21.0 + math.sin(i / 500.0) + rng.gauss(0.0, 0.1), 1)
        verdict = watch.observe(ts, value, value + rng.gauss(0.0, 0.1), BAND)
        assert verdict.learn and not verdict.events, (ts, value, verdict)
        ts += step * (0.5 + rng.random())
    return ts


def kinds(verdicts) -> list[tuple[str, bool]]:
    return [(a.kind, a.end_ts is None) for v in verdicts for a in v.events]


def test_calm_readings_raise_nothing_and_are_all_learned():
    calm(Watch("d"), 0.0, 30_000)


def test_a_spike_is_held_back_and_reported_when_the_next_reading_comes_back():
    w = Watch("d")
    ts = calm(w, 0.0, 500)
    out = [w.observe(ts, 30.0, 21.0, BAND), w.observe(ts + 5, 21.0, 21.0, BAND)]
    assert [v.learn for v in out] == [False, True]
    (spike,) = out[1].events
    assert (spike.kind, spike.start_ts, spike.end_ts, spike.value) == ("spike", ts, ts + 5, 30.0)
    assert spike.expected_low == 20.7 and spike.expected_high == 21.3 and spike.score > 1


def test_a_jump_that_stays_is_a_level_shift_and_learning_resumes():
    w = Watch("d")
    ts = calm(w, 0.0, 500)
    out = [w.observe(ts + 5 * i, 26.0, 21.0, BAND) for i in range(4)]
    assert [v.learn for v in out] == [False, False, True, True]
    assert kinds(out) == [("level_shift", True)]


def test_a_stuck_sensor_is_reported_within_its_limit_and_not_learned():
    w = Watch("d")
    ts = calm(w, 0.0, 3000)
    limit = max(w.stuck_factor * w._runs.value, w.stuck_min_s)
    out = []
    for i in range(400):  # 2,000 s of one value
        out.append(w.observe(ts + 5 * i, 21.3, 21.3, BAND))
    raised = [i for i, v in enumerate(out) if v.events]
    assert raised and 5 * raised[0] <= limit + 5
    assert not any(v.learn for v in out[raised[0] :])
    end = w.observe(ts + 2000, 21.4, 21.3, BAND)
    assert kinds([end]) == [("stuck", False)] and end.learn


def test_silence_is_raised_once_by_the_sweep_and_closed_by_the_next_reading():
    w = Watch("d")
    ts = calm(w, 0.0, 200)
    last = ts - 1  # about; the limit is ten usual intervals, at least a minute
    assert w.silence(ts + 30) is None
    ongoing = w.silence(ts + 600)
    assert ongoing is not None and ongoing.kind == "silent" and ongoing.end_ts is None
    assert w.silence(ts + 700) is None
    back = w.observe(ts + 900, 21.0, 21.0, BAND)
    assert kinds([back]) == [("silent", False)] and back.events[0].start_ts < last + 1


def test_a_slow_departure_from_the_usual_level_is_a_level_shift():
    w = Watch("d")
    ts = 0.0
    rng = random.Random(3)
    for i in range(24 * 10):  # ten days, hourly, a daily cycle
        v = 21.0 + 2.0 * math.sin(2 * math.pi * i / 24) + rng.gauss(0, 0.3)
        assert not w.observe(ts, v, None, None).events
        ts += 3600.0
    out = [w.observe(ts + 3600.0 * i, 21.0 + 1.0 * i, None, None) for i in range(24)]
    assert ("level_shift", True) in kinds(out)


def test_a_gas_that_keeps_rising_raises_an_alarm_and_learning_goes_on():
    w = Watch("d")
    ts, rng = 0.0, random.Random(4)
    for _ in range(20_000):  # 28 h every 5 s
        co = 0.005 * math.exp(rng.gauss(0.0, 0.05))
        assert not w.observe(ts, 21.0, 21.0, BAND, {"co": co}).events
        ts += 5.0
    out = [
        w.observe(ts + 5 * i, 21.0, 21.0, BAND, {"co": 0.005 * math.exp(i / 60)})
        for i in range(200)
    ]
    assert ("gas_rise", True) in kinds(out) and all(v.learn for v in out)

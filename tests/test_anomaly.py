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
    # reported whole (a jump is a moment): from the jump to the reading that confirmed it
    (shift,) = [a for v in out for a in v.events]
    assert (shift.kind, shift.start_ts, shift.end_ts) == ("level_shift", ts, ts + 10)


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


def test_a_step_of_the_sensors_resolution_is_no_spike_however_narrow_the_band():
    # a DHT22 reports in 0.1 °C steps: after a long flat stretch the band shrinks to almost
    # nothing, and one step must still not count as a reading far outside it
    w = Watch("d")
    ts, value = 0.0, 21.0
    for i in range(3000):
        prev = value  # the nowcast: persistence, as served on such a device
        if i % 50 == 0:
            value = round(value + (0.1 if (i // 50) % 2 else -0.1), 1)
        verdict = w.observe(ts, value, prev, (-0.002, 0.002))
        assert verdict.learn and not verdict.events, (i, value, verdict)
        ts += 5.0
    out = [w.observe(ts, 29.0, value, (-0.002, 0.002)), w.observe(ts + 5, value, value, BAND)]
    assert kinds(out) == [("spike", False)]  # a real spike still is one


def test_the_reading_after_a_surprise_or_a_silence_is_not_judged_a_spike():
    w = Watch("d")
    ts = calm(w, 0.0, 500)
    # a dip within the threshold: the nowcast made from it is no reference for the next reading
    dip = w.observe(ts, 19.9, 21.0, BAND)
    back = w.observe(ts + 5, 21.0, 19.9, BAND)  # far from the nowcast made from the dip
    after = w.observe(ts + 10, 21.0, 21.0, BAND)
    assert not (dip.events or back.events or after.events) and back.learn
    # the first reading after a silence is judged against a nowcast made before it
    first = w.observe(ts + 2000, 25.0, 21.0, BAND)
    assert kinds([first]) == [("silent", False)] and first.learn


def test_a_suspect_that_the_next_readings_join_is_a_level_shift_whatever_the_models_learned():
    # the models learned the suspect (their nowcast follows it): the next readings are judged
    # against the level the suspect left, so a jump that stays is a shift, not a spike
    w = Watch("d")
    ts = calm(w, 0.0, 500)
    out = [w.observe(ts, 26.0, 21.0, BAND)] + [
        w.observe(ts + 5 * i, 26.0, 26.0, BAND) for i in range(1, 4)
    ]
    assert kinds(out) == [("level_shift", False)] and [v.learn for v in out] == [
        False, False, True, True]  # fmt: skip


def daily(start: float, days: float, step: float = 5.0, seed: int = 5):
    """(ts, value) of a device with a daily cycle (±0.5 °C), day-to-day offsets (interpolated)
    and an AR noise, in 0.1 °C steps, every ``step`` s or so."""
    rng = random.Random(seed)
    ts, noise = start, 0.0
    offset = [rng.gauss(0.0, 0.3) for _ in range(int(days) + 2)]
    while ts < start + days * 86400.0:
        noise = 0.99 * noise + rng.gauss(0.0, 0.03)
        day = (ts - start) / 86400.0
        o = offset[int(day)] + (day % 1.0) * (offset[int(day) + 1] - offset[int(day)])
        yield ts, 22.0 + 0.5 * math.sin(2 * math.pi * day) + o + noise
        ts += step * (0.5 + rng.random())


def test_a_slow_drift_is_caught_by_the_control_chart_while_it_lasts():
    w, prev = Watch("d"), None
    drift_start, raised = 3 * 86400.0, []
    for ts, value in daily(0.0, 3.0 + 4 / 24):
        # from day 3: 4 °C over 4 hours, 0.0014 °C a reading: no jump, nothing outside the band
        value = round(value + max(ts - drift_start, 0.0) * 4.0 / (4 * 3600.0), 1)
        v = w.observe(ts, value, value if prev is None else prev, (-0.15, 0.15))
        assert ts >= drift_start or not v.events, (ts, v)  # the days before: calm
        raised += [(ts, a) for a in v.events]
        prev = value
    assert [a.kind for _, a in raised] == ["level_shift"]
    at, shift = raised[0]
    assert at < drift_start + 3 * 3600.0 and shift.end_ts is None and shift.start_ts < at


def test_a_week_of_a_daily_cycle_raises_no_departure():
    w, prev = Watch("d"), None
    for ts, value in daily(0.0, 7.0, step=30.0, seed=6):
        value = round(value, 1)
        v = w.observe(ts, value, value if prev is None else prev, (-0.15, 0.15))
        assert not v.events, (ts, value, v)
        prev = value


def test_the_watch_stays_small_when_pickled():
    import pickle

    w = Watch("b8:27:eb:bf:9d:51")
    ts = calm(w, 0.0, 3000)
    for i in range(100):
        w.observe(ts + 5 * i, 21.0, 21.0, BAND, {"co": 0.005, "lpg": 0.007, "smoke": 0.02})
    assert len(pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL)) <= 1024

"""The synthetic week has the documented properties of the three real devices and its faults."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from telemetry.csvfile import read_csv, write_csv
from telemetry.generate import DAY, START_TS, Faults, generate
from telemetry.reading import Reading, decode_payload, encode, is_glitch

VARIABLE, WARM, COOL = "1c:bf:ce:15:ec:4d", "b8:27:eb:bf:9d:51", "00:0f:00:70:91:0a"
DAYS = 7
FAULTS = Faults()


@pytest.fixture(scope="module")
def week() -> list[Reading]:
    return list(generate(days=DAYS, seed=11))


@pytest.fixture(scope="module")
def by_device(week: list[Reading]) -> dict[str, list[Reading]]:
    out: dict[str, list[Reading]] = defaultdict(list)
    for r in week:
        out[r.device].append(r)
    return out


def clean(rs: list[Reading]) -> tuple[np.ndarray, np.ndarray]:
    ok = [r for r in rs if not is_glitch(r)]
    return np.array([r.temp for r in ok]), np.array([r.humidity for r in ok])


def test_week_spans_seven_days_from_the_start(week: list[Reading]) -> None:
    ts = np.array([r.ts for r in week])
    assert START_TS <= ts.min() < START_TS + 10
    assert START_TS + DAYS * DAY - 60 < ts.max() < START_TS + DAYS * DAY
    assert 300_000 < len(week) < 420_000  # ~0.59 readings/s for the three devices


def test_temperature_means_are_ordered_as_the_real_devices(by_device) -> None:
    means = {d: clean(rs)[0].mean() for d, rs in by_device.items()}
    assert means[VARIABLE] > means[WARM] > means[COOL]
    assert means[VARIABLE] == pytest.approx(26.03, abs=0.8)
    assert means[WARM] == pytest.approx(22.28, abs=0.4)
    assert means[COOL] == pytest.approx(19.36, abs=0.4)


def test_variable_device_has_the_largest_spread(by_device) -> None:
    stds = {d: clean(rs)[0].std() for d, rs in by_device.items()}
    assert stds[VARIABLE] > 2 * max(stds[WARM], stds[COOL])
    assert stds[VARIABLE] == pytest.approx(2.03, rel=0.3)
    assert stds[WARM] == pytest.approx(0.48, rel=0.35)
    assert stds[COOL] == pytest.approx(0.64, rel=0.35)


def test_humidity_levels_and_correlation_signs(by_device) -> None:
    expected = {WARM: (50.81, -0.37), COOL: (75.44, 0.29), VARIABLE: (61.91, -0.40)}
    for device, (mean, corr) in expected.items():
        temp, hum = clean(by_device[device])
        assert hum.mean() == pytest.approx(mean, abs=2.5), device
        r = np.corrcoef(temp, hum)[0, 1]
        assert np.sign(r) == np.sign(corr) and abs(r - corr) < 0.15, (device, r)


def test_light_motion_and_intervals(by_device) -> None:
    light = {d: np.mean([r.light for r in rs]) for d, rs in by_device.items()}
    motion = {d: np.mean([r.motion for r in rs]) for d, rs in by_device.items()}
    assert light[VARIABLE] > 0.98
    assert 0.003 < light[WARM] < 0.06 and 0.005 < light[COOL] < 0.08
    assert motion[VARIABLE] > motion[WARM] > motion[COOL]
    assert 0.002 < motion[VARIABLE] < 0.006
    for device, mean_interval in ((WARM, 3.7), (COOL, 6.2), (VARIABLE, 6.5)):
        ts = np.sort([r.ts for r in by_device[device]])
        steps = np.diff(ts)
        normal = steps[steps < 60]
        assert normal.mean() == pytest.approx(mean_interval, rel=0.05)
        assert normal.std() > 0.3 * mean_interval  # irregular, not a fixed period


def test_temperatures_come_in_steps_of_a_tenth(week: list[Reading]) -> None:
    tenths = np.array([r.temp * 10 for r in week])
    assert np.abs(tenths - np.round(tenths)).max() < 1e-6
    assert all(repr(r.temp) == repr(round(r.temp, 1)) for r in week[:5000])


def test_gases_correlate_with_each_other(by_device) -> None:
    for device, rs in by_device.items():
        co = np.log([r.co for r in rs])
        assert np.corrcoef(co, np.log([r.lpg for r in rs]))[0, 1] > 0.95, device
        assert np.corrcoef(co, np.log([r.smoke for r in rs]))[0, 1] > 0.95, device


def fault_counts(readings: list[Reading]) -> dict[str, int]:
    """Duplicates, out-of-order arrivals, gaps, stuck episodes and glitches, as a consumer sees them."""
    counts = dict.fromkeys(("duplicates", "out_of_order", "gaps", "stuck", "glitches"), 0)
    last: dict[str, Reading] = {}
    newest: dict[str, float] = {}
    per_device: dict[str, list[Reading]] = defaultdict(list)
    for r in readings:
        if last.get(r.device) == r:
            counts["duplicates"] += 1
        elif r.ts < newest.get(r.device, -1.0):
            counts["out_of_order"] += 1
        last[r.device] = r
        newest[r.device] = max(newest.get(r.device, -1.0), r.ts)
        per_device[r.device].append(r)
        counts["glitches"] += is_glitch(r)
    for rs in per_device.values():
        # in event order, each reading once (duplicates share their ts)
        ts, first = np.unique(np.array([r.ts for r in rs]), return_index=True)
        counts["gaps"] += int((np.diff(ts) > 120).sum())
        # stuck: a run of identical (temp, humidity) lasting 4 minutes or more
        th = np.array([(r.temp, r.humidity) for r in rs])[first]
        change = np.flatnonzero((np.diff(th, axis=0) != 0).any(axis=1)) + 1
        starts = np.concatenate(([0], change))
        ends = np.concatenate((change, [len(ts)])) - 1
        long_runs = (ts[ends] - ts[starts] >= 240) & (th[starts, 0] != 0.0)
        counts["stuck"] += int(long_runs.sum())
    return counts


def test_faults_occur_at_their_configured_rates(week: list[Reading], by_device) -> None:
    n = len(week)
    counts = fault_counts(week)
    assert counts["duplicates"] / n == pytest.approx(FAULTS.duplicate_rate, rel=0.2)
    assert counts["out_of_order"] / n == pytest.approx(FAULTS.out_of_order_rate, rel=0.25)
    expected_gaps = FAULTS.gaps_per_day * DAYS * 3
    assert 0.5 * expected_gaps <= counts["gaps"] <= 1.6 * expected_gaps
    expected_stuck = FAULTS.stuck_per_day * DAYS * 3
    assert 0.3 * expected_stuck <= counts["stuck"] <= 2.0 * expected_stuck
    assert 1 <= counts["glitches"] <= 30
    glitch = next(r for r in week if is_glitch(r))
    assert glitch.temp == 0.0 and 0.5 < glitch.humidity < 2.0


def test_rates_follow_the_configuration_and_none_means_clean() -> None:
    heavy = Faults(duplicate_rate=0.02, out_of_order_rate=0.01, gaps_per_day=40.0)
    rs = list(generate(days=0.5, seed=5, faults=heavy))
    counts = fault_counts(rs)
    assert counts["duplicates"] / len(rs) == pytest.approx(0.02, rel=0.15)
    assert counts["out_of_order"] / len(rs) == pytest.approx(0.01, rel=0.2)
    assert 30 <= counts["gaps"] <= 90  # 40 per device-day: 60 expected
    clean_counts = fault_counts(list(generate(days=0.5, seed=5, faults=Faults.none())))
    assert clean_counts == dict.fromkeys(clean_counts, 0)


def test_every_reading_is_a_valid_payload(week: list[Reading]) -> None:
    for r in week[::97]:
        assert decode_payload(encode(r), f"iot/{r.device}/telemetry") == r


def test_same_seed_gives_a_byte_identical_file_and_another_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_csv(a, generate(days=0.25, seed=3))
    write_csv(b, generate(days=0.25, seed=3))
    write_csv(c, generate(days=0.25, seed=4))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert list(read_csv(a)) == list(generate(days=0.25, seed=3))


def test_more_devices_come_from_the_profiles_with_jitter() -> None:
    rs = list(generate(days=0.02, seed=2, devices=60))
    devices = {r.device for r in rs}
    assert len(devices) == 60
    assert {VARIABLE, WARM, COOL} <= devices
    mac = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
    assert all(mac.fullmatch(d) for d in devices)
    means = defaultdict(list)
    for r in rs:
        means[r.device].append(r.temp)
    spread = np.std([np.mean(v) for v in means.values()])
    assert spread > 1.0  # devices differ (three profiles, jittered), not 60 copies
    assert len({round(float(np.mean(v)), 2) for v in means.values()}) > 50
    # deterministic fleet too
    assert [r.device for r in rs[:500]] == [
        r.device for r in list(generate(days=0.02, seed=2, devices=60))[:500]
    ]


def test_diurnal_cycle_and_day_to_day_drift(by_device) -> None:
    from telemetry.generate import PROFILES

    for profile in PROFILES:
        rs = [r for r in by_device[profile.device] if not is_glitch(r)]
        ts = np.array([r.ts for r in rs])
        temp = np.array([r.temp for r in rs])
        hour = ((ts - START_TS) % DAY) // 3600
        hourly = np.array([temp[hour == h].mean() for h in range(24)])
        warmest, coolest = int(np.argmax(hourly)), int(np.argmin(hourly))
        # the afternoon peak (within 2 h of the profile's) and the night trough, 12 h apart
        assert min(abs(warmest - profile.peak_hour), 24 - abs(warmest - profile.peak_hour)) <= 2
        assert min(abs(warmest - coolest), 24 - abs(warmest - coolest)) >= 9
        assert hourly.max() - hourly.min() > profile.temp_amplitude  # swing ~2x amplitude
        day = (ts - START_TS) // DAY
        daily = np.array([temp[day == d].mean() for d in range(DAYS)])
        assert daily.std() > 0.2 * profile.temp_drift_sd  # days differ: drift, not a fixed cycle

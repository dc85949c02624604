"""The synthetic week has the documented properties of the three real devices and its faults;
devices may have a subset of the sensors, and a sensor may die midway."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from telemetry.csvfile import read_csv, write_csv
from telemetry.generate import (
    DAY,
    PROFILES,
    SENSORS,
    START_TS,
    Faults,
    expected_rows,
    generate,
    profiles_for,
)
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


# --- devices with a subset of the sensors, and sensors that die ------------------------------

TEMP_HUMIDITY = ("humidity", "temp")
TEMP_ONLY = ("temp",)


def test_default_output_is_byte_identical_to_before_sensor_subsets() -> None:
    # The docs' figures come from generated data: the default arguments must keep making the
    # very same readings.  Digest of this file as written by 1d00b86 (before subsets existed).
    out = io.StringIO()
    faults = Faults(glitch_rate=0.01, duplicate_rate=0.01, out_of_order_rate=0.01,
                    stuck_per_day=20.0)  # fmt: skip
    assert write_csv(out, generate(days=0.1, seed=3, devices=5, faults=faults)) == 8576
    assert hashlib.sha256(out.getvalue().encode()).hexdigest() == (
        "c9e14398e8ea70d8d99de7039db1cd7b240ba03840b1b131f80d9df7bed93e4a"
    )


def masked(r: Reading, sensors: tuple[str, ...]) -> Reading:
    return dataclasses.replace(r, **{k: None for k in SENSORS if k not in sensors})


def test_subset_devices_report_their_full_twins_values_with_the_other_fields_absent() -> None:
    sets = [SENSORS, TEMP_HUMIDITY, TEMP_ONLY]
    clean = Faults(glitch_rate=0.0)
    full = list(generate(days=0.5, seed=4, devices=6, faults=clean))
    mixed = list(generate(days=0.5, seed=4, devices=6, faults=clean, sensors=sets))
    assert len(mixed) == len(full)
    index = {p.device: k for k, p in enumerate(profiles_for(6, seed=4))}
    kinds: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for m, f in zip(mixed, full, strict=True):
        sensors = sets[index[f.device] % 3]
        assert m == masked(f, sensors)  # same arrival order, same values, fields left out
        assert m.sensors() == sensors and m.notes == ()
        kinds[sensors].add(m.device)
    assert {k: len(v) for k, v in kinds.items()} == {SENSORS: 2, TEMP_HUMIDITY: 2, TEMP_ONLY: 2}
    for r in mixed[::53]:
        assert decode_payload(encode(r), f"iot/{r.device}/telemetry") == r  # a valid payload


def test_subset_devices_round_trip_through_a_csv_file_with_empty_cells(tmp_path: Path) -> None:
    rs = list(generate(days=0.05, seed=6, sensors=[TEMP_HUMIDITY, TEMP_ONLY, SENSORS]))
    path = tmp_path / "mixed.csv"
    write_csv(path, rs)
    lines = path.read_text().splitlines()
    temp_only = next(line for line in lines if line.startswith('"') and PROFILES[1].device in line)
    assert temp_only.split(",")[2:8] == ['""'] * 6
    assert list(read_csv(path, on_bad_row=pytest.fail)) == rs


def test_glitches_need_temperature_and_humidity_together() -> None:
    faults = Faults(glitch_rate=0.05)
    full = list(generate(days=0.05, seed=8, faults=faults))
    only = list(generate(days=0.05, seed=8, faults=faults, sensors=[TEMP_ONLY]))
    glitched = [k for k, r in enumerate(full) if is_glitch(r)]
    assert len(glitched) > 20
    assert all(only[k].temp != 0.0 for k in glitched)  # the real temperature, not 0.0
    assert sum(r.temp == 0.0 for r in only) == 0
    fine = [k for k, r in enumerate(full) if not is_glitch(r)]
    assert all(only[k] == masked(full[k], TEMP_ONLY) for k in fine)


def test_a_sensor_that_dies_midway_is_absent_from_then_on() -> None:
    died_at = START_TS + DAY / 2
    full = list(generate(days=1, seed=5))
    rs = list(generate(days=1, seed=5, dies=[(1, "humidity", DAY / 2)]))
    cool = PROFILES[1].device
    assert len(rs) == len(full)
    before = [r for r in rs if r.device == cool and r.ts < died_at]
    after = [r for r in rs if r.device == cool and r.ts >= died_at]
    assert len(before) > 5000 and len(after) > 5000
    assert all(r.humidity is not None and len(r.sensors()) == 7 for r in before)
    assert all(r.humidity is None and r.sensors() == tuple(s for s in SENSORS if s != "humidity")
               for r in after)  # fmt: skip
    for m, f in zip(rs, full, strict=True):  # everything else as before
        assert m == (masked(f, tuple(s for s in SENSORS if s != "humidity"))
                     if f.device == cool and f.ts >= died_at else f)  # fmt: skip


def test_a_device_left_without_a_sensor_falls_silent() -> None:
    rs = list(generate(days=0.5, seed=2, sensors=[TEMP_HUMIDITY],
                       dies=[(0, "humidity", 3600.0), (0, "temp", 3 * 3600.0)]))  # fmt: skip
    warm = [r for r in rs if r.device == PROFILES[0].device]
    assert max(r.ts for r in warm) < START_TS + 3 * 3600.0
    assert {r.sensors() for r in warm} == {TEMP_HUMIDITY, TEMP_ONLY}
    others = {r.device for r in rs} - {PROFILES[0].device}
    assert len(others) == 2 and max(r.ts for r in rs) > START_TS + 0.49 * DAY


def test_explicit_profiles_replace_the_fleet() -> None:
    th = dataclasses.replace(PROFILES[2], device="dht22-1", sensors=TEMP_HUMIDITY)
    ds = dataclasses.replace(PROFILES[0], device="ds18b20-1", sensors=TEMP_ONLY,
                             dies=(("temp", DAY / 4),))  # fmt: skip
    rs = list(generate(days=0.5, seed=1, profiles=[th, ds]))
    assert {r.device for r in rs} == {"dht22-1", "ds18b20-1"}
    assert max(r.ts for r in rs if r.device == "ds18b20-1") < START_TS + DAY / 4
    assert {r.sensors() for r in rs if r.device == "dht22-1"} == {TEMP_HUMIDITY}
    assert expected_rows(0.5, 3, 1) > 0  # the progress estimate is of the default fleet


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"sensors": [("temp", "pressure")]}, "sensors must be one or more of"),
        ({"sensors": [()]}, "got none"),
        ({"dies": [(3, "temp", 10.0)]}, "no device 3 among 3"),
        ({"dies": [(0, "tmp", 10.0)]}, "sensors must be one or more of"),
        ({"dies": [(0, "temp", -1.0)]}, "dies at 0 s after the start or later"),
        ({"profiles": []}, "at least one device"),
    ],
)
def test_sensor_arguments_are_checked(kwargs: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        next(iter(generate(days=0.01, **kwargs)))


def test_a_humidity_only_device_has_no_glitches_either() -> None:
    faults = Faults(glitch_rate=0.05)
    full = list(generate(days=0.05, seed=8, faults=faults))
    only = list(generate(days=0.05, seed=8, faults=faults, sensors=[("humidity",)]))
    glitched = [k for k, r in enumerate(full) if is_glitch(r)]
    assert len(glitched) > 20 and all(only[k].humidity > 5.0 for k in glitched)

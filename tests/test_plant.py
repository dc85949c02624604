"""Planted faults: what the anomaly detectors are measured against (telemetry.plant), and the
scoring of events against their windows (online_models.report.anomalies)."""

from __future__ import annotations

import json
import statistics

from online_models.anomaly import Anomaly
from online_models.report.anomalies import load_faults, score_faults, score_windows
from telemetry.generate import START_TS, Faults, generate
from telemetry.plant import DAY, Sizes, plant, windows

DAYS, SEED = 2.0, 3
VARIABLE = "1c:bf:ce:15:ec:4d"  # the device whose temperature swings 2 °C a day


def test_drifts_and_leaks_come_after_the_first_day_and_a_drift_outgrows_the_devices_spread():
    clean_readings = generate(days=DAYS, seed=SEED, faults=Faults.none())
    clean = {(r.device, r.ts): r.temp for r in clean_readings}
    readings, truth = plant(generate(days=DAYS, seed=SEED, faults=Faults.none()), seed=SEED,
                            days=DAYS)  # fmt: skip
    got = {(r.device, r.ts): r.temp for r in readings}
    for p in truth:
        assert p.start >= START_TS + (DAY if p.kind in ("drift", "gas_leak") else 3600.0), p
    drift = min(
        (p for p in truth if p.kind == "drift" and p.device == VARIABLE), key=lambda p: p.start
    )
    before = [t for (d, ts), t in clean.items() if d == VARIABLE and ts < drift.start]
    sd = statistics.stdev(before)
    assert Sizes().drift_sds * sd > Sizes().drift_c  # this device's spread sets the size
    last = max(ts for d, ts in got if d == VARIABLE and ts <= drift.end)
    assert got[(VARIABLE, last)] - clean[(VARIABLE, last)] > 0.95 * Sizes().drift_sds * sd


def test_the_windows_hold_each_fault_and_the_minute_after_it(tmp_path):
    _, truth = plant(generate(days=0.5, seed=SEED, faults=Faults.none()), seed=SEED, days=0.5)
    path = tmp_path / "w.json"
    windows(truth, path)
    body = json.loads(path.read_text())
    for p in truth:
        assert [p.start, p.end + 60.0] in body["devices"][p.device]
    assert sorted(load_faults(path)) == sorted((p.device, p.kind, p.start, p.end) for p in truth)


def test_an_event_that_began_just_before_its_window_catches_it_and_is_not_false():
    # a stuck sensor's event begins where the run of equal values began: before the fault
    stuck = Anomaly("d", "stuck", 95.0, 400.0, 21.0, 21.0, 21.0, 1.2)
    ongoing = Anomaly("d", "level_shift", 1000.0, None, 9.0, 1.0, 2.0, 1.1)
    wins = {"d": [(100.0, 300.0), (2000.0, 3000.0)]}
    fig = score_windows([stuck, ongoing], wins)["d"]
    assert (fig["windows_caught"], fig["false_events"], fig["mean_delay_s"]) == (1, 1, 0.0)
    faults = score_faults([stuck], [("d", "stuck", 200.0, 300.0), ("d", "stuck", 500.0, 600.0)])
    assert faults["stuck"]["caught"] == 1 and faults["stuck"]["planted"] == 2

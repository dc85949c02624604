"""The fleet's figures and events, on the bare hot loop (stream.core.StreamCore with the real
models; no network): series that do not grow with devices, the watch list, the worst-k
gauges as devices change rank, quiet devices and their events."""

from __future__ import annotations

import dataclasses
import itertools
import time

import orjson
import pytest
from prometheus_client import REGISTRY

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from stream.core import StreamCore
from stream.fleet import QUIET_UNKNOWN
from stream.state import ShardState
from telemetry.generate import generate
from telemetry.reading import Reading, encode

TASK = TaskConfig(horizons=(0, 60))
MODELS = "persistence,rolling_mean,linear"


def _feed(core: StreamCore, state: ShardState, readings) -> None:
    for i, r in enumerate(readings, 1):
        core.handle(state, str(i), encode(r))


def _device_labels() -> set[str]:
    """Every device named by any iotcast_* series of the process's registry."""
    return {
        s.labels["device"]
        for metric in REGISTRY.collect()
        if metric.name.startswith("iotcast_")
        for s in metric.samples
        if "device" in s.labels
    }


def test_only_watched_and_worst_devices_are_named_and_the_fleet_histogram_counts_every_score():
    readings = sorted(generate(days=0.02, seed=11, devices=12), key=lambda r: r.ts)
    devices = sorted({r.device for r in readings})
    watched = devices[0]
    core = StreamCore(load_catalog(), TASK, models=MODELS, watch=frozenset({watched}), worst_k=2)
    state = ShardState("shardId-fleet-1", epoch=1)
    before = {
        (mdl, h): REGISTRY.get_sample_value(
            "iotcast_error_celsius_count", {"model": mdl, "horizon": h}
        )
        or 0.0
        for mdl in ("served", "persistence")
        for h in ("0", "60")
    }
    _feed(core, state, readings)
    core.sweep([state])
    named = _device_labels()
    worst = {
        s.labels["device"]
        for metric in REGISTRY.collect()
        if metric.name == "iotcast_worst_device_error_ratio"
        for s in metric.samples
    }
    assert len(worst) <= 2 * len(TASK.horizons)
    mine = named & set(devices)  # the registry is the process's: other tests name theirs
    assert watched in mine and mine - {watched} <= worst
    # Every score of every device is in the fleet's histogram: n of the models' own figures.
    for (model, h), was in before.items():
        n = sum(slot.models.stats(model, int(h)).n for slot in state.devices.values())
        got = REGISTRY.get_sample_value(
            "iotcast_error_celsius_count", {"model": model, "horizon": h}
        )
        assert got - was == n and n > 0, (model, h)
    assert REGISTRY.get_sample_value("iotcast_shard_devices", {"shard": state.shard_id}) == len(
        devices
    )
    champions = sum(
        REGISTRY.get_sample_value("iotcast_champions", {"model": mdl, "horizon": "60"}) or 0
        for mdl in MODELS.split(",")
    )
    assert champions == len(devices)


def test_the_worst_devices_rotate_as_their_rank_changes():
    readings = sorted(generate(days=0.02, seed=12, devices=6), key=lambda r: r.ts)
    core = StreamCore(load_catalog(), TASK, models=MODELS, worst_k=1)
    state = ShardState("shardId-fleet-2", epoch=1)
    _feed(core, state, readings)
    core.sweep([state])

    def worst_at_60() -> str:
        (device,) = [
            s.labels["device"]
            for metric in REGISTRY.collect()
            if metric.name == "iotcast_worst_device_error_ratio"
            for s in metric.samples
            if s.labels["horizon"] == "60"
        ]
        return device

    first = worst_at_60()
    # Make another device's served forecast much worse than its persistence: it takes rank 1.
    other = next(d for d in sorted(state.devices) if d != first)
    hz = state.devices[other].models.horizons[60]
    for _ in range(3000):
        hz.served.update(30.0, 0.0)
    core.sweep([state])
    assert worst_at_60() == other


def test_a_silent_device_goes_quiet_once_with_an_event_and_comes_back():
    readings = list(itertools.islice(generate(days=0.02, seed=13, devices=2), 200))
    core = StreamCore(load_catalog(), TASK, models=MODELS)
    state = ShardState("shardId-fleet-3", epoch=1)
    _feed(core, state, readings)
    assert {orjson.loads(e)["event"] for e in state.events} == {"first_reading"}
    state.events.clear()
    device = sorted(state.devices)[0]
    act = core.fleet.activities[device]
    now = act.received + max(act.quiet_after(), QUIET_UNKNOWN) + 1
    core.fleet.sweep([state], now=now)
    core.fleet.sweep([state], now=now + 10)  # still quiet: no second event
    quiet = [orjson.loads(e) for e in state.events]
    assert {e["device"] for e in quiet} == set(state.devices)  # both stopped sending
    assert all(e["event"] == "quiet" and e["ts"] is None for e in quiet)
    assert len(quiet) == len(state.devices)
    assert REGISTRY.get_sample_value("iotcast_devices_quiet") == len(state.devices)
    last = {r.device: r for r in readings}  # each device's newest reading, an hour later
    back = [dataclasses.replace(r, ts=r.ts + 3600) for r in last.values()]
    for i, r in enumerate(back, len(readings) + 1):
        core.handle(state, str(i), encode(r))
    assert not any(core.fleet.activities[d].quiet for d in state.devices)
    core.fleet.sweep([state], now=time.time())
    assert REGISTRY.get_sample_value("iotcast_devices_quiet") == 0


@pytest.mark.parametrize("count", [51])
def test_a_watch_list_above_the_maximum_is_refused_with_the_reason(count):
    from stream.watch import parse_watch

    with pytest.raises(ValueError, match="at most 50"):
        parse_watch([f"d{i}" for i in range(count)])


def test_a_watched_devices_figures_are_its_models_own_when_scraped():
    """The watched device's MAE and champion series are read from its models at scrape time:
    an operator's promotion shows without any call into the core, and the figures are
    exactly DeviceModels.stats() and champion()."""
    readings = sorted(generate(days=0.02, seed=14, devices=2), key=lambda r: r.ts)
    watched = sorted({r.device for r in readings})[0]
    core = StreamCore(load_catalog(), TASK, models=MODELS, watch=frozenset({watched}))
    state = ShardState("shardId-fleet-4", epoch=1)
    _feed(core, state, readings)
    models = state.devices[watched].models

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"device": watched, **labels})

    for h in TASK.horizons:
        for name in (*MODELS.split(","), "served"):
            stats = models.stats(name, h)
            got = sample("iotcast_mae_celsius", model=name, horizon=str(h))
            assert got == stats.mae and got is not None, (name, h)
            assert sample("iotcast_rolling_rmse_celsius", model=name, horizon=str(h)) == (
                stats.rolling_rmse
            )
    other = next(n for n in MODELS.split(",") if n != models.champion(0))
    models.set_champion(other, "operator says so", 0)
    assert sample("iotcast_champion_info", model=other) == 1.0
    assert sum(sample("iotcast_champion_info", model=n) or 0 for n in MODELS.split(",")) == 1.0
    assert sample("iotcast_last_reading_timestamp_seconds") == models.last_ts


def test_the_fleets_interval_coverage_is_the_devices_bands_weighted_by_their_scores():
    readings = sorted(generate(days=0.05, seed=13, devices=6), key=lambda r: r.ts)
    core = StreamCore(load_catalog(), TASK, models=MODELS)
    state = ShardState("shardId-fleet-bands", epoch=1)
    _feed(core, state, readings)
    core.sweep([state])
    for h in TASK.horizons:
        for level in TASK.interval_levels:
            bands = [slot.models.interval(h) for slot in state.devices.values()]
            n = sum(b.scored for b in bands)
            want = sum(b.scored * (b.coverage(level) or 0.0) for b in bands) / n
            labels = {"horizon": str(h), "level": str(level)}
            got = REGISTRY.get_sample_value("iotcast_interval_coverage_ratio", labels)
            assert got == pytest.approx(want, abs=1e-12)
            assert abs(got - level) < 0.1, (h, level, got)  # a short run: near its level
            width = REGISTRY.get_sample_value("iotcast_interval_width_celsius", labels)
            assert 0.0 < width < 5.0


def _anomalies(kind: str) -> tuple[float, float]:
    """The fleet's count of ``kind`` anomalies found, and of devices with one going on."""
    counted = REGISTRY.get_sample_value("iotcast_anomaly_events_total", {"kind": kind}) or 0.0
    ongoing = REGISTRY.get_sample_value("iotcast_anomalies_ongoing", {"kind": kind})
    return counted, ongoing if ongoing is not None else float("nan")


def test_the_sweep_finds_a_silent_device_by_its_shards_event_time_once():
    """Two devices every 5 s, 2020's readings (a replay: the wall clock is years ahead, and
    finds nobody silent); one stops. Once the other has moved the shard's event time on by
    the watch's limit, the sweep reports it silent, once; its next reading ends it."""
    t0 = 1_594_512_000.0

    def reading(device: str, i: int) -> Reading:
        temp = 22.0 + 0.1 * (i % 3)
        return Reading(t0 + 5 * i, device, 0.005, 51.0, False, 0.007, False, 0.02, temp)

    core = StreamCore(load_catalog(), TASK, models=MODELS)
    state = ShardState("shardId-fleet-silent", epoch=1)
    both = [reading(d, i) for i in range(60) for d in ("a1", "b2")]
    _feed(core, state, both)
    counted, _ = _anomalies("silent")
    state.events.clear()
    core.sweep([state])
    assert not state.events and _anomalies("silent") == (counted, 0)
    alone = [reading("a1", i) for i in range(60, 100)]  # b2 sends nothing for 200 s
    for seq, r in enumerate(alone, len(both) + 1):
        core.handle(state, str(seq), encode(r))
        core.sweep([state])
    silent = [orjson.loads(e) for e in state.events if orjson.loads(e)["event"] == "silent"]
    assert [(e["device"], e["figures"]["phase"]) for e in silent] == [("b2", "start")]
    (start,) = silent
    assert start["figures"]["start_ts"] == t0 + 5 * 59 and start["figures"]["end_ts"] is None
    assert start["ts"] is not None and start["ts"] <= core.clock(state.shard_id)
    assert _anomalies("silent") == (counted + 1, 1)
    state.events.clear()
    core.handle(state, str(len(both) + len(alone) + 1), encode(reading("b2", 100)))
    core.sweep([state])
    ended = [orjson.loads(e) for e in state.events if orjson.loads(e)["event"] == "silent"]
    assert [(e["device"], e["figures"]["phase"]) for e in ended] == [("b2", "end")]
    assert ended[0]["figures"]["end_ts"] == t0 + 5 * 100
    assert _anomalies("silent") == (counted + 1, 0)  # counted once, when it started

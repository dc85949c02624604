"""A flood of 100,000 distinct device ids through the processor's core (StreamCore, real models).

Three known devices, on the watch list, hold their models first; then 100,000
new ids arrive, one reading each, interleaved with the known devices'
readings.  Held devices stay at ``max_devices``; every reading of an id over
the cap is dead-lettered with reason ``device_limit`` and counted in
``iotcast_records_poison_total``; the dead-letter backlog is handed over at
each checkpoint (every ``checkpoint_every`` readings, one per record here, as the processor's
runner does, with its sweep of the fleet's gauges), so it never holds more
lines than that; the flood does not grow the processor's series (no series
names a flood id but the worst-k gauges, k per horizon); the known devices'
predictions are exactly those of a run without the flood.  RSS and timing
figures: ``bench/flood.py``.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence

import orjson
import pytest
from prometheus_client import REGISTRY

from monitoring import metrics as m
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from stream.core import StreamCore
from stream.records import OutputRecord
from stream.state import ShardState
from telemetry.generate import Faults, generate
from telemetry.reading import Reading, encode

FLOOD = 100_000
MAX_DEVICES = 100
CHECKPOINT_EVERY = 10_000
SHARD = "shardId-flood-test"
WORST_K = 2


class Collector:
    """Keeps the prediction records the core emits (the output writer's role)."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []

    def add(self, records: Sequence[OutputRecord]) -> None:
        self.records += records


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def flood_id(i: int) -> str:
    return f"flood-{i:06d}"


@pytest.fixture
def our_series():
    """Leave the process-wide metrics as other tests expect them: our devices' series removed."""
    yield
    ours = ("flood-", "known-")
    for metric in vars(m).values():
        names = getattr(metric, "_labelnames", ())
        if "device" in names:
            at = names.index("device")
            for key in list(getattr(metric, "_metrics", {})):
                if key[at].startswith(ours):
                    metric.remove(*key)
    for family in m.SCORES.collect():
        for s in family.samples:
            if s.labels.get("device", "").startswith(ours):
                m.SCORES.remove(s.labels["device"], s.labels["model"], s.labels["horizon"])
    m.WATCHED.set(0)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every ``iotcast_*`` series of the process's registry: (sample name, labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for metric in REGISTRY.collect()
        if metric.name.startswith("iotcast_")
        for s in metric.samples
    }


def devices_named(found: set[tuple[str, tuple[tuple[str, str], ...]]]) -> dict[str, set[str]]:
    """device label value -> the sample names that carry it."""
    out: dict[str, set[str]] = {}
    for name, labels in found:
        device = dict(labels).get("device")
        if device is not None:
            out.setdefault(device, set()).add(name)
    return out


def test_a_flood_of_100000_device_ids_is_capped_grows_no_series_and_spares_the_known_devices(
    our_series: None,
) -> None:
    catalog, task = load_catalog(), TaskConfig()
    known = [
        dataclasses.replace(r, device=f"known-{r.device}")
        for r in generate(days=0.01, seed=3, faults=Faults.none())
    ]
    known_ids = {r.device for r in known}
    assert len(known_ids) == 3 and len(known) > 300

    # Reference: the known devices alone.
    ref_out = Collector()
    watch = frozenset(known_ids)
    ref = StreamCore(
        catalog, task, writer=ref_out, predictions="all", max_devices=MAX_DEVICES, watch=watch
    )
    ref_state = ShardState(SHARD + "-ref", epoch=1)
    for i, r in enumerate(known):
        assert ref.handle(ref_state, str(i + 1), encode(r)) == "learned"

    # The flood.
    out = Collector()
    core = StreamCore(
        catalog, task, writer=out, predictions="all", max_devices=MAX_DEVICES, watch=watch,
        worst_k=WORST_K,
    )  # fmt: skip
    state = ShardState(SHARD, epoch=1)
    poison_before = sample(
        "iotcast_records_poison_total", {"shard": SHARD, "reason": "device_limit"}
    )
    outcomes: dict[str, int] = {}
    dead = {"n": 0, "first": b"", "last": b""}  # the lines themselves would weigh ~56 MB
    backlog_max = 0
    seq = 0

    def handle(data: bytes) -> None:
        nonlocal seq, backlog_max
        seq += 1
        outcome = core.handle(state, str(seq), data)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if state.since_checkpoint >= CHECKPOINT_EVERY:  # the runner's checkpoint trigger
            backlog_max = max(backlog_max, len(state.dead_letters))
            hand_over(state.snapshot().dead_letters)
            core.sweep([state])  # the fleet's gauges: the worst-k among them

    def hand_over(lines: list[bytes]) -> None:
        if lines:
            dead["n"] += len(lines)
            dead["first"] = dead["first"] or lines[0]
            dead["last"] = lines[-1]

    k = 0
    while {r.device for r in known[:k]} != known_ids:  # the known devices come first
        handle(encode(known[k]))
        k += 1
    core.sweep([state])
    before = series()
    every = FLOOD // (len(known) - k)
    ts0 = known[0].ts
    rss_half = 0.0
    for i in range(FLOOD):
        if i % every == 0 and k < len(known):
            handle(encode(known[k]))
            k += 1
        device = flood_id(i)
        handle(encode(Reading(ts0 + i, device, 0.005, 50.0, False, 0.007, False, 0.02, 21.5)))
        if i == FLOOD // 2:
            rss_half = rss_mib()
    rss_end = rss_mib()
    for r in known[k:]:
        handle(encode(r))
    backlog_max = max(backlog_max, len(state.dead_letters))
    hand_over(state.snapshot().dead_letters)
    core.sweep([state])
    after = series()

    # Memory bounded by the cap: held devices, their models.
    overflow = FLOOD - (MAX_DEVICES - len(known_ids))
    assert core.devices_held == len(state.devices) == MAX_DEVICES
    assert sample("iotcast_devices_held", {}) == MAX_DEVICES
    assert set(state.devices) == known_ids | {flood_id(i) for i in range(MAX_DEVICES - 3)}

    # The series: no flood id has any but the worst-k gauges (k per horizon, rotating);
    # what the flood added is a handful of fleet series (the device_limit dead letters, say),
    # beside the watched devices' own, which grow as their models score at more horizons.
    named = devices_named(after)
    flood_named = {d: names for d, names in named.items() if d.startswith("flood-")}
    worst = {"iotcast_worst_device_error_ratio", "iotcast_worst_device_mae_celsius"}
    assert all(names <= worst for names in flood_named.values()), flood_named
    assert len(flood_named) <= WORST_K * len(task.horizons)
    assert known_ids <= set(named)
    added = {(n, labels) for n, labels in after - before if dict(labels).get("device") not in watch}
    assert len(added) <= 20 + 2 * WORST_K * len(task.horizons), sorted(added)
    assert ("iotcast_records_poison_total", (("reason", "device_limit"), ("shard", SHARD))) in added
    # RSS over the second half of the flood (cap long reached): a model set per id would
    # add ~100 KiB each (~5 GiB); a dead-letter backlog never handed over, ~28 MiB.
    assert rss_end - rss_half < 20, (rss_half, rss_end)

    # The overflow: counted, dead-lettered with its reason and payload, in bounded batches.
    assert outcomes == {"learned": len(known) + MAX_DEVICES - 3, "device_limit": overflow}
    poison = sample("iotcast_records_poison_total", {"shard": SHARD, "reason": "device_limit"})
    assert poison - poison_before == overflow
    assert backlog_max <= CHECKPOINT_EVERY
    assert dead["n"] == overflow
    first, last = orjson.loads(dead["first"]), orjson.loads(dead["last"])
    for line in (first, last):
        assert line["reason"] == "device_limit" and line["source"] == "processor"
        assert "--max-devices" in line["message"]
    assert orjson.loads(base64.b64decode(first["payload_b64"]))["device_id"] == flood_id(97)
    assert orjson.loads(base64.b64decode(last["payload_b64"]))["device_id"] == flood_id(FLOOD - 1)

    # The known devices kept their models: the very predictions and figures of the reference.
    def of_known(records: list[OutputRecord]) -> list[OutputRecord]:
        return [r for r in records if r.device in known_ids and r.kind == "prediction"]

    assert of_known(out.records) == of_known(ref_out.records) and ref_out.records
    for device in known_ids:
        assert state.devices[device].models.summary() == ref_state.devices[device].models.summary()

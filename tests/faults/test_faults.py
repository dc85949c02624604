"""Faults injected into the whole pipeline while it replays readings: nothing lost, nothing learned twice.

Every test runs real mosquitto, a real moto server, ``iotcast bridge`` and
``iotcast process`` as child processes, replays generated readings over MQTT
(``IOTCAST_FAULT_READINGS`` of them, see conftest.py) and injects one kind of
fault while the replay runs.  Afterwards :meth:`Pipeline.audit` balances the
books (every reading learned, or dropped as duplicate/late/glitch by the
processor's rules, or dead-lettered; manifests' sample counts equal the
readings each device had to learn) and the time the pipeline took to
recover is measured with probes (printed and written to the results; never
asserted: timing is a figure, not a test).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from iotcast.stack import start_moto
from tests.faultproxy import FaultProxy
from tests.faults.pipeline import Pipeline, StreamReader, make_readings, wait_until
from tests.processor_support import manifests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _stream_at(pipeline: Pipeline, reader: StreamReader, share: float, timeout: float) -> int:
    """Wait until the stream holds ``share`` of the readings being replayed."""
    target = int(share * len(pipeline.published))
    # Not too often: moto's GetRecords walks the whole shard on every call (O(records held)).
    return wait_until(
        lambda: (n := reader.poll()) >= target and n,
        timeout,
        f"{target} records in the stream",
        interval=1.0,
    )


def _timeout(n: int) -> float:
    return 120 + n / 100  # generous: 2 cores shared by everything


def _finish(
    pipeline: Pipeline,
    results: list[dict],
    fault: str,
    what: str,
    started: float,
    n: int,
    **extra: Any,
) -> dict[str, Any]:
    """Drain, audit, record and check the two invariants."""
    try:
        pipeline.join_replay(_timeout(n))
        contents = pipeline.wait_drained(_timeout(n))
        pipeline.wait_probes(120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipeline.logs()}") from None
    figures = pipeline.audit(contents)
    probes = figures["probes"]
    figures.update(
        fault=fault,
        what=what,
        seconds=round(time.monotonic() - started, 1),
        recovery_learned_s=max((p["learned_s"] or 0.0 for p in probes), default=None),
        recovery_committed_s=max((p["committed_s"] or 0.0 for p in probes), default=None),
        **extra,
    )
    results.append(figures)
    print(f"\n{fault}: " + ", ".join(f"{k}={v}" for k, v in figures.items() if k != "probes"))
    print(
        "  recovery per fault (s, learned/committed): "
        + ", ".join(f"{p['learned_s']:.1f}/{p['committed_s']:.1f}" for p in probes)
    )
    assert figures["lost"] == 0, figures
    assert figures["learned_twice"] == 0, figures
    return figures


def _start(pipeline: Pipeline, n: int, processors: int = 1, **kw: Any) -> tuple[list, float]:
    pipeline.create_resources()
    pipeline.start_bridge()
    for _ in range(processors):
        pipeline.start_processor(**kw)
    readings = make_readings(n)
    pipeline.wait_leased()  # steady state first: faults hit a working pipeline
    started = time.monotonic()
    pipeline.replay_in_background(readings)
    return readings, started


# --------------------------------------------------------------------- crashes
def test_bridge_sigkilled_repeatedly_loses_nothing(pipeline, fault_readings, kills, fault_results):
    n = fault_readings
    _, started = _start(pipeline, n)
    reader = StreamReader(pipeline.settings)
    for i in range(1, kills + 1):
        _stream_at(pipeline, reader, i / (kills + 2), _timeout(n))
        pipeline.kill_bridge()
        pipeline.start_bridge(wait_subscribed=False)
        pipeline.probe()
    _finish(
        pipeline,
        fault_results,
        f"bridge SIGKILL x{kills}",
        f"bridge killed and restarted {kills} times",
        started,
        n,
    )


def test_processor_sigkilled_repeatedly_learns_each_reading_once(
    pipeline, fault_readings, kills, fault_results
):
    n = fault_readings
    _, started = _start(pipeline, n, processors=2)
    reader = StreamReader(pipeline.settings)
    for i in range(1, kills + 1):
        _stream_at(pipeline, reader, i / (kills + 2), _timeout(n))
        victim = i % 2
        pipeline.kill_processor(victim)
        pipeline.start_processor(victim)
        pipeline.probe()
    _finish(
        pipeline,
        fault_results,
        f"processor SIGKILL x{kills}",
        f"one of 2 processors killed and restarted {kills} times (leases taken over)",
        started,
        n,
    )


def test_bridge_and_processors_sigkilled_together(pipeline, fault_readings, kills, fault_results):
    n = fault_readings
    _, started = _start(pipeline, n)
    reader = StreamReader(pipeline.settings)
    for i in range(1, kills + 1):
        _stream_at(pipeline, reader, i / (kills + 2), _timeout(n))
        pipeline.kill_bridge()
        pipeline.kill_processor(0)
        pipeline.start_bridge(wait_subscribed=False)
        pipeline.start_processor(0)
        pipeline.probe()
    _finish(
        pipeline,
        fault_results,
        f"bridge + processor SIGKILL x{kills}",
        f"bridge and processor killed at once and restarted {kills} times",
        started,
        n,
    )


# ------------------------------------------------------------------ restarts
def test_mosquitto_restart_loses_nothing(pipeline, mosquitto, fault_readings, fault_results):
    n = fault_readings
    _, started = _start(pipeline, n)
    reader = StreamReader(pipeline.settings)
    _stream_at(pipeline, reader, 0.4, _timeout(n))
    mosquitto.stop()  # SIGTERM: persistence on, the bridge's session and queue are saved
    mosquitto.start()
    pipeline.probe()
    _finish(
        pipeline,
        fault_results,
        "mosquitto restart",
        "broker stopped and started (persistence on) mid-replay",
        started,
        n,
    )


def test_moto_restart_forwards_what_was_queued_upstream(
    settings_mqtt, tmp_path: Path, fault_readings, shards, fault_results
):
    """moto keeps nothing across a restart: the stream, bucket and lease table are recreated.

    "Nothing lost" then means: every replayed reading was either accepted by
    the moto that was lost (recorded by the proxy in front of it) or is in the
    new stream (it was queued in mosquitto or the bridge's buffer and
    forwarded after recovery), and the processors (restarted: their store is
    gone) learn every reading of the new stream exactly once.
    """
    n = fault_readings
    moto = start_moto(tmp_path / "own-moto")
    proxy = FaultProxy(moto.url, keep_accepted=True)
    settings = settings_mqtt.replace(endpoint_url=moto.url)
    pipeline = Pipeline(settings, tmp_path, shards=shards, bridge_endpoint=proxy.url)
    try:
        _, started = _start(pipeline, n)
        reader = StreamReader(settings)
        _stream_at(pipeline, reader, 0.4, _timeout(n))
        proxy.refuse("all")  # the bridge meets 503s from here until the stack is back
        pipeline.accepted_before_loss = list(proxy.accepted)
        moto.kill()
        t_down = time.monotonic()
        moto.start(timeout=60)
        pipeline.create_resources()
        for i, proc in enumerate(pipeline.processors):
            if proc is not None:
                proc.kill()  # their checkpoints and leases went with the store
                pipeline.start_processor(i)
        proxy.restore()
        outage = time.monotonic() - t_down
        pipeline.probe()
        _finish(
            pipeline,
            fault_results,
            "moto restart",
            "moto killed and restarted empty; stream, bucket, table recreated; processors "
            "restarted",
            started,
            n,
            outage_s=round(outage, 1),
        )
    finally:
        pipeline.close()
        proxy.close()
        moto.stop()


# ------------------------------------------------------------------- outages
def _outage(
    pipeline: Pipeline,
    proxy: FaultProxy,
    service: str,
    seconds: float,
    n: int,
    reader: StreamReader,
) -> dict[str, Any]:
    _stream_at(pipeline, reader, 0.3, _timeout(n))
    wait_until(lambda: pipeline.learned_total() >= 0.15 * n, _timeout(n), "the processor at work")
    learned_before = pipeline.learned_total()
    proxy.refuse(service, seconds)
    time.sleep(seconds)
    learned_during = pipeline.learned_total() - learned_before
    pipeline.probe()
    return {
        "learned_during_outage": int(learned_during),
        "refused_requests": proxy.refused_requests[service],
    }


def test_s3_outage_keeps_learning_and_checkpoints_catch_up(
    settings_mqtt, tmp_path, moto_server, fault_readings, outage_seconds, shards, fault_results
):
    n = fault_readings
    proxy = FaultProxy(moto_server.url)
    pipeline = Pipeline(settings_mqtt, tmp_path, shards=shards, processor_endpoint=proxy.url)
    try:
        _, started = _start(pipeline, n)
        reader = StreamReader(pipeline.settings)
        figures = _outage(pipeline, proxy, "s3", outage_seconds, n, reader)
        failed = pipeline.metric("iotcast_checkpoints_total")
        result = _finish(
            pipeline,
            fault_results,
            f"S3 down {outage_seconds:g} s",
            "every S3 request of the processor refused (503)",
            started,
            n,
            checkpoints_failed=int(sum(v for k, v in failed.items() if 'outcome="failed"' in k)),
            **figures,
        )
    finally:
        pipeline.close()
        proxy.close()
    assert result["refused_requests"] > 0, "the processor made no S3 request during the outage"
    assert result["learned_during_outage"] > 0, "learning stopped while S3 was down"


def test_dynamodb_outage_keeps_leases_and_retries_checkpoints(
    settings_mqtt, tmp_path, moto_server, fault_readings, outage_seconds, shards, fault_results
):
    n = fault_readings
    proxy = FaultProxy(moto_server.url)
    pipeline = Pipeline(settings_mqtt, tmp_path, shards=shards, processor_endpoint=proxy.url)
    try:
        # A session timeout longer than the SDK's longest retry backoff (DynamoDB: 12.8 s), as
        # the default 60 s is: an owner may be stuck in that backoff right after the outage.
        # An outage shorter than a session timeout must not swap leases either (the owner's
        # next heartbeat may come outage + backoff later: 15 s was too short for a 10 s outage
        # on a loaded machine); a longer one is left to the grace after DynamoDB's silence.
        session = 15 if outage_seconds >= 15 else 2 * outage_seconds + 13
        _, started = _start(pipeline, n, processors=2, extra=("--session-timeout", f"{session:g}"))
        reader = StreamReader(pipeline.settings)
        owners = pipeline.wait_leased()
        figures = _outage(pipeline, proxy, "dynamodb", outage_seconds, n, reader)
        restored = time.time()
        # Leases held: the same owners, heartbeating again within a session timeout.
        wait_until(
            lambda: all(ts > restored for _, ts, _ in pipeline.leases().values()),
            30,
            "lease heartbeats after the outage",
        )
        owners_after = {s: ref for s, (ref, _, _) in pipeline.leases().items()}
        alive = [p.alive() for p in pipeline.processors if p]
        result = _finish(
            pipeline,
            fault_results,
            f"DynamoDB down {outage_seconds:g} s",
            "every DynamoDB request of 2 processors refused (503)",
            started,
            n,
            **figures,
        )
        # Checkpoints retried: DynamoDB's sequence numbers caught up with the manifests.
        wanted = {s: m.sequence for s, m in manifests(pipeline.settings).items()}
        wait_until(
            lambda: {s: seq for s, (_, _, seq) in pipeline.leases().items()} == wanted,
            30,
            "DynamoDB checkpoints to catch up with the S3 manifests",
        )
    finally:
        pipeline.close()
        proxy.close()
    assert owners_after == owners, (owners, owners_after)
    assert all(alive), f"a processor died: {alive}"
    assert result["refused_requests"] > 0


# ------------------------------------------------------------- slow consumer
def test_slow_consumer_lags_then_catches_up(
    pipeline, tmp_path, fault_readings, outage_seconds, fault_results
):
    n = fault_readings
    flag = tmp_path / "slow.flag"
    _, started = _start(pipeline, n, slow_flag=flag, slow_ms=20.0)
    reader = StreamReader(pipeline.settings)
    _stream_at(pipeline, reader, 0.2, _timeout(n))
    flag.touch()
    t0 = time.monotonic()
    max_lag = 0.0
    while time.monotonic() - t0 < outage_seconds:
        lag = pipeline.metric("iotcast_shard_lag_seconds")
        max_lag = max([max_lag, *lag.values()])
        time.sleep(0.5)
    behind = reader.poll() - sum(pipeline.metric("iotcast_readings_processed_total").values())
    flag.unlink()
    pipeline.probe()
    result = _finish(
        pipeline,
        fault_results,
        f"slow consumer {outage_seconds:g} s",
        "processor slowed by 20 ms per record (test hook), then back to speed",
        started,
        n,
        max_lag_s=round(max_lag, 1),
        records_behind=int(behind),
    )
    assert result["records_behind"] > 0, "the processor never fell behind"
    # The backlog must show on the lag gauge (it read 0 before the processor bounded the
    # records it fetches ahead of handling them: docs/reliability.md, defect 4).
    assert result["max_lag_s"] > 0, "iotcast_shard_lag_seconds stayed 0 while the processor lagged"


# -------------------------------------------------------------------- poison
POISON = (
    b"\x00\xff\xfe garbage \x80\x81",
    b'{"data": {"temp": "hot"}, "device_id": "b8:27:eb:bf:9d:51", "ts": 1}',
    b"{not json",
)


def test_poison_records_are_dead_lettered_without_stalling_the_shard(
    pipeline, fault_readings, fault_results
):
    n = fault_readings
    readings, started = _start(pipeline, n)
    reader = StreamReader(pipeline.settings)
    _stream_at(pipeline, reader, 0.4, _timeout(n))
    devices = sorted({r.device for r in readings})
    for i, data in enumerate(POISON):
        pipeline.put_poison(data, devices[i % len(devices)])
    pipeline.probe()
    result = _finish(
        pipeline,
        fault_results,
        "poison records",
        f"{len(POISON)} garbage records put straight into the stream",
        started,
        n,
    )
    assert result["dead_lettered"] == len(POISON), result
    assert result["poison_missing"] == 0
    assert all(p.alive() for p in pipeline.live_processors()) and pipeline.live_processors()

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

from iotcast.stack import start_kinesalite, start_moto
from tests.faultproxy import FaultProxy
from tests.faults.books import StreamReader, wait_until
from tests.faults.pipeline import Pipeline, make_readings
from tests.support import manifests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _stream_at(pipeline: Pipeline, reader: StreamReader, share: float, timeout: float) -> int:
    """Wait until the stream holds ``share`` of the readings being replayed."""
    target = int(share * len(pipeline.ledger.published))
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
        pipeline.probes.wait(120)
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


def _start(
    pipeline: Pipeline, n: int, processors: int = 1, speed: float = 0.0, **kw: Any
) -> tuple[list, float]:
    pipeline.create_resources()
    pipeline.start_bridge()
    for _ in range(processors):
        pipeline.start_processor(**kw)
    readings = make_readings(n)
    pipeline.wait_leased()  # steady state first: faults hit a working pipeline
    started = time.monotonic()
    pipeline.replay_in_background(readings, speed)
    return readings, started


def _inject(pipeline: Pipeline, reader: StreamReader, n: int, at: float, fault: Any) -> None:
    """The skeleton of every fault: once the stream holds ``at`` of the readings being
    replayed, ``fault()`` (kill and restart, stop and start, refuse, ...), then a probe."""
    _stream_at(pipeline, reader, at, _timeout(n))
    fault()
    pipeline.probe()


def _crashes(pipeline: Pipeline, n: int, kills: int, crash: Any) -> None:
    """``crash(i)`` ``kills`` times, spread over the replay (i = 1, 2, ...)."""
    reader = StreamReader(pipeline.settings)
    for i in range(1, kills + 1):
        _inject(pipeline, reader, n, i / (kills + 2), lambda i=i: crash(i))


# --------------------------------------------------------------------- crashes
def _restart_bridge(pipeline: Pipeline) -> None:
    pipeline.kill_bridge()
    pipeline.start_bridge(wait_subscribed=False)


def _restart_processor(pipeline: Pipeline, index: int) -> None:
    pipeline.kill_processor(index)
    pipeline.start_processor(index)


def _crash_test(
    pipeline: Pipeline,
    size: Any,
    results: list,
    fault: str,
    what: str,
    crash: Any,
    processors: int = 1,
) -> None:
    """The crash tests: ``crash(i)`` (kill and restart) ``size.kills`` times, then the books."""
    n = size.readings
    _, started = _start(pipeline, n, processors=processors)
    _crashes(pipeline, n, size.kills, crash)
    _finish(pipeline, results, f"{fault} x{size.kills}", what, started, n)


def test_bridge_sigkilled_repeatedly_loses_nothing(pipeline, size, fault_results):
    what = f"bridge killed and restarted {size.kills} times"
    _crash_test(
        pipeline, size, fault_results, "bridge SIGKILL", what, lambda i: _restart_bridge(pipeline)
    )


def test_processor_sigkilled_repeatedly_learns_each_reading_once(pipeline, size, fault_results):
    what = f"one of 2 processors killed and restarted {size.kills} times (leases taken over)"

    def crash(i: int) -> None:
        _restart_processor(pipeline, i % 2)

    _crash_test(pipeline, size, fault_results, "processor SIGKILL", what, crash, processors=2)


def test_bridge_and_processors_sigkilled_together(pipeline, size, fault_results):
    def both(i: int) -> None:
        pipeline.kill_bridge()
        pipeline.kill_processor(0)
        pipeline.start_bridge(wait_subscribed=False)
        pipeline.start_processor(0)

    what = f"bridge and processor killed at once and restarted {size.kills} times"
    _crash_test(pipeline, size, fault_results, "bridge + processor SIGKILL", what, both)


# ------------------------------------------------------------------ restarts
def test_mosquitto_restart_loses_nothing(pipeline, mosquitto, size, fault_results):
    n = size.readings
    _, started = _start(pipeline, n)

    def restart() -> None:
        mosquitto.stop()  # SIGTERM: persistence on, the bridge's session and queue are saved
        mosquitto.start()

    _inject(pipeline, StreamReader(pipeline.settings), n, 0.4, restart)
    _finish(
        pipeline,
        fault_results,
        "mosquitto restart",
        "broker stopped and started (persistence on) mid-replay",
        started,
        n,
    )


def test_moto_restart_forwards_what_was_queued_upstream(
    settings_mqtt, tmp_path: Path, size, fault_results
):
    """The local AWS stack (moto and kinesalite) keeps nothing across a restart: the
    stream, bucket and lease table are recreated.

    "Nothing lost" then means: every replayed reading was either accepted by
    the stream that was lost (recorded by the proxy in front of it) or is in the
    new stream (it was queued in mosquitto or the bridge's buffer and
    forwarded after recovery), and the processors (restarted: their store is
    gone) learn every reading of the new stream exactly once.
    """
    n = size.readings
    moto = start_moto(tmp_path / "own-moto")
    kinesalite = start_kinesalite(tmp_path / "own-kinesalite")
    settings = settings_mqtt.replace(endpoint_url=moto.url).with_endpoints(kinesis=kinesalite.url)
    proxy = FaultProxy.before(settings, keep_accepted=True)
    pipeline = Pipeline(settings, tmp_path, shards=size.shards, bridge_via=proxy)
    outage = {}

    def restart_empty() -> None:
        proxy.refuse("all")  # the bridge meets 503s from here until the stack is back
        pipeline.ledger.accepted_before_loss = list(proxy.accepted)
        moto.kill()
        kinesalite.kill()
        t_down = time.monotonic()
        moto.start(timeout=60)
        kinesalite.start(timeout=60)
        pipeline.create_resources()
        for i, proc in enumerate(pipeline.processors):
            if proc is not None:
                proc.kill()  # their checkpoints and leases went with the store
                pipeline.start_processor(i)
        proxy.restore()
        outage["s"] = time.monotonic() - t_down

    try:
        _, started = _start(pipeline, n)
        _inject(pipeline, StreamReader(settings), n, 0.4, restart_empty)
        _finish(
            pipeline,
            fault_results,
            "moto restart",
            "moto and kinesalite killed and restarted empty; stream, bucket, table recreated; "
            "processors restarted",
            started,
            n,
            outage_s=round(outage["s"], 1),
        )
    finally:
        pipeline.close()
        proxy.close()
        moto.stop()
        kinesalite.stop()


# ------------------------------------------------------------------- outages
def _outage(
    pipeline: Pipeline,
    proxy: FaultProxy,
    service: str,
    seconds: float,
    n: int,
    reader: StreamReader,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}

    def refuse() -> None:
        wait_until(
            lambda: pipeline.learned_total() >= 0.15 * n, _timeout(n), "the processor at work"
        )
        learned_before = pipeline.learned_total()
        proxy.refuse(service, seconds)
        time.sleep(seconds)
        figures["learned_during_outage"] = int(pipeline.learned_total() - learned_before)

    _inject(pipeline, reader, n, 0.3, refuse)
    figures["refused_requests"] = proxy.refused_requests[service]
    return figures


def test_s3_outage_keeps_learning_and_checkpoints_catch_up(
    processors_behind_proxy, size, fault_results
):
    pipeline, proxy = processors_behind_proxy
    n = size.readings
    _, started = _start(pipeline, n)
    reader = StreamReader(pipeline.settings)
    figures = _outage(pipeline, proxy, "s3", size.outage_seconds, n, reader)
    failed = pipeline.metric("iotcast_checkpoints_total")
    result = _finish(
        pipeline,
        fault_results,
        f"S3 down {size.outage_seconds:g} s",
        "every S3 request of the processor refused (503)",
        started,
        n,
        checkpoints_failed=int(sum(v for k, v in failed.items() if 'outcome="failed"' in k)),
        **figures,
    )
    assert result["refused_requests"] > 0, "the processor made no S3 request during the outage"
    assert result["learned_during_outage"] > 0, "learning stopped while S3 was down"


def test_dynamodb_outage_keeps_leases_and_retries_checkpoints(
    processors_behind_proxy, size, fault_results
):
    pipeline, proxy = processors_behind_proxy
    n = size.readings
    # A session timeout longer than the SDK's longest retry backoff (DynamoDB: 12.8 s), as
    # the default 60 s is: an owner may be stuck in that backoff right after the outage.
    # An outage shorter than a session timeout must not swap leases either (the owner's
    # next heartbeat may come outage + backoff later: 15 s was too short for a 10 s outage
    # on a loaded machine); a longer one is left to the grace after DynamoDB's silence.
    session = 15 if size.outage_seconds >= 15 else 2 * size.outage_seconds + 13
    _, started = _start(pipeline, n, processors=2, extra=("--session-timeout", f"{session:g}"))
    reader = StreamReader(pipeline.settings)
    owners = pipeline.wait_leased()
    figures = _outage(pipeline, proxy, "dynamodb", size.outage_seconds, n, reader)
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
        f"DynamoDB down {size.outage_seconds:g} s",
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
    assert owners_after == owners, (owners, owners_after)
    assert all(alive), f"a processor died: {alive}"
    assert result["refused_requests"] > 0


def test_kinesis_outage_for_the_processors_then_recovery(
    processors_all_behind_proxy, size, fault_results
):
    """Every Kinesis request of two processors refused (503) for
    ``IOTCAST_FAULT_KINESIS_OUTAGE_SECONDS`` (90 s) while the bridge keeps writing: the
    processors stay up, keep their leases (DynamoDB answers), and once Kinesis is back
    they read on from where they were: 0 lost, 0 learned twice."""
    pipeline, proxy = processors_all_behind_proxy
    n = size.readings
    seconds = size.kinesis_outage_seconds
    _, started = _start(pipeline, n, processors=2)
    reader = StreamReader(pipeline.settings)
    owners = pipeline.wait_leased()
    figures = _outage(pipeline, proxy, "kinesis", seconds, n, reader)
    owners_after = {s: ref for s, (ref, _, _) in pipeline.leases().items()}
    alive = [p.alive() for p in pipeline.processors if p]
    result = _finish(
        pipeline,
        fault_results,
        f"Kinesis down {seconds:g} s (processors)",
        "every Kinesis request of 2 processors refused (503); the bridge writes on",
        started,
        n,
        **figures,
    )
    assert all(alive), f"a processor died during the outage: {alive}"
    assert owners_after == owners, (owners, owners_after)
    assert result["refused_requests"] > 0, "the processors made no Kinesis request in the outage"
    # Retried with a backoff: async-kinesis alone lists the shards again every 0.2 s (913
    # refused requests from 2 processors in 90 s before stream.consumer bounded it).
    assert result["refused_requests"] <= 2 * seconds, (
        f"{result['refused_requests']} Kinesis requests in {seconds:g} s from 2 processors: "
        "not retried with a backoff"
    )


# ------------------------------------------------------------- slow consumer
def test_slow_consumer_lags_then_catches_up(pipeline, tmp_path, size, fault_results):
    n = size.readings
    flag = tmp_path / "slow.flag"
    # Readings keep arriving while the processor is slow (50 times their event time: the
    # 2,000 readings' 21 minutes in about 25 s), as devices publish. (A burst replayed at
    # once is lag too since the gauge counts how long the record handled waited:
    # tests/test_processor_backpressure.py.)
    _, started = _start(pipeline, n, speed=50.0, slow_flag=flag, slow_ms=20.0)
    reader = StreamReader(pipeline.settings)
    seen = {"max_lag": 0.0}

    def slow_down() -> None:
        flag.touch()
        t0 = time.monotonic()
        while time.monotonic() - t0 < size.outage_seconds:
            lag = pipeline.metric("iotcast_shard_lag_seconds")
            seen["max_lag"] = max([seen["max_lag"], *lag.values()])
            time.sleep(0.5)
        processed = sum(pipeline.metric("iotcast_readings_processed_total").values())
        seen["behind"] = reader.poll() - processed
        flag.unlink()

    _inject(pipeline, reader, n, 0.2, slow_down)
    result = _finish(
        pipeline,
        fault_results,
        f"slow consumer {size.outage_seconds:g} s",
        "processor slowed by 20 ms per record (test hook), then back to speed",
        started,
        n,
        max_lag_s=round(seen["max_lag"], 1),
        records_behind=int(seen["behind"]),
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


def test_poison_records_are_dead_lettered_without_stalling_the_shard(pipeline, size, fault_results):
    n = size.readings
    readings, started = _start(pipeline, n)
    devices = sorted({r.device for r in readings})

    def poison() -> None:
        for i, data in enumerate(POISON):
            pipeline.put_poison(data, devices[i % len(devices)])

    _inject(pipeline, StreamReader(pipeline.settings), n, 0.4, poison)
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

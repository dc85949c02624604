"""A slow processor: its backlog stays in Kinesis (bounded buffer) and the lag gauge shows it.

Before the fix the processor fetched the whole stream into its memory while
processing fell behind (async-kinesis queues one item per GetRecords batch
and fetches while its 10,000-item queue has room), every fetch reported
``MillisBehindLatest`` 0, and ``iotcast_shard_lag_seconds`` read 0 through
the fault suite's slow-consumer fault.

Both tests slow every record with the fault suite's hook
(:mod:`tests.faults.hooks`) while a flag file exists, against the session's
moto server.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from iotcast.settings import Settings
from iotcast.stack import ManagedProcess
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from stream.consumer import LeaseConsumer, RecordBatch
from stream.core import StreamCore
from stream.runner import ProcessorOptions, StreamProcessor
from telemetry.generate import generate
from tests import support
from tests.faults.hooks import slowed

pytestmark = pytest.mark.timeout(120)

HOOKS = str(Path(__file__).with_name("faults") / "hooks.py")
SHARD = "shardId-000000000000"


def _items(n: int) -> list[tuple[bytes, str]]:
    return support.items_of(generate(days=0.2, seed=11))[:n]


def _start_slowed(settings: Settings, workdir: Path, flag: Path, delay: float) -> ManagedProcess:
    """``iotcast process`` through the fault suite's hook (``delay`` s per record while ``flag``)."""
    hook = (sys.executable, HOOKS, str(flag), str(delay))
    flags = ("--predictions", "none", "--session-timeout", "10")
    return support.start_processor(settings, workdir, *flags, program=hook, timeout=90)


def test_lag_gauge_rises_while_processing_is_slowed_and_recovers(
    settings: Settings, tmp_path: Path
) -> None:
    n = 2500
    items = _items(n)
    support.create_resources(settings, 1)
    flag = tmp_path / "slow.flag"
    flag.touch()
    proc = _start_slowed(settings, tmp_path, flag, 0.004)  # ~250 records/s at most
    try:
        # Records keep arriving faster than the slowed processor handles them.
        feeder = support.feed_in_background(settings, items, pause=0.5)
        lag_while_behind = []  # sampled until the slowed processor has handled half of them
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = support.scrape(proc)
            processed = sum(
                support.metric_values(text, "iotcast_readings_processed_total").values()
            )
            lag = support.metric_values(text, "iotcast_shard_lag_seconds").get(f'shard="{SHARD}"')
            if lag is not None and 0 < processed < n:
                lag_while_behind.append(lag)
            if processed >= n // 2 and not feeder.is_alive():
                break
            time.sleep(0.25)
        feeder.join()
        assert not feeder.errors, feeder.errors
        # The backlog is seconds of the stream behind the processor: the gauge must say so.
        assert lag_while_behind and max(lag_while_behind) > 1.0, lag_while_behind
        flag.unlink()

        def caught_up() -> bool:
            text = support.scrape(proc)
            processed = sum(
                support.metric_values(text, "iotcast_readings_processed_total").values()
            )
            lag = support.metric_values(text, "iotcast_shard_lag_seconds").get(f'shard="{SHARD}"')
            return processed == n and lag is not None and lag < 0.5

        support.wait_for(caught_up, 60, "the processor to catch up and its lag gauge to fall", 0.25)
    finally:
        proc.stop()


def test_a_slow_processor_leaves_its_backlog_in_the_stream(
    settings_moto_only: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On moto's Kinesis: kinesalite answers every GetRecords with MillisBehindLatest 0, and
    # that figure is how the fetches below show the backlog waiting in the stream.
    settings = settings_moto_only
    # GetRecords asks for bound // 4 records, up to ProcessorOptions.fetch_rate times a second
    # per shard: far above the slowed processor's 100/s, so the bound is what holds it back.
    n, bound = 1500, 800
    support.create_resources(settings, 1)
    support.put_records(settings, _items(n))
    flag = tmp_path / "slow.flag"
    flag.touch()
    monkeypatch.setattr(StreamCore, "handle", slowed(StreamCore.handle, flag, 0.01))
    # Watch what the consumer hands out: records fetched, and each fetch's MillisBehindLatest.
    fetched: list[tuple[int, int | None]] = []
    get_records = LeaseConsumer.get_records

    async def watched(self: LeaseConsumer, shard: dict) -> dict | None:
        result = await get_records(self, shard)
        if result:
            rows = sum(
                len(r["Data"].records) if isinstance(r["Data"], RecordBatch) else 1
                for r in result["Records"]
            )
            fetched.append((rows, result.get("MillisBehindLatest")))
        return result

    monkeypatch.setattr(LeaseConsumer, "get_records", watched)
    opts = ProcessorOptions(
        predictions="none", session_timeout=10, checkpoint_seconds=2, buffer_records=bound
    )
    processor = StreamProcessor(settings.processor_target(), opts, load_catalog(), TaskConfig())
    chunk = bound // 4
    held: list[int] = []  # records fetched and not yet handled, sampled

    async def scenario() -> None:
        stop = asyncio.Event()
        run = asyncio.create_task(processor.run(stop))
        try:
            deadline = time.monotonic() + 60
            while processor.stats["records"] < 300 and time.monotonic() < deadline:
                held.append(sum(r for r, _ in fetched) - processor.stats["records"])
                await asyncio.sleep(0.05)
            lag_slowed = REGISTRY.get_sample_value("iotcast_shard_lag_seconds", {"shard": SHARD})
            flag.unlink()
            while processor.stats["records"] < n and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await run
        # The 1,500 records were put within about a second, and the first 300 took the
        # slowed processor 3 s or more: the record handled then had waited over 1.5 s. (Lag
        # in arrival times alone, the newest arrival minus the handled one's, stayed under
        # a second for such a burst while the processor fell behind.)
        assert lag_slowed is not None and lag_slowed > 1.5, lag_slowed

    asyncio.run(scenario())
    assert processor.stats["records"] == n, processor.stats
    # Never more than the bound plus the one fetch the hot loop is working through.
    assert 0 < max(held) <= bound + chunk, max(held)
    assert processor.consumer.buffer.peak <= bound, processor.consumer.buffer.peak
    # Every record fetched once, each fetch at most a chunk, and while the processor was
    # slow the stream held the backlog: fetches said they were behind its tip.
    assert sum(r for r, _ in fetched) == n
    assert max(r for r, _ in fetched) <= chunk
    assert any(ms and ms > 0 for _, ms in fetched[:5]), fetched[:5]

"""Benchmark the stream processor against its parts; prints figures (not a test).

In one run over the same generated readings:

(a) a bare model loop: every predict_one/learn_one call the default model
    sets of the devices make (recorded from a real run: nowcast, forecasts on
    the grid, learning when the actual arrives), replayed on fresh models with
    the same precomputed inputs, nothing else;
(b) the processor's core (:class:`stream.core.StreamCore`): decode, features,
    models, scoring, metrics, checkpoint snapshots (pickling); no network; one
    reading a record (the format before packing), and (b') the same readings in
    packed records of ``--per-record`` readings (``telemetry.envelope``, the
    bridge's default);
(c) the whole processor (:class:`stream.runner.StreamProcessor`) consuming the
    local stream (Kinesis: kinesalite if installed, else moto; S3 and DynamoDB:
    moto), against
(d) a bare async-kinesis consumer reading the same stream (JSON records, no work);

then memory per device (RSS growth over 1,000 and 10,000 devices), checkpoint
size and time per device (pickle + S3 PUT on moto), and the time from a
record's arrival in the processor to its metrics being updated (p50, p99).

(a), (a2) and (b) are single-threaded and timed in CPU time (wall beside it):
on a shared VM wall time mostly measures the neighbours. They run interleaved
``--repeats`` times; rates are medians, ratios the median of the per-repeat ratio.
(c) and (d) alternate ``--stream-repeats`` times, each on its own copy of the stream.

Usage::

    .venv/bin/python bench/processor.py                 # 6,000 readings, everything
    .venv/bin/python bench/processor.py --no-stream --memory-devices ""   # (a), (a2), (b) only
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iotcast.settings import Settings  # noqa: E402
from iotcast.stack import ComponentMissing, start_kinesalite, start_moto  # noqa: E402
from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from online_models.device import DeviceModels  # noqa: E402
from online_models.guard import Guard  # noqa: E402
from stream.checkpoint import CheckpointStore  # noqa: E402
from stream.core import StreamCore  # noqa: E402
from stream.runner import ProcessorOptions, StreamProcessor  # noqa: E402
from stream.state import ShardState  # noqa: E402
from telemetry.envelope import pack  # noqa: E402
from telemetry.generate import generate  # noqa: E402
from telemetry.reading import decode_payload, encode  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Clock:
    """CPU time (this process) and wall time of a section: ``with Clock() as c: ...``."""

    def __enter__(self) -> Clock:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0


def record_model_calls(readings, catalog, task) -> list[tuple]:
    """Every call the default model sets make over ``readings``, in order: (key, verb, x, y, w).

    Recorded from a real run of :class:`DeviceModels` (the guard is the one place models are
    called), so that (a) replays exactly the models' work: the same calls on the same inputs.
    """
    calls: list[tuple] = []
    predict, learn = Guard.predict, Guard.learn

    def horizon() -> int:
        # the guard is called by a HorizonModels' method: its horizon is the caller's
        return sys._getframe(2).f_locals["self"].horizon

    def rec_predict(self, name, model, x, **kw):
        calls.append(((self.device, horizon(), name), "p", x, None, None))
        return predict(self, name, model, x, **kw)

    def rec_learn(self, name, model, x, y, **kw):
        calls.append(((self.device, horizon(), name), "l", x, y, kw.get("w")))
        return learn(self, name, model, x, y, **kw)

    Guard.predict, Guard.learn = rec_predict, rec_learn
    try:
        bench_step(readings, catalog, task)
    finally:
        Guard.predict, Guard.learn = predict, learn
    return calls


def bench_bare(calls, catalog, task) -> Clock:
    """(a): the default models' own work: every predict_one/learn_one the device loop makes,
    replayed on fresh models with the inputs it gave them (features computed beforehand)."""
    specs = {s.name: s for s in catalog.select("default")}
    models = {key: specs[key[2]].build(task.target, key[1]) for key, *_ in calls}
    with Clock() as clock:
        for key, verb, x, y, w in calls:
            model = models[key]
            if verb == "p":
                model.predict_one(x)
            elif w is None:
                model.learn_one(x, y)
            else:
                model.learn_one(x, y, w)
    return clock


def bench_core(payloads, catalog, task, checkpoint_every: int) -> Clock:
    """(b): StreamCore over records (one reading each, or packed), with a checkpoint
    snapshot every N records (and one at the end: the processor's checkpoint on a
    graceful stop)."""
    core = StreamCore(catalog, task)
    state = ShardState(BENCH_SHARD, epoch=1)
    with Clock() as clock:
        for i, data in enumerate(payloads, 1):
            core.handle(state, str(i), data, time.monotonic())
            if state.since_checkpoint >= checkpoint_every:
                state.snapshot()
        state.snapshot()
    return clock


BENCH_SHARD = "shardId-bench"


def packed(payloads: list[bytes], per_record: int) -> list[bytes]:
    """The payloads in packed records of ``per_record`` readings, addressed to the bench's
    shard (as the bridge packs them)."""
    return [
        pack(payloads[i : i + per_record], BENCH_SHARD) for i in range(0, len(payloads), per_record)
    ]


def put_stream(settings: Settings, payloads: list[tuple[bytes, str]], shards: int) -> None:
    kinesis = settings.client("kinesis")
    kinesis.create_stream(StreamName=settings.stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=settings.stream, WaiterConfig={"Delay": 0.2}
    )
    for i in range(0, len(payloads), 500):
        batch = [{"Data": d, "PartitionKey": k} for d, k in payloads[i : i + 500]]
        resp = kinesis.put_records(StreamName=settings.stream, Records=batch)
        assert resp["FailedRecordCount"] == 0


async def bench_bare_consumer(settings: Settings, n: int) -> tuple[float, float]:
    """(d): async-kinesis' Consumer, JSON-decoding records, nothing else.

    Returns (records/s wall, CPU seconds of this process per record), from the first
    record to the n-th."""
    from kinesis import Consumer, MemoryCheckPointer

    count = 0
    first = None
    async with Consumer(
        settings.stream,
        endpoint_url=settings.endpoint("kinesis"),
        region_name=settings.region,
        checkpointer=MemoryCheckPointer(name="bench"),
        idle_timeout=2.0,
        sleep_time_no_records=0.5,
    ) as consumer:
        while count < n:
            async for _item in consumer:
                if first is None:
                    first, cpu0 = time.perf_counter(), time.process_time()
                count += 1
                if count >= n:
                    break
            wall, cpu = time.perf_counter() - first, time.process_time() - cpu0
    return (count - 1) / wall, cpu / (count - 1)


async def bench_processor(
    settings: Settings, n: int, catalog, task, paced: list[tuple[bytes, str]], rate: float
) -> tuple[float, float, list[float]]:
    """(c): the whole processor; rate (wall) and CPU seconds per record from its first record
    to its n-th. Then, caught up, ``paced`` records (if any) put at ``rate`` per second:
    arrival-to-metrics latencies of those."""
    opts = ProcessorOptions(checkpoint_seconds=10, predictions="none", session_timeout=30)
    proc = StreamProcessor(settings.processor_target(), opts, catalog, task)
    latencies: list[float] = []
    proc.core.latencies = latencies
    stop = asyncio.Event()
    run = asyncio.create_task(proc.run(stop))
    while not latencies:
        await asyncio.sleep(0.01)
    first, cpu0 = time.perf_counter(), time.process_time()
    done0 = proc.stats["records"]
    while proc.stats["records"] < n:
        await asyncio.sleep(0.01)
    done = proc.stats["records"] - done0
    throughput = done / (time.perf_counter() - first)
    cpu = (time.process_time() - cpu0) / done
    latencies.clear()
    kinesis = settings.client("kinesis")

    def feed() -> None:
        for data, key in paced:
            kinesis.put_record(StreamName=settings.stream, Data=data, PartitionKey=key)
            time.sleep(1.0 / rate)

    await asyncio.to_thread(feed)
    while proc.stats["records"] < n + len(paced):
        await asyncio.sleep(0.05)
    stop.set()
    await run
    return throughput, cpu, list(latencies)


def bench_step(readings, catalog, task) -> Clock:
    """(a2): DeviceModels.step alone on Reading objects (the models package's own loop), with
    the anomaly watch, as the processor runs it."""
    held: dict[str, DeviceModels] = {}
    with Clock() as clock:
        for r in readings:
            dm = held.get(r.device)
            if dm is None:
                dm = held[r.device] = DeviceModels(r.device, catalog, task, anomalies=True)
            dm.step(r)
    return clock


def bench_memory(catalog, task, devices: int, per_device: int) -> float:
    """RSS growth per device: ``devices`` model sets, each stepped ``per_device`` readings."""
    base = list(
        itertools.islice(
            (r for r in generate(days=1, seed=4) if r.device.startswith("b8")), per_device
        )
    )
    gc.collect()
    before = rss_bytes()
    held = {}
    for i in range(devices):
        name = f"dev-{i:05d}"
        dm = held[name] = DeviceModels(name, catalog, task, anomalies=True)
        for r in base:
            dm.step(
                r.__class__(r.ts, name, r.co, r.humidity, r.light, r.lpg, r.motion, r.smoke, r.temp)
            )
    gc.collect()
    return (rss_bytes() - before) / devices


def bench_checkpoint(settings: Settings, catalog, task, devices: int) -> tuple[float, float, float]:
    """Pickle size and CPU per device; S3 PUT (artifact + manifest) wall time and this
    process' CPU per device, on moto."""
    day = [r for r in generate(days=1, seed=6) if r.device.startswith("b8")]
    dm = DeviceModels("b8", catalog, task, anomalies=True)
    for r in day:
        dm.step(
            r.__class__(r.ts, "b8", r.co, r.humidity, r.light, r.lpg, r.motion, r.smoke, r.temp)
        )
    t0 = time.process_time()
    payload = b""
    for _ in range(devices):
        payload = pickle.dumps(dm, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_s = (time.process_time() - t0) / devices
    s3 = settings.client("s3")
    s3.create_bucket(Bucket=settings.bucket)
    store = CheckpointStore(s3, settings.bucket, settings.app)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(devices):
        store.put_device(f"dev-{i}", 1, payload, dm.n_learned, {}, shard_id="s", sequence="1")
    put_s = (time.perf_counter() - t0) / devices
    put_cpu = (time.process_time() - c0) / devices  # the client's: moto is another process
    return len(payload), pickle_s, put_s, put_cpu


def median_rate(n: int, clocks: list[Clock], attr: str) -> float:
    return n / statistics.median(getattr(c, attr) for c in clocks)


def median_ratio(num: list[Clock], den: list[Clock], attr: str) -> float:
    """Median over repeats of rate(num) / rate(den), the two measured side by side in a repeat."""
    return statistics.median(
        getattr(d, attr) / getattr(n, attr) for n, d in zip(num, den, strict=True)
    )


def bench_core_parts(
    readings, payloads, catalog, task, repeats: int, per_record: int = 100
) -> float:
    """(a), (a2), (b), (b') interleaved ``repeats`` times on the same readings; medians
    printed."""
    n = len(readings)
    every = ProcessorOptions().checkpoint_every
    runs: dict[str, list[Clock]] = {"a": [], "a2": [], "b": [], "bp": [], "b1k": []}
    records = packed(payloads, per_record)
    calls = record_model_calls(readings, catalog, task)
    for _ in range(repeats):
        gc.collect()
        runs["a"].append(bench_bare(calls, catalog, task))
        gc.collect()
        runs["a2"].append(bench_step(readings, catalog, task))
        gc.collect()
        runs["b"].append(bench_core(payloads, catalog, task, every))
        gc.collect()
        runs["bp"].append(bench_core(records, catalog, task, max(1, every // per_record)))
        gc.collect()
        runs["b1k"].append(bench_core(payloads, catalog, task, 1000))

    def rates(key: str) -> str:
        return f"{median_rate(n, runs[key], 'cpu'):8.0f}/s CPU {median_rate(n, runs[key], 'wall'):8.0f}/s wall"

    print(f"medians of {repeats} interleaved repeats; CPU = this process' CPU time")
    print(f"(a) bare model loop (replayed calls){rates('a')}")
    print(
        f"    DeviceModels.step alone         {rates('a2')}   "
        f"{median_ratio(runs['a2'], runs['a'], 'cpu'):.2f} of (a) CPU "
        "(features, pending forecasts, scoring, selection)"
    )
    print(
        f"(b) processor core, no network      {rates('b')}   "
        f"(decode, metrics, checkpoint snapshot every {every} records and at the end)"
    )
    print(
        f"(b') same, packed records          {rates('bp')}   "
        f"{median_ratio(runs['bp'], runs['b'], 'cpu'):.2f} of (b) CPU ({len(records)} records "
        f"of {per_record} readings; snapshot every {max(1, every // per_record)} records)"
    )
    print(
        f"    same, snapshot every 1000       {rates('b1k')}   "
        f"{median_ratio(runs['b1k'], runs['b'], 'cpu'):.2f} of (b) CPU (pickling on the hot path)"
    )
    print(
        f"b/a = {median_ratio(runs['b'], runs['a'], 'cpu'):.2f} CPU, "
        f"{median_ratio(runs['b'], runs['a'], 'wall'):.2f} wall   (target >= 0.85; "
        "median over repeats of the per-repeat ratio)"
    )
    return statistics.median(c.cpu for c in runs["b"]) / n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=6_000)
    parser.add_argument("--days", type=float, default=1.0, help="generated days to take them from")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of (a), (a2), (b)")
    parser.add_argument("--stream-repeats", type=int, default=2, help="repeats of (d), (c)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument(
        "--memory-readings", type=int, default=10, help="readings per device in the memory test"
    )
    parser.add_argument("--checkpoint-devices", type=int, default=200)
    parser.add_argument(
        "--paced-rate", type=float, default=20.0, help="records/s for the latency phase"
    )
    parser.add_argument(
        "--memory-devices", default="1000,10000", help="device counts for the memory figure"
    )
    parser.add_argument("--no-stream", action="store_true", help="skip (c), (d), latency, S3")
    parser.add_argument(
        "--per-record", type=int, default=100, help="readings a packed record holds in (b')"
    )
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    catalog, task = load_catalog(), TaskConfig()
    readings = list(itertools.islice(generate(days=args.days, seed=args.seed), args.readings))
    payloads = [encode(r) for r in readings]
    assert all(decode_payload(p) for p in payloads[:10])
    print(
        f"readings: {len(readings)} (generate(days={args.days:g}, seed={args.seed})), devices: "
        f"{len({r.device for r in readings})}, models: {', '.join(catalog.select('default').names)}, "
        f"horizons: {task.horizons}; load average {os.getloadavg()[0]:.1f}"
    )
    b_cpu = bench_core_parts(
        readings, payloads, catalog, task, args.repeats, per_record=args.per_record
    )
    if not args.no_stream:
        bench_stream(args, readings, payloads, catalog, task, b_cpu)
    for n in (int(x) for x in args.memory_devices.split(",") if x):
        per = bench_memory(catalog, task, n, args.memory_readings)
        print(
            f"memory: {n:6d} devices -> {per / 1024:.1f} KiB RSS per device "
            f"(after {args.memory_readings} readings each)"
        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def bench_stream(args, readings, payloads, catalog, task, b_cpu: float) -> None:
    """(d) and (c) alternately, each on its own copy of the stream; latency; checkpoints."""
    with tempfile.TemporaryDirectory() as tmp:
        moto = start_moto(Path(tmp))
        try:
            kinesalite = start_kinesalite(Path(tmp))
        except ComponentMissing:
            kinesalite = None
        try:
            base = Settings.of(endpoint_url=moto.url)
            base = base.with_endpoints(kinesis=kinesalite.url if kinesalite else None)
            items = [(p, r.device) for p, r in zip(payloads, readings, strict=True)]
            later = generate(days=1, seed=10, start=readings[-1].ts + 3600)
            paced = [(encode(r), r.device) for r in itertools.islice(later, 200)]
            c_runs, d_runs, lat = [], [], []
            for i in range(args.stream_repeats):
                s_c = base.replace(stream=f"bench-c{i}", bucket=f"bench-c{i}", app=f"bench-c{i}")
                s_d = base.replace(stream=f"bench-d{i}")
                put_stream(s_d, items, args.shards)
                put_stream(s_c, items, args.shards)
                base.client("s3").create_bucket(Bucket=s_c.bucket)
                gc.collect()
                d_runs.append(asyncio.run(bench_bare_consumer(s_d, len(items))))
                gc.collect()
                last = i == args.stream_repeats - 1
                c, c_cpu, got = asyncio.run(
                    bench_processor(
                        s_c, len(items), catalog, task, paced if last else [], args.paced_rate
                    )
                )
                c_runs.append((c, c_cpu))
                lat = got or lat
            where = "kinesalite" if kinesalite else "moto"
            c = statistics.median(r for r, _ in c_runs)
            d = statistics.median(r for r, _ in d_runs)
            c_cpu = statistics.median(u for _, u in c_runs)
            d_cpu = statistics.median(u for _, u in d_runs)
            print(f"medians of {args.stream_repeats} alternating repeats, Kinesis on {where}:")
            print(
                f"(c) whole processor            {c:8.0f}/s wall  {c_cpu * 1e6:6.0f} us CPU/record "
                f"(runs: {', '.join(f'{r:.0f}' for r, _ in c_runs)})"
            )
            print(
                f"(d) bare async-kinesis consumer {d:7.0f}/s wall  {d_cpu * 1e6:6.0f} us CPU/record "
                f"(runs: {', '.join(f'{r:.0f}' for r, _ in d_runs)})"
            )
            ratios = [cr / dr for (cr, _), (dr, _) in zip(c_runs, d_runs, strict=True)]
            print(
                f"c/d = {statistics.median(ratios):.2f} wall (no target: one loop does (b)'s and (d)'s work; "
                "per repeat: "
                f"{', '.join(f'{x:.2f}' for x in ratios)})"
            )
            print(
                f"    CPU per record: (c) {c_cpu * 1e6:.0f} us vs (b) core {b_cpu * 1e6:.0f} us + "
                f"(d) transport {d_cpu * 1e6:.0f} us = {(b_cpu + d_cpu) * 1e6:.0f} us: "
                f"c/(b+d) = {c_cpu / (b_cpu + d_cpu):.2f} (target <= 1.15; 1.0 = nothing beyond "
                "core and transport)"
            )
            q = statistics.quantiles(lat, n=100)
            print(
                f"arrival -> metrics updated: p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms "
                f"(over {len(lat)} records put at {args.paced_rate:g}/s once caught up)"
            )
            size, pickle_s, put_s, put_cpu = bench_checkpoint(
                base.replace(bucket="bench-ckpt", app="bench"),
                catalog,
                task,
                args.checkpoint_devices,
            )
            print(
                f"checkpoint per device (a day of readings): {size / 1024:.1f} KiB, pickle "
                f"{pickle_s * 1000:.2f} ms CPU, S3 artifact+manifest PUT {put_s * 1000:.2f} ms "
                f"wall, {put_cpu * 1000:.2f} ms CPU in this process (moto, sequential)"
            )
        finally:
            if kinesalite:
                kinesalite.stop()
            moto.stop()


if __name__ == "__main__":
    main()

"""The Prometheus series of one processor at several fleet sizes: they must not grow with devices.

For each fleet size it generates ``--days`` of readings of N devices (seed 3),
puts them into a one-shard stream on kinesalite (the moto server holds S3 and
DynamoDB), and for each run on it starts one processor (``iotcast process
--workers 1``, default models and horizons unless told, ``--watch`` the first W
devices when asked; a consumer group of its own, so it reads the stream from
the start; no prediction records, a checkpoint a minute), waits until it has
taken every reading, scrapes its /metrics and
prints, one line per run::

    series: 50 devices -> 1234 series
    series: 1000 devices -> 1240 series
    series: 1000 devices -> 2000 series (10 watched)

Every ``iotcast_*`` sample of the page is a series (histogram buckets,
``_count``, ``_sum`` and ``_created`` included: Prometheus stores each).
Below each line: the series by metric family, the per-device set of a watched
device (the series that carry its ``device`` label, the worst-k gauges aside),
the /metrics page size, and the CPU time one full scrape costs the processor
once it idles (its utime + stime from ``/proc/<pid>/stat`` before and after
``--scrapes`` scrapes, less its idle rate over the windows before and after;
the median of ``--rounds`` rounds), with the load average beside. At the end: the growth from the smallest to the largest fleet
without a watch list, and issue 23's targets (at most 3,000 series and 10 %
growth from 50 to 1,000 devices; with W watched at most 3,000 + W x the
per-device set; a 1,000-device scrape under 1 MB and 100 ms of CPU).

    .venv/bin/python bench/metrics_cardinality.py                      # 50, 1000, 1000:10
    .venv/bin/python bench/metrics_cardinality.py --runs 50,200:3 --days 0.05
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iotcast.cli import command_line, local_env  # noqa: E402
from iotcast.settings import Settings  # noqa: E402
from iotcast.stack import (  # noqa: E402
    ManagedProcess,
    free_port,
    http_ready,
    start_kinesalite,
    start_moto,
)
from telemetry.generate import generate, profiles_for  # noqa: E402
from telemetry.reading import encode  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SEED = 3
# The worst-k gauges name devices, but k x horizons of them whatever the fleet.
ROTATING = ("iotcast_worst_device_error_ratio", "iotcast_worst_device_mae_celsius")
MAX_SERIES = 3000
MAX_GROWTH = 0.10
MAX_PAGE = 1_000_000
MAX_SCRAPE_CPU = 0.100


@dataclass(frozen=True)
class Run:
    devices: int
    watched: int = 0

    @classmethod
    def parse(cls, text: str) -> Run:
        """``N`` or ``N:W`` (N devices, the first W of them watched).

        >>> Run.parse("1000:10"), Run.parse("50")
        (Run(devices=1000, watched=10), Run(devices=50, watched=0))
        """
        devices, _, watched = text.partition(":")
        return cls(int(devices), int(watched or 0))


@dataclass
class Result:
    run: Run
    readings: int
    seconds: float
    series: int
    created: int
    per_family: Counter[str]
    per_device: int
    page_bytes: int
    scrape_cpu: float  # seconds of the processor's CPU per full scrape, idle rate taken off
    scrape_wall: float
    idle_rate: float  # the processor's CPU seconds per second, not scraped
    load: str


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (fields 14 and 15 of /proc/<pid>/stat), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def get(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def put_stream(kinesis, stream: str, devices: int, days: float) -> int:
    """Generate the readings of ``devices`` devices into a new one-shard ``stream``."""
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    n = 0
    batch: list[dict] = []

    def flush() -> None:
        records = batch
        while records:
            resp = kinesis.put_records(StreamName=stream, Records=records)
            records = [
                rec for rec, res in zip(records, resp["Records"], strict=True) if "ErrorCode" in res
            ]
            if records:
                time.sleep(0.2)
        batch.clear()

    for r in generate(days=days, seed=SEED, devices=devices):
        batch.append({"Data": encode(r), "PartitionKey": r.device})
        n += 1
        if len(batch) == 500:
            flush()
    flush()
    return n


def cpu_rate(pid: int, seconds: float) -> float:
    """The CPU seconds per second ``pid`` uses over the next ``seconds``."""
    c0, w0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - w0)


def wait_quiet(pid: int, args: argparse.Namespace) -> None:
    """Wait (at most --quiet-timeout s) until the processor idles: under 50 ms of CPU a
    second (after the stream it still checkpoints and refreshes its figures)."""
    deadline = time.monotonic() + args.quiet_timeout
    while cpu_rate(pid, args.idle) > 0.05 and time.monotonic() < deadline:
        pass


def scrape_cost(pid: int, url: str, args: argparse.Namespace) -> tuple[float, float, float]:
    """(CPU s, wall s) of one full scrape to the processor, and its idle CPU rate: the
    median over --rounds rounds of --scrapes scrapes each, between two idle windows whose
    mean rate is taken off."""
    costs, walls, idles = [], [], []
    before = cpu_rate(pid, args.idle)
    for _ in range(args.rounds):
        c0, w0 = cpu_seconds(pid), time.monotonic()
        for _ in range(args.scrapes):
            get(url)
        c1, w1 = cpu_seconds(pid), time.monotonic()
        after = cpu_rate(pid, args.idle)
        idle = (before + after) / 2
        costs.append(max(0.0, (c1 - c0) - idle * (w1 - w0)) / args.scrapes)
        walls.append((w1 - w0) / args.scrapes)
        idles.append(idle)
        before = after
    return statistics.median(costs), statistics.median(walls), statistics.median(idles)


def measure(
    settings: Settings, run: Run, readings: int, args: argparse.Namespace, work: Path
) -> Result:
    """One processor over the stream until it has taken every reading, then its /metrics."""
    watch = [p.device for p in profiles_for(run.devices, SEED)][: run.watched]
    port = free_port()
    # No prediction records and a checkpoint a minute: the series are the same, the run is
    # shorter (every 10 s, the checkpoints of 1,000 devices cost the moto server a core).
    extra = ["--create-resources", "--workers", "1", "--metrics-port", str(port),
             "--models", args.models, "--predictions", "none",
             "--checkpoint-seconds", "60"]  # fmt: skip
    if args.horizons:
        extra += ["--horizons", args.horizons]
    if watch:
        extra += ["--watch", ",".join(watch)]
    argv = command_line(settings, "process", *extra)
    url = f"http://127.0.0.1:{port}/metrics"
    log = work / f"processor-{run.devices}-{run.watched}.log"
    with ManagedProcess("processor", argv, port, log, env=local_env(settings)) as proc:
        proc.start(ready=http_ready(url), timeout=90)
        assert proc.proc is not None
        pid = proc.proc.pid
        t0 = time.monotonic()
        taken = 0.0
        while taken < readings:
            if not proc.alive():
                raise RuntimeError(f"the processor exited; see {log}:\n{proc.log_tail()}")
            if time.monotonic() - t0 > args.timeout:
                raise RuntimeError(f"took {taken:.0f} of {readings} readings in {args.timeout} s")
            time.sleep(1)
            text = get(f"{url}?name[]=iotcast_readings_processed_total").decode()
            taken = sum(
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "iotcast_readings_processed_total"
            )
        seconds = time.monotonic() - t0
        time.sleep(args.settle)  # the figures (errors, worst-k, gauges) refresh
        body = get(url)
        wait_quiet(pid, args)
        load = loadavg()
        scrape_cpu, scrape_wall, idle_rate = scrape_cost(pid, url, args)
        load += " -> " + loadavg()
    text = body.decode()
    per_family: Counter[str] = Counter()
    created = 0
    device_series: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.startswith("iotcast_"):
                continue
            per_family[family.name] += 1
            created += s.name.endswith("_created")
            if "device" in s.labels and family.name not in ROTATING:
                device_series[s.labels["device"]] += 1
    per_device = max((device_series[d] for d in watch), default=0)
    return Result(
        run=run,
        readings=readings,
        seconds=seconds,
        series=sum(per_family.values()),
        created=created,
        per_family=per_family,
        per_device=per_device,
        page_bytes=len(body),
        scrape_cpu=scrape_cpu,
        scrape_wall=scrape_wall,
        idle_rate=idle_rate,
        load=load,
    )


def report(r: Result, args: argparse.Namespace) -> None:
    run = r.run
    print(
        f"series: {run.devices} devices -> {r.series} series"
        + (f" ({run.watched} watched)" if run.watched else ""),
        flush=True,
    )
    print(
        f"  {r.readings:,} readings ({args.days} days) taken in {r.seconds:.0f} s; "
        f"{r.created} of the series are _created samples; /metrics page {r.page_bytes:,} bytes"
    )
    print(
        f"  a full scrape: {r.scrape_cpu * 1000:.1f} ms of the processor's CPU (median of "
        f"{args.rounds} x {args.scrapes} scrapes, its idle {r.idle_rate * 1000:.1f} ms/s taken off), "
        f"{r.scrape_wall * 1000:.1f} ms wall; load average {r.load}"
    )
    if run.watched:
        print(f"  per watched device: {r.per_device} series")
    for name, count in r.per_family.most_common(args.top):
        print(f"    {name:50s} {count:6d}")


def verdict(results: list[Result]) -> None:
    """Issue 23's targets, each said ok or NOT."""

    def say(ok: bool, what: str) -> None:
        print(f"  {'ok ' if ok else 'NOT'} {what}")

    print("targets (issue 23):")
    plain = sorted((r for r in results if not r.run.watched), key=lambda r: r.run.devices)
    for r in plain:
        say(r.series <= MAX_SERIES, f"{r.run.devices} devices, no watch list: {r.series} <= 3,000")
    if len(plain) >= 2:
        lo, hi = plain[0], plain[-1]
        growth = (hi.series - lo.series) / lo.series
        say(
            growth <= MAX_GROWTH,
            f"{lo.run.devices} -> {hi.run.devices} devices: {growth:+.1%} series (<= +10 %)",
        )
    for r in results:
        if r.run.watched:
            bound = MAX_SERIES + r.run.watched * r.per_device
            say(
                r.series <= bound,
                f"{r.run.devices} devices, {r.run.watched} watched: {r.series} <= 3,000 + "
                f"{r.run.watched} x {r.per_device} = {bound:,}",
            )
        if r.run.devices >= 1000:
            say(r.page_bytes < MAX_PAGE, f"{r.run.devices} devices: page {r.page_bytes:,} < 1 MB")
            say(
                r.scrape_cpu < MAX_SCRAPE_CPU,
                f"{r.run.devices} devices: scrape {r.scrape_cpu * 1000:.1f} ms CPU < 100 ms "
                f"(load average {r.load})",
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--runs", default="50,1000,1000:10", help="N or N:W runs (W watched)")
    ap.add_argument("--days", type=float, default=0.05, help="readings per device (days)")
    ap.add_argument("--models", default="default")
    ap.add_argument("--horizons", default=None, help="default: the task's (0,60,900,3600)")
    ap.add_argument("--scrapes", type=int, default=10, help="full scrapes timed per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of scrapes (the median)")
    ap.add_argument("--idle", type=float, default=2.0, help="seconds of an idle window")
    ap.add_argument("--quiet-timeout", type=float, default=120.0, help="wait to idle, s")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds before the scrape")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds a run may take")
    ap.add_argument("--top", type=int, default=12, help="families listed per run")
    args = ap.parse_args()
    runs = [Run.parse(r) for r in args.runs.split(",")]
    work = Path(tempfile.mkdtemp(prefix="cardinality-"))
    print(f"work dir {work}; load average {loadavg()}", flush=True)
    kinesalite = start_kinesalite(work)
    moto = start_moto(work)
    try:
        base = Settings.of(
            endpoint_url=moto.url,
            endpoints={"kinesis": kinesalite.url},
            bucket="cardinality",
            log_level="WARNING",
        )
        kinesis = base.client("kinesis")
        streams: dict[int, int] = {}
        results = []
        for run in runs:
            stream = f"cardinality-{run.devices}"
            if run.devices not in streams:
                t0 = time.monotonic()
                streams[run.devices] = put_stream(kinesis, stream, run.devices, args.days)
                print(
                    f"put {streams[run.devices]:,} readings of {run.devices} devices into "
                    f"{stream} in {time.monotonic() - t0:.0f} s",
                    flush=True,
                )
            settings = base.replace(stream=stream, app=f"card-{run.devices}-{run.watched}")
            result = measure(settings, run, streams[run.devices], args, work)
            report(result, args)
            results.append(result)
        verdict(results)
    finally:
        moto.stop()
        kinesalite.stop()


if __name__ == "__main__":
    main()

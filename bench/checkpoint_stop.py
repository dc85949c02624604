"""The final checkpoint of a dense task: a processor holding many devices, SIGTERM, exit.

A real ``iotcast process`` child (S3 and DynamoDB on moto, Kinesis on kinesalite when
installed, else moto) learns ``--devices`` devices' first ``--readings`` readings each
from one shard, with no checkpoint before the stop (``--checkpoint-seconds 3600``): every
device is written by the final checkpoint.  Then SIGTERM; the figure is the time from
the signal to the process's exit (its log says when the final checkpoints were written).

``--layouts bundle,objects`` runs it twice on fresh streams: ``bundle`` is this code (one
object per shard per checkpoint, stream/checkpoint.py), ``objects`` the same processor
with the write path of the code before issue 26 (two PUTs per device: the artifact and
the manifest beside it, on the checkpoint pool's threads), for the before figure.
The load average is printed beside each figure (shared machine).

``--sizes`` prints instead what a day-trained device costs a checkpoint of this code
(no servers): its pickle and its zlib'd bytes in the bundle, the CPU of each, its version
record and its manifest entry (the figures of deploy/capacity-inputs.json).

Usage::

    .venv/bin/python bench/checkpoint_stop.py                      # 16,000 devices, both layouts
    .venv/bin/python bench/checkpoint_stop.py --devices 2000 --layouts bundle
    .venv/bin/python bench/checkpoint_stop.py --sizes
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iotcast.settings import Settings  # noqa: E402
from iotcast.stack import ComponentMissing, start_kinesalite, start_moto  # noqa: E402
from stream.checkpoint import Artifact, CheckpointStore, DeviceEntry  # noqa: E402
from telemetry.generate import generate  # noqa: E402
from telemetry.reading import encode  # noqa: E402
from tests import support  # noqa: E402


def _objects_write(
    self: CheckpointStore, shard_id, sequence, artifacts: list[Artifact], committed, mapper=map
) -> dict[str, DeviceEntry]:
    """The write path before issue 26: each device's artifact and its manifest.json, two
    PUTs per device, spread over the checkpoint pool's threads."""

    def put(a: Artifact) -> tuple[str, DeviceEntry]:
        device, version, payload, samples, metrics = a
        return device, self.put_device(
            device, version, payload, samples, metrics, shard_id=shard_id, sequence=sequence
        )

    return dict(mapper(put, artifacts))


def child(argv: list[str]) -> int:
    """``iotcast`` with the objects layout's write path (the before figure)."""
    from iotcast.cli import main

    CheckpointStore.put_bundle = _objects_write  # type: ignore[method-assign]
    return main(argv)


def loadavg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def learned(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return 0.0
    return sum(
        float(m.group(1))
        for m in re.finditer(rb"^iotcast_readings_learned_total\{[^}]*\} (\S+)$", text, re.M)
    )


def feed(settings: Settings, devices: int, readings: int) -> int:
    """``readings`` readings of each of ``devices`` devices (one device's day, renamed)."""
    base = list(itertools.islice(generate(days=1, seed=11, devices=1), readings))
    items = []
    for step, r in enumerate(base):
        for i in range(devices):
            name = f"dev-{i:05d}"
            items.append(
                (
                    encode(
                        r.__class__(
                            r.ts + step * 0.001,
                            name,
                            r.co,
                            r.humidity,
                            r.light,
                            r.lpg,
                            r.motion,
                            r.smoke,
                            r.temp,
                        )  # fmt: skip
                    ),
                    name,
                )
            )
    support.put_records(settings, items)
    return len(items)


def run(settings: Settings, work: Path, layout: str, args: argparse.Namespace) -> dict:
    support.create_resources(settings, 1)
    t0 = time.perf_counter()
    total = feed(settings, args.devices, args.readings)
    fed = time.perf_counter() - t0
    program = (
        (support.IOTCAST,)
        if layout == "bundle"
        else (sys.executable, str(Path(__file__).resolve()), "--child")
    )
    flags = support.processor_flags(
        args.models, (0, 60), checkpoint_seconds=3600, session_timeout=None, heartbeat=None
    )
    proc = support.start_processor(
        settings, work, *flags, "--checkpoint-every", "100000000",
        "--max-devices", str(args.devices + 1000), name=f"processor-{layout}", program=program,
    )  # fmt: skip
    try:
        t1 = time.perf_counter()
        while learned(proc.port) < total * 0.99:
            if time.perf_counter() - t1 > args.learn_timeout:
                raise TimeoutError(f"learned {learned(proc.port)} of {total}")
            time.sleep(1)
        time.sleep(3)  # the rest of the backlog
        learn_s = time.perf_counter() - t1
        load = loadavg()
        t2 = time.perf_counter()
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.proc.wait(args.stop_timeout)
        stop_s = time.perf_counter() - t2
    finally:
        proc.kill()
    (manifest,) = support.manifests(settings).values()
    s3 = settings.client("s3")
    head = s3.head_object(
        Bucket=settings.bucket, Key=f"checkpoints/{settings.app}/{manifest.shard_id}/manifest.json"
    )
    keys = {e.key for e in manifest.devices.values()}
    stored = sum(e.size for e in manifest.devices.values())
    parts = -(-stored // (8 * 2**20)) if stored > 8 * 2**20 else 0
    writes = (
        (2 + parts + 1 if parts else 2) if layout == "bundle" else 2 * len(manifest.devices) + 1
    )
    return {
        "layout": layout,
        "devices": len(manifest.devices),
        "records": total,
        "feed_s": fed,
        "learn_s": learn_s,
        "stop_s": stop_s,
        "exit": code,
        "load": load,
        "objects": len(keys),
        "stored_mib": stored / 2**20,
        "manifest_mib": head["ContentLength"] / 2**20,
        "s3_writes": writes,
    }


def sizes(repeats: int = 30) -> None:
    """A day-trained device's checkpoint: bytes and CPU, pickle and zlib, record, entry."""
    from online_models import checkpoint_format
    from online_models.catalog import load_catalog
    from online_models.config import TaskConfig
    from online_models.device import DeviceModels
    from stream.checkpoint import ShardManifest
    from stream.state import entry_metrics

    day = [r for r in generate(days=1, seed=6) if r.device.startswith("b8")]
    dm = DeviceModels(day[0].device, load_catalog(), TaskConfig())
    for r in day:
        dm.step(r)
    t0 = time.process_time()
    for _ in range(repeats):
        payload = checkpoint_format.dumps(dm)
    pickle_s = (time.process_time() - t0) / repeats

    class Discard:  # an S3 that takes the bundle's one PUT and keeps nothing
        def put_object(self, **_: object) -> None:
            pass

    store = CheckpointStore(Discard(), "b", "iotcast")
    metrics = entry_metrics(dm.summary())
    t0 = time.process_time()
    for _ in range(repeats):
        entries = store.put_bundle(
            "shardId-0", "1", [(dm.device, 1, payload, dm.n_learned, metrics)], {}
        )
    bundle_s = (time.process_time() - t0) / repeats
    (entry,) = entries.values()
    many = {f"dev-{i:05d}": entry for i in range(1000)}
    t0 = time.process_time()
    raw = ShardManifest("shardId-0", "1", many).to_json("key")
    manifest_s = (time.process_time() - t0) / 1000
    print(
        f"a day-trained device ({dm.n_learned:,} readings, default set, horizons "
        f"{'/'.join(map(str, TaskConfig().horizons))}): pickle {len(payload) / 1024:.1f} KiB "
        f"in {pickle_s * 1000:.2f} ms CPU; in the bundle {entry.size / 1024:.1f} KiB (zlib) + "
        f"record {entry.record.length} B, {bundle_s * 1000:.2f} ms CPU (zlib, sha256, record); "
        f"manifest entry {len(raw) / 1000:.0f} B, {manifest_s * 1e6:.0f} us CPU; "
        f"load {loadavg()}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    if "--sizes" in sys.argv[1:]:
        sizes()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=16_000)
    parser.add_argument("--readings", type=int, default=3, help="per device (default 3)")
    parser.add_argument("--models", default="default", help="the processor's model set")
    parser.add_argument("--layouts", default="bundle,objects")
    parser.add_argument("--learn-timeout", type=float, default=900)
    parser.add_argument("--stop-timeout", type=float, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        moto = start_moto(work)
        try:
            kinesalite = start_kinesalite(work)
        except ComponentMissing:
            kinesalite = None
        try:
            for layout in args.layouts.split(","):
                settings = support.settings_on(
                    moto.url, kinesis_url=kinesalite.url if kinesalite else None
                )
                r = run(settings, work, layout, args)
                print(
                    f"{r['layout']:8} {r['devices']:,} devices ({r['records']:,} records, "
                    f"learned in {r['learn_s']:.0f}s): final checkpoint and exit "
                    f"{r['stop_s']:.1f}s after SIGTERM (exit {r['exit']}), load {r['load']}; "
                    f"{r['objects']:,} model objects, {r['stored_mib']:.1f} MiB stored, "
                    f"manifest {r['manifest_mib']:.1f} MiB, {r['s3_writes']:,} S3 writes "
                    "(+ dead letters and events)",
                    flush=True,
                )
        finally:
            if kinesalite:
                kinesalite.stop()
            moto.stop()


if __name__ == "__main__":
    main()

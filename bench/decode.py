"""Benchmark: decode + validate (and encode) of telemetry payloads on one core.

The payload mix is realistic: readings of the calibrated generator, half in
the devices' spaced JSON layout and half compact (as the Kinesis records
carry them), with 1 % bad payloads of several kinds (bad JSON, a missing
sensor, 0/1 booleans, out of range, bad device id, milliseconds ts).  Since
a reading may carry any subset of the sensors, three of those kinds are now
readings with a field absent or dropped, not refusals; the mix is the same
bytes as before, so the first figure compares with earlier runs.

Extra figures: the same mix of a fleet of temperature-and-humidity devices
(DHT22/SHT31 boards: the generator's ``sensors=``), and reading the mix's
rows back from the CSV format (``read_csv``, full rows: its fast path).

Run:  .venv/bin/python bench/decode.py [--n 50000] [--repeat 5]

Prints readings/s by wall clock and by process CPU time, and CPU µs per
reading (the machine may be shared; CPU time is what one core can do), best
of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from collections.abc import Sequence

from telemetry.csvfile import format_row, read_csv, write_csv
from telemetry.generate import generate
from telemetry.reading import InvalidReading, decode_payload, encode

INVALID = [
    b'{"data": {"co": 0.005, "humidity": 51.0, "light": false, "lpg": 0.0076, "motion": fal',
    b'{"data": {"co": 0.005, "humidity": 51.0, "light": false, "lpg": 0.0076, "motion": false, '
    b'"smoke": 0.02}, "device_id": "b8:27:eb:bf:9d:51", "ts": 1594512094.38}',
    b'{"data": {"co": 0.005, "humidity": 51.0, "light": 0, "lpg": 0.0076, "motion": false, '
    b'"smoke": 0.02, "temp": 22.7}, "device_id": "b8:27:eb:bf:9d:51", "ts": 1594512094.38}',
    b'{"data": {"co": 0.005, "humidity": 151.0, "light": false, "lpg": 0.0076, "motion": false, '
    b'"smoke": 0.02, "temp": 22.7}, "device_id": "b8:27:eb:bf:9d:51", "ts": 1594512094.38}',
    b'{"data": {"co": 0.005, "humidity": 51.0, "light": false, "lpg": 0.0076, "motion": false, '
    b'"smoke": 0.02, "temp": 22.7}, "device_id": "b8 27 eb", "ts": 1594512094.38}',
    b'{"data": {"co": 0.005, "humidity": 51.0, "light": false, "lpg": 0.0076, "motion": false, '
    b'"smoke": 0.02, "temp": 22.7}, "device_id": "b8:27:eb:bf:9d:51", "ts": 1594512094380}',
]


def payload_mix(
    n: int, seed: int = 0, sensors: Sequence[Sequence[str]] = (), invalid: bool = True
) -> tuple[list[bytes], list]:
    rng = random.Random(seed)
    readings = []
    for r in generate(days=max(0.05, n / 40_000), seed=seed, sensors=sensors):
        readings.append(r)
        if len(readings) == n:
            break
    payloads = []
    for i, r in enumerate(readings):
        if rng.random() < 0.01 and invalid:
            payloads.append(rng.choice(INVALID))
        elif i % 2:
            payloads.append(encode(r))
        else:
            payloads.append(json.dumps(r.to_payload()).encode())  # the devices' spaced layout
    return payloads, readings


def measure(fn, items, repeat: int, count: int | None = None) -> tuple[float, float]:
    """Best readings/s of ``repeat`` runs, by wall clock and by CPU time (``count`` readings)."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn(items)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    count = len(items) if count is None else count
    return count / best_wall, count / best_cpu


def decode_all(payloads: list[bytes]) -> None:
    for p in payloads:
        try:
            decode_payload(p)
        except InvalidReading:
            pass


def encode_all(readings: list) -> None:
    for r in readings:
        encode(r)


def format_all(readings: list) -> None:
    for r in readings:
        format_row(r)


def read_all(files: list[str]) -> None:
    for text in files:
        for _ in read_csv(io.StringIO(text)):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    payloads, readings = payload_mix(args.n)
    bad = sum(1 for p in payloads if p in INVALID)
    print(
        f"payloads: {len(payloads):,} ({bad:,} of the bad kinds), "
        f"mean {sum(map(len, payloads)) / len(payloads):.0f} bytes"
    )
    th_payloads, _ = payload_mix(args.n, sensors=[("humidity", "temp")], invalid=False)
    csv_text = io.StringIO()
    write_csv(csv_text, readings)
    for name, fn, items, count in (
        ("decode+validate", decode_all, payloads, len(payloads)),
        ("encode", encode_all, readings, len(readings)),
        ("csv format_row", format_all, readings, len(readings)),
        ("decode temp+hum", decode_all, th_payloads, len(th_payloads)),
        ("csv read_csv", read_all, [csv_text.getvalue()], len(readings)),
    ):
        wall, cpu = measure(fn, items, args.repeat, count)
        print(
            f"{name:>16}: {wall:>10,.0f} readings/s (wall)  {cpu:>10,.0f} readings/s (CPU, one core)"
            f"  {1e6 / cpu:6.2f} µs CPU/reading"
        )


if __name__ == "__main__":
    main()

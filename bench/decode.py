"""Benchmark: decode + validate (and encode) of telemetry payloads on one core.

The payload mix is realistic: readings of the calibrated generator, half in
the devices' spaced JSON layout and half compact (as the Kinesis records
carry them), with 1 % invalid payloads of several kinds (bad JSON, missing
field, 0/1 booleans, out of range, bad device id, milliseconds ts).

Run:  .venv/bin/python bench/decode.py [--n 50000] [--repeat 5]

Prints readings/s by wall clock and by process CPU time (the machine may be
shared; CPU time is what one core can do), best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from telemetry.csvfile import format_row
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


def payload_mix(n: int, seed: int = 0) -> tuple[list[bytes], list]:
    rng = random.Random(seed)
    readings = []
    for r in generate(days=max(0.05, n / 40_000), seed=seed):
        readings.append(r)
        if len(readings) == n:
            break
    payloads = []
    for i, r in enumerate(readings):
        if rng.random() < 0.01:
            payloads.append(rng.choice(INVALID))
        elif i % 2:
            payloads.append(encode(r))
        else:
            payloads.append(json.dumps(r.to_payload()).encode())  # the devices' spaced layout
    return payloads, readings


def measure(fn, items, repeat: int) -> tuple[float, float]:
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn(items)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return len(items) / best_wall, len(items) / best_cpu


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    payloads, readings = payload_mix(args.n)
    invalid = sum(1 for p in payloads if p in INVALID)
    print(
        f"payloads: {len(payloads):,} ({invalid:,} invalid), mean {sum(map(len, payloads)) / len(payloads):.0f} bytes"
    )
    for name, fn, items in (
        ("decode+validate", decode_all, payloads),
        ("encode", encode_all, readings),
        ("csv format_row", format_all, readings),
    ):
        wall, cpu = measure(fn, items, args.repeat)
        print(
            f"{name:>16}: {wall:>10,.0f} readings/s (wall)  {cpu:>10,.0f} readings/s (CPU, one core)"
        )


if __name__ == "__main__":
    main()

"""How long an operator's promotion takes to reach a running processor's /metrics.

Starts a moto server and one ``iotcast process`` (as the tests do), feeds a few hundred
readings, then issues ``--rounds`` promotions (alternating two models on one device) through
the same code as ``iotcast models promote`` and times, for each, (a) until the processor's
acknowledgement is in S3 and (b) until ``iotcast_champion_info`` shows the new champion.
Prints the figures; asserts nothing.

    .venv/bin/python bench/operator_promotion.py --rounds 10
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iotcast.stack import start_moto  # noqa: E402
from stream.checkpoint import CheckpointStore  # noqa: E402
from stream.control import Command, ControlLog  # noqa: E402
from telemetry.generate import generate  # noqa: E402
from tests import support  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    moto = start_moto(work)
    proc = None
    try:
        settings = support.settings_on(moto.url)
        support.create_resources(settings, 1)
        readings = list(itertools.islice(generate(days=1, seed=1), 600))
        support.put_records(settings, support.items_of(readings))
        flags = support.processor_flags(
            "persistence,rolling_mean,linear", session_timeout=None, heartbeat=None
        )
        proc = support.start_processor(settings, work, *flags)
        support.wait_for(
            lambda: sum(support.device_samples(settings).values()) >= 590,
            120,
            "the readings checkpointed",
        )
        device = readings[0].device
        store = CheckpointStore(settings.client("s3"), settings.bucket, settings.app)
        log = ControlLog(store)
        acked, visible = [], []
        for i in range(args.rounds):
            model = ("linear", "rolling_mean")[i % 2]
            command = Command.new("promote", [device], model=model, reason="bench", by="bench")
            t0 = time.monotonic()
            log.issue(command)
            label = f'device="{device}",model="{model}"'
            seen_ack = seen_metric = None
            while seen_ack is None or seen_metric is None:
                now = time.monotonic() - t0
                if seen_ack is None and any(
                    a["outcome"] == "applied" for a in log.acks([command]).values()
                ):
                    seen_ack = now
                if (
                    seen_metric is None
                    and support.metric_values(support.scrape(proc), "iotcast_champion_info").get(
                        label
                    )
                    == 1.0
                ):
                    seen_metric = now
                if now > 30:
                    raise SystemExit(f"round {i}: not applied within 30 s")
                time.sleep(0.05)
            acked.append(seen_ack)
            visible.append(seen_metric)
        for name, xs in (("acknowledged in S3", acked), ("champion in /metrics", visible)):
            print(
                f"{name:22s} median {statistics.median(xs):.2f} s  max {max(xs):.2f} s  "
                f"(n={len(xs)}, control poll interval 2 s)"
            )
    finally:
        if proc is not None:
            proc.stop()
        moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

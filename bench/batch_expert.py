"""Accuracy of the served forecast with the batch expert (issue 28), offline, per series and horizon.

Runs the prequential evaluation (the processor's default model set) with
:class:`online_models.batch_served.BatchServed` beside it: the batch expert retrained
every 7 days of stream time on all the past, weighed online against the served
forecast. Prints one Markdown row per device and horizon, on the forecasts made once a
batch model existed: the three online baselines (persistence, rolling mean, seasonal
naive), today's served, the batch model alone, served with the batch expert, and the two
bars (served+batch vs served; vs batch alone).

``--processor`` adds what the processor started with ``--batch-expert`` serves: a second
run with its model set (``batch_expert`` and ``batch_shadow`` added), where each
retraining becomes the active version at once (no shadow: the shadow only delays it),
and the served forecast is the device's champion weighed with the batch expert, as in
the processor. Its column ("processor") is on the same forecasts.

    .venv/bin/python bench/batch_expert.py FILE.csv --horizon 3600 --horizon 21600 [--scope device]
    .venv/bin/python bench/batch_expert.py --generate 14 --horizon 900 --horizon 3600
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the job's CPU is what is measured

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from online_models.baselines import ONLINE_BASELINES  # noqa: E402
from online_models.batch_live import LIVE, MODELS  # noqa: E402
from online_models.batch_served import BatchServed  # noqa: E402
from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from online_models.evaluate import prequential  # noqa: E402


class LiveServed(BatchServed):
    """:class:`BatchServed` whose every retraining is the processor's active version at once."""

    def _train(self, who, examples, ts):  # type: ignore[no-untyped-def]
        super()._train(who, examples, ts)
        if who in self.experts:
            LIVE.set("active", len(self.trainings), self.experts[who], frozenset(self.horizons))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?")
    ap.add_argument("--generate", type=float, metavar="DAYS", help="a generated series instead")
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--horizon", type=int, action="append", required=True)
    ap.add_argument("--scope", choices=("global", "device"), default="global")
    ap.add_argument("--every-days", type=float, default=7.0)
    ap.add_argument("--name", default=None)
    ap.add_argument(
        "--processor",
        action="store_true",
        help="add the processor's served forecast with --batch-expert",
    )
    a = ap.parse_args()
    if a.generate:
        from telemetry.generate import generate

        readings = list(generate(days=a.generate, seed=1, devices=a.devices))
        name = a.name or f"generated {a.generate:g} days"
    else:
        from telemetry.csvfile import read_csv

        readings = list(read_csv(a.csv))
        name = a.name or Path(a.csv).stem
    task = TaskConfig(horizons=tuple(a.horizon))
    bs = BatchServed(task.horizons, every_s=a.every_days * 86_400, scope=a.scope)
    cpu, wall = time.process_time(), time.perf_counter()
    res = prequential(readings, load_catalog(), task, references=False, batch_expert=bs)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    live: dict = {}
    if a.processor:
        ls = LiveServed(task.horizons, every_s=a.every_days * 86_400, scope=a.scope)
        models = [*load_catalog().select("default").names, *MODELS]
        prequential(
            readings, load_catalog(), task, models=models, references=False, batch_expert=ls
        )
        live = ls.figures()
        LIVE.set("active", None, None)
    train_cpu = sum(t.cpu_s for t in bs.trainings)
    print(
        f"# {name}: {res.rows:,} readings, {len(bs.trainings)} trainings "
        f"({train_cpu:.1f} CPU-s, examples {[t.examples for t in bs.trainings]}), "
        f"run {cpu:.1f} CPU-s / {wall:.1f} s wall, load {Path('/proc/loadavg').read_text().split()[0]}"
    )
    print(
        "| series | device | horizon | n | persistence | rolling mean | seasonal naive | served "
        "| batch | served+batch | vs served | vs batch |"
        + (" processor (n) | vs served | vs batch |" if live else "")
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if live else ""))
    for (device, h), f in bs.figures().items():
        mae = {k: f[k]["mae"] for k in f}
        vs_served = 100 * (1 - mae["served+batch"] / mae["served"])
        vs_batch = 100 * (1 - mae["served+batch"] / mae["batch"])
        baselines = " | ".join(
            "—" if mae.get(b) is None else f"{mae[b]:.3f}" for b in ONLINE_BASELINES
        )
        row = (
            f"| {name} | {device} | {h} | {f['served']['n']:,} | {baselines} "
            f"| {mae['served']:.3f} | {mae['batch']:.3f} | {mae['served+batch']:.3f} "
            f"| {vs_served:+.1f} % | {vs_batch:+.1f} % |"
        )
        p = live.get((device, h), {}).get("served")
        if p and p["mae"]:
            row += (
                f" {p['mae']:.3f} ({p['n']:,}) | {100 * (1 - p['mae'] / mae['served']):+.1f} % "
                f"| {100 * (1 - p['mae'] / mae['batch']):+.1f} % |"
            )
        print(row)
    for device in sorted(res.devices):
        for h in task.horizons:
            st = res.figure(device, "served", h)
            print(f"#   whole run, {device} h={h}: served MAE {st['mae']:.3f} over {st['n']:,}")


if __name__ == "__main__":
    main()

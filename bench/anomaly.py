"""The anomaly watch over a recorded file: per planted fault kind the delay from the fault's
start to the reading whose verdict raised its event, CPU per ``Watch.observe`` and the
pickled size of each device's watch; optionally the same for another version of
``online_models/anomaly.py`` in the same run. Prints figures; not a test.

The served nowcast and its interval that each reading is judged by are those of
``iotcast evaluate --task nowcast`` (the prequential evaluation, horizon 0, whose model
sets run the watch and hold back what it distrusts, as the processor's do), recorded once
and replayed through each watch, so the versions compare on the very same inputs.

    .venv/bin/python -m telemetry.plant --days 7 --seed 1 --out planted.csv --windows planted.json
    .venv/bin/python bench/anomaly.py --csv planted.csv --windows planted.json
    git show HEAD:online_models/anomaly.py > /tmp/anomaly_before.py
    .venv/bin/python bench/anomaly.py --csv planted.csv --windows planted.json \\
        --compare /tmp/anomaly_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import online_models.evaluate as evaluate  # noqa: E402
from online_models import anomaly  # noqa: E402
from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from online_models.report.anomalies import CATCHES, load_faults  # noqa: E402
from telemetry.csvfile import read_csv  # noqa: E402

Input = tuple[str, float, float, float | None, tuple[float, float] | None, dict]


def record(csv: str) -> list[Input]:
    """What the device's watch is given for each reading, in order, as ``iotcast evaluate``
    (and the processor) run it: inside the model set, holding back what it distrusts."""
    out: list[Input] = []
    real = anomaly.Watch.observe

    def spy(self, ts, value, nowcast, band, gases=None):  # type: ignore[no-untyped-def]
        out.append((self.device, ts, value, nowcast, band, dict(gases or {})))
        return real(self, ts, value, nowcast, band, gases)

    anomaly.Watch.observe = spy  # type: ignore[method-assign]
    try:
        evaluate.prequential(read_csv(csv), load_catalog(), TaskConfig(horizons=(0,)))
    finally:
        anomaly.Watch.observe = real  # type: ignore[method-assign]
    return out


def replay(module: ModuleType, inputs: list[Input], faults: list, label: str) -> None:
    watches: dict = {}
    raised: list = []
    cpu = time.process_time()
    for device, ts, value, nowcast, band, gases in inputs:
        w = watches.get(device)
        if w is None:
            w = watches[device] = module.Watch(device)
        verdict = w.observe(ts, value, nowcast, band, gases)
        if verdict.events:
            raised.append((ts, verdict.events))
    cpu = time.process_time() - cpu
    sizes = sorted(len(pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL)) for w in watches.values())
    print(f"{label}: {cpu / len(inputs) * 1e6:.2f} µs CPU per observe over {len(inputs):,} "
          f"readings; pickled watch {sizes[0]}-{sizes[-1]} bytes")  # fmt: skip
    delays: dict[str, list[float | None]] = {}
    for device, kind, start, end in faults:
        at = [
            ts
            for ts, events in raised
            for a in events
            if a.device == device
            and a.kind == CATCHES[kind]
            and a.start_ts <= end + 60.0
            and (a.start_ts if a.end_ts is None else a.end_ts) >= start - 60.0
        ]
        delays.setdefault(kind, []).append(min(at) - start if at else None)
    for kind, ds in delays.items():
        got = [d for d in ds if d is not None]
        mean = f"{sum(got) / len(got):.0f}" if got else "-"
        worst = f"{max(got):.0f}" if got else "-"
        print(f"  {kind:9s} raised for {len(got)} of {len(ds)}; seconds from the fault's start "
              f"to the reading that raised it: mean {mean}, max {worst}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--windows", help="a planted-faults windows file (telemetry.plant)")
    ap.add_argument("--compare", help="another online_models/anomaly.py to replay first")
    a = ap.parse_args()
    inputs = record(a.csv)
    faults = load_faults(a.windows) if a.windows else []
    import online_models.anomaly as current

    versions = [("current", current)]
    if a.compare:
        spec = importlib.util.spec_from_file_location("anomaly_compared", a.compare)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        sys.modules["anomaly_compared"] = other
        spec.loader.exec_module(other)
        versions.insert(0, (a.compare, other))
    for label, module in versions + versions:  # twice each, interleaved: CPU figures settle
        replay(module, inputs, faults, label)


if __name__ == "__main__":
    main()

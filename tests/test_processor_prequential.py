"""Stream and offline agree: the processor's MAE in /metrics equals the offline evaluation's.

A generated day goes into Kinesis (kinesalite: a day of readings through
moto's PutRecords alone would take minutes); the processor consumes it;
its Prometheus exposition must give, per watched device, model and horizon,
the MAE that :func:`online_models.evaluate.prequential` (what ``iotcast
evaluate`` runs) computes over the same readings; and the fleet's error
histogram, per model and horizon, the score-weighted mean of the devices' MAEs:
the fleet's mean served error is the mean of the per-device figures.
"""

from __future__ import annotations

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.evaluate import prequential
from telemetry.generate import generate
from tests import support

MODELS = "persistence,rolling_mean,snarimax"
HORIZONS = (0, 60, 900)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_stream_mae_in_prometheus_equals_offline_prequential_mae(settings, tmp_path):
    support.create_resources(settings, 2)
    readings = list(generate(days=1, seed=5))
    support.put_records(settings, support.items_of(readings))
    devices = sorted({r.device for r in readings})
    flags = support.processor_flags(
        MODELS, HORIZONS, checkpoint_seconds=5, session_timeout=None, heartbeat=None
    )
    flags += ("--watch", ",".join(devices))
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        offline = prequential(
            readings, load_catalog(), TaskConfig(horizons=HORIZONS), models=MODELS, references=False
        )
        learned = sum(dm.n_learned for dm in offline.devices.values())
        pairs = offline.pairs()
        assert pairs and learned > 20_000

        def done() -> bool:
            return support.metric_sum(proc, "iotcast_readings_learned_total") >= learned

        support.wait_for(done, 600, "the processor to consume the day")

        def mismatches() -> list[tuple]:
            exposed = _maes(proc)
            out = []
            for device, model, horizon in pairs:
                want = offline.figure(device, model, horizon)["mae"]
                got = exposed.get((device, model, str(horizon)))
                if want is not None and got != pytest.approx(want, rel=1e-12, abs=1e-15):
                    out.append((device, model, horizon, got, want))
            return out

        # The gauges are refreshed from the models' accumulators (at most every second per
        # device, and whenever the stream is idle): once drained they must equal offline.
        try:
            support.wait_for(
                lambda: not mismatches(), 30, "the exposed MAE to equal the offline MAE"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {mismatches()}") from None
        compared = sum(1 for d, m_, h in pairs if offline.figure(d, m_, h)["mae"] is not None)
        fleet = _fleet_maes(proc)

    assert compared >= 3 * len(MODELS.split(","))
    for model, horizon in {(m_, h) for _, m_, h in pairs}:
        figures = [offline.figure(d, model, horizon) for d in devices]
        n = sum(f["n"] for f in figures)
        if not n:
            continue
        want = sum(f["mae"] * f["n"] for f in figures if f["n"]) / n
        assert fleet[(model, str(horizon))] == pytest.approx((want, n), rel=1e-9), (model, horizon)
    assert ("served", "900") in fleet


def _fleet_maes(proc) -> dict[tuple[str, str], tuple[float, float]]:
    """(model, horizon) -> (fleet MAE, scores) from the error histogram's _sum and _count."""
    text = support.scrape(proc)
    sums = support.metric_values(text, "iotcast_error_celsius_sum")
    counts = support.metric_values(text, "iotcast_error_celsius_count")
    out = {}
    for labels, total in sums.items():
        parts = dict(p.split("=", 1) for p in labels.split(","))
        key = (parts["model"].strip('"'), parts["horizon"].strip('"'))
        out[key] = (total / counts[labels], counts[labels])
    return out


def _maes(proc) -> dict[tuple[str, str, str], float]:
    out = {}
    for labels, value in support.metric_values(support.scrape(proc), "iotcast_mae_celsius").items():
        parts = dict(p.split("=", 1) for p in labels.split(","))
        out[
            (parts["device"].strip('"'), parts["model"].strip('"'), parts["horizon"].strip('"'))
        ] = value
    return out

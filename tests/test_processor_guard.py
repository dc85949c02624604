"""A diverging model cannot take a shard down: the processor resets it, goes on, learns every
reading exactly once, shows the resets in /metrics (by model) and in the device's events.

Kinesis is kinesalite, S3 and DynamoDB the moto server. The model set is the default one plus
a River linear regression whose SGD learning rate is far too high for unscaled features (it
diverges within a few readings, the way SNARIMAX and Holt-Winters did on hourly series before
the guard): a catalog file, no code.
"""

from __future__ import annotations

import math

import pytest

from online_models.catalog import BUILTIN, load_catalog
from online_models.config import TaskConfig
from stream.events import read_events
from telemetry.generate import generate
from telemetry.reading import Reading, encode
from tests.support import (
    create_bucket,
    create_stream,
    device_samples,
    load_models,
    metric_values,
    put_records,
    reference,
    same_predictions,
    scrape,
    start_processor,
    wait_for,
)

WILD = """
[models.wild_linear]
class = "river.linear_model.LinearRegression"
kind = "regressor"
default = true
params = { optimizer = { class = "river.optim.SGD", params = { lr = 0.5 } }, intercept_lr = 0.5 }
description = "unscaled SGD, learning rate 0.5: diverges (the guard's test)"
"""
HORIZONS = (0, 3600)
HOURLY = "aa:bb:cc:00:00:07"


def hourly_weather(n: int) -> list[Reading]:
    """An outdoor-like hourly series: a daily cycle, a slow drift and a cold front."""
    out = []
    for i in range(n):
        t = 1_609_459_200.0 + 3600 * i
        temp = 5 + 6 * math.sin(2 * math.pi * (i % 24 - 9) / 24) + 3 * math.sin(i / 170)
        temp -= 12 if 300 <= i < 340 else 0
        out.append(Reading(t, HOURLY, 0.005, 70.0, 6 <= i % 24 < 19, 0.0076, False, 0.0204, temp))
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_diverging_model_is_reset_and_the_shard_goes_on(settings, tmp_path):
    models_file = tmp_path / "models.toml"
    models_file.write_text(BUILTIN.read_text() + WILD)
    catalog = load_catalog(models_file)
    create_stream(settings, shards=1)
    create_bucket(settings)
    stream = sorted(
        hourly_weather(600) + list(generate(days=0.08, seed=5, devices=1)), key=lambda r: r.ts
    )
    readings, probe = stream[:-60], stream[-60:]
    put_records(settings, [(encode(r), r.device) for r in readings])
    want = reference(readings, catalog, TaskConfig(horizons=HORIZONS), "default")
    assert want[HOURLY].n_resets > 10  # the reference diverges too: the test tests something
    proc = start_processor(
        settings, tmp_path, "--models-file", str(models_file),
        "--horizons", ",".join(map(str, HORIZONS)), "--predictions", "none",
        "--checkpoint-seconds", "1",
    )  # fmt: skip
    try:
        counts = {d: dm.n_taken for d, dm in want.items()}
        wait_for(lambda: device_samples(settings) == counts, 240, f"{counts} learned")
        assert proc.alive()
        resets = metric_values(scrape(proc), "iotcast_model_resets_total")
        wild = {k: v for k, v in resets.items() if 'model="wild_linear"' in k}
        assert sum(wild.values()) == want[HOURLY].n_resets + sum(
            dm.n_resets for d, dm in want.items() if d != HOURLY
        ), resets
        assert any('horizon="3600"' in k for k in wild)
        assert all(('model="wild_linear"' in k) for k in resets)  # no other model was reset
    finally:
        proc.stop()
    # Which device: its events, written to S3 with the checkpoints (the last one at the stop).
    events = read_events(settings.client("s3"), settings.bucket, settings.app)
    resets_of = [e for e in events if e["event"] == "model_reset"]
    assert resets_of and all(e["model"] == "wild_linear" for e in resets_of)
    assert any(e["device"] == HOURLY and e["horizon"] == 3600 for e in resets_of)
    got = load_models(settings)
    for device, dm in want.items():  # exactly once: the same state as one uninterrupted pass
        assert got[device].n_learned == dm.n_learned
        assert got[device].n_resets == dm.n_resets
        assert same_predictions(got[device], dm, [r for r in probe if r.device == device])

"""A mixed fleet on kinesalite: any subset of sensors, values dropped and clipped, nothing good lost.

The fleet (:mod:`tests.mixed_fleet`): full devices, temperature-and-humidity and
temperature-only devices, a humidity sensor that stops halfway, humidity at saturation,
a declared extra ``pressure``, a device that never reports the target, readings lacking
the target and payloads with nothing usable, put straight into Kinesis as the bridge
would (each payload as sent: the bridge forwards a payload whose values it dropped or
clipped as it came).
"""

from __future__ import annotations

import base64

import orjson

from tests import mixed_fleet, support

MODELS = "persistence,linear"
OUTCOMES = ("learned", "held", "duplicate", "late", "glitch", "no_target")


def dead_letters(settings) -> list[dict]:
    s3 = settings.client("s3")
    out = []
    listing = s3.list_objects_v2(Bucket=settings.bucket, Prefix="dead-letter/")
    for obj in listing.get("Contents", []):
        body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
        out += [orjson.loads(line) for line in body.splitlines() if line]
    return out


def outcomes(text: str) -> dict[str, float]:
    """Decoded records by outcome, and the poison records, from one /metrics page."""
    figures = {
        kind: sum(support.metric_values(text, f"iotcast_readings_{kind}_total").values())
        for kind in OUTCOMES
    }
    figures["poison"] = sum(support.metric_values(text, "iotcast_records_poison_total").values())
    return figures


def check_processor(settings, proc, fleet: mixed_fleet.Fleet, records: int, poison: int) -> str:
    """Every record accounted for exactly once, the models of exactly the devices that report
    the target, the same per-field counts; returns the last /metrics page."""
    want = dict(fleet.learned)
    support.wait_for(
        lambda: sum(outcomes(support.scrape(proc)).values()) >= records,
        180,
        f"the processor to account for {records} records",
    )
    support.wait_checkpointed(settings, want, 120, "every device with the target checkpointed")
    support.wait_for(lambda: len(dead_letters(settings)) >= poison, 60, "the dead letters")
    text = support.scrape(proc)
    figures = outcomes(text)
    # Exactly once: each record has one outcome, and only readings with the target are learned.
    assert sum(figures.values()) == records, figures
    assert figures["learned"] == sum(want.values()), figures
    assert figures["no_target"] == fleet.no_target, figures
    assert figures["poison"] == poison, figures
    poisoned = support.metric_values(text, "iotcast_records_poison_total")
    assert all('reason="no_sensor"' in k for k, v in poisoned.items() if v), poisoned
    assert figures["duplicate"] == figures["late"] == figures["glitch"] == 0, figures
    # What validation dropped or clipped, by field and reason.
    assert support.metric_values(text, "iotcast_values_dropped_total") == fleet.metric("dropped")
    assert support.metric_values(text, "iotcast_values_clipped_total") == fleet.metric("clipped")
    # A device that never reported the target has no model set and no series.
    assert '"h-only"' not in text
    assert support.metric_values(text, "iotcast_devices_held") == {"": len(want)}
    return text


def check_models(settings, fleet: mixed_fleet.Fleet) -> None:
    models = support.load_models(settings)
    assert {d: m.n_learned for d, m in models.items()} == dict(fleet.learned)
    assert models["th-a"].n_no_target == mixed_fleet.N - fleet.learned["th-a"]
    assert any(mixed_fleet.EXTRA in k for k in models["pres"].feature_keys)  # declared
    assert not any("wind" in k for k in models["pres"].feature_keys)  # not declared


def check_predictions(settings) -> None:
    records = support.wait_for(
        lambda: (
            (r := support.stream_outputs(settings, settings.predictions_stream))
            and {p["device"] for p in r if p["kind"] == "prediction"}
            == set(mixed_fleet.TEMP_DEVICES)
            and r
        ),
        60,
        "forecasts of every device that reports the target",
    )
    by_device = {
        (p["device"], f["horizon"])
        for p in records
        if p["kind"] == "prediction"
        for f in p["forecasts"]
    }
    for device in mixed_fleet.TEMP_DEVICES:
        assert {(device, 0), (device, 60)} <= by_device, device


def test_mixed_fleet_is_learned_exactly_once_with_every_value_counted(settings, tmp_path):
    fleet = mixed_fleet.build()
    support.create_resources(settings, 2)
    support.create_stream(settings, shards=1, name=settings.predictions_stream)
    support.put_records(settings, [(payload, device) for device, payload in fleet.messages])
    flags = support.processor_flags(MODELS, (0, 60), predictions="champion")
    with support.stops_cleanly(
        support.start_processor(settings, tmp_path, *flags, "--extra-features", mixed_fleet.EXTRA)
    ) as proc:
        check_processor(settings, proc, fleet, fleet.records, poison=len(fleet.unusable))
        check_predictions(settings)
    # Nothing is dead-lettered but the payloads with nothing usable, reason no_sensor.
    letters = dead_letters(settings)
    assert sorted(base64.b64decode(e["payload_b64"]) for e in letters) == sorted(fleet.unusable)
    assert {e["reason"] for e in letters} == {"no_sensor"}
    check_models(settings, fleet)

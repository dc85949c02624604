"""The mixed fleet through MQTT: mosquitto -> ``iotcast bridge`` -> kinesalite -> ``iotcast process``.

Nothing is lost: every payload with a usable value is forwarded and accounted for by the
processor exactly once; only the payloads with nothing usable are dead-lettered (by the
bridge, reason ``no_sensor``); the bridge and the processor count the same dropped and
clipped values; and a payload whose values validation dropped or clipped is forwarded as
it was sent (its raw values stay recoverable from the telemetry stream), the others
re-encoded compactly.
"""

from __future__ import annotations

import base64

from telemetry.reading import decode_payload, encode, topic_for
from tests import mixed_fleet, support
from tests.test_bridge_e2e import StreamReader, dead_letters, publish
from tests.test_processor_mixed_fleet import (
    MODELS,
    check_models,
    check_predictions,
    check_processor,
)


def test_mixed_fleet_through_the_bridge_loses_nothing_and_keeps_raw_payloads(
    settings_mqtt, mosquitto, tmp_path
):
    settings = settings_mqtt
    fleet = mixed_fleet.build()
    support.create_resources(settings, 2)
    support.create_stream(settings, shards=1, name=settings.predictions_stream)
    bridge = support.start_bridge(
        settings, tmp_path, ready=lambda p: support.subscriptions(p.log_path) > 0
    )
    flags = support.processor_flags(MODELS, (0, 60), predictions="champion")
    processor = support.start_processor(
        settings, tmp_path, *flags, "--extra-features", mixed_fleet.EXTRA
    )
    forwarded = fleet.records - len(fleet.unusable)
    with support.stops_cleanly(bridge), support.stops_cleanly(processor):
        messages = [(topic_for(device), payload) for device, payload in fleet.messages]
        assert publish(mosquitto.port, messages) == fleet.records
        support.wait_for(
            lambda: (
                support.metric_sum(bridge, "iotcast_bridge_readings_forwarded_total") >= forwarded
            ),
            60,
            f"the bridge to forward {forwarded} readings",
        )
        text = support.scrape(bridge)
        assert support.metric_values(text, "iotcast_bridge_readings_forwarded_total") == {
            "": forwarded
        }
        assert support.metric_values(text, "iotcast_bridge_dead_letters_total") == {
            'reason="no_sensor"': len(fleet.unusable)
        }
        assert support.metric_values(text, "iotcast_bridge_values_dropped_total") == fleet.metric(
            "dropped"
        )
        assert support.metric_values(text, "iotcast_bridge_values_clipped_total") == fleet.metric(
            "clipped"
        )
        # The processor sees what the bridge forwarded, and counts the same values.
        check_processor(settings, processor, fleet, forwarded, poison=0)
        check_predictions(settings)
    letters = dead_letters(settings.client("s3"), settings.bucket)
    assert sorted(base64.b64decode(e["payload_b64"]) for e in letters) == sorted(fleet.unusable)
    assert {(e["reason"], e["source"]) for e in letters} == {("no_sensor", "bridge")}
    check_models(settings, fleet)

    # In the stream: each usable payload once, as sent when validation changed a value.
    reader = StreamReader(settings.client("kinesis"), settings.stream)
    reader.poll()
    records = reader.messages()
    assert len(records) == forwarded
    sent = [p for _, p in fleet.messages if p not in set(fleet.unusable)]
    expected = [p if p in fleet.noted else encode(decode_payload(p)) for p in sent]
    assert sorted(records) == sorted(expected)
    clipped = [p for p in fleet.noted if b"100.5" in p or b"102.0" in p]
    assert clipped and set(clipped) <= set(records)
    assert any(b'"pressure":' in r and b'"wind":' in r for r in records)  # extras forwarded

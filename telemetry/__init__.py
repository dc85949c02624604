"""The data contract of iotcast and its sources: the ground floor.

What every part agrees on: the :class:`~telemetry.reading.Reading` and its
wire formats (:mod:`telemetry.reading`), the public CSV format
(:mod:`telemetry.csvfile`), the calibrated synthetic generator
(:mod:`telemetry.generate`), where the MQTT broker is (:mod:`telemetry.broker`)
and the replay of readings over MQTT (:mod:`telemetry.replay`).

May import: nothing of iotcast's other packages (floor 1; ``tests/test_layout.py``).
"""

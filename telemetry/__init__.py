"""The shared data contract of iotcast and its command line.

Holds what every part agrees on: the `Reading` type and its wire formats
(:mod:`telemetry.reading`), the public CSV format (:mod:`telemetry.csvfile`),
the calibrated synthetic generator (:mod:`telemetry.generate`), the MQTT
replay (:mod:`telemetry.replay`), the settings object (:mod:`telemetry.config`),
launchers for the local stack (:mod:`telemetry.stack`) and the CLI
(:mod:`telemetry.cli`).
"""

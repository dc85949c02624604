"""The bridge: MQTT telemetry into Kinesis, at least once, nothing lost.

Modules: ``mqtt`` (persistent QoS 1 session, manual acks), ``buffer`` (bounded,
backpressure), ``batcher`` (per-shard lanes), ``kinesis`` (PutRecords with
partial-failure retries), ``deadletter`` (S3), ``retry`` (bounded backoff),
``health`` (/metrics, /healthz), ``service`` (the wiring; :class:`BridgeTarget`
says what it talks to).  Its command line is ``iotcast bridge``
(:mod:`iotcast.commands.bridge`).

May import: ``telemetry``, ``online_models``, ``monitoring`` (floor 3); never
``stream`` nor the shell (``tests/test_layout.py``).
"""

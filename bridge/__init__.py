"""The bridge: MQTT telemetry into Kinesis, at least once, nothing lost.

Modules: ``mqtt`` (persistent QoS 1 session in a shared subscription, manual
acks), ``buffer`` (bounded, backpressure; a message settled when all its readings
are), ``batcher`` (per-shard lanes), ``forward`` (readings packed into one record
per shard, placed on the shard that owns their device), ``kinesis`` (PutRecords
with partial-failure retries, the shard map), ``deadletter`` (S3), ``retry`` (bounded backoff),
``health`` (/metrics, /healthz), ``service`` (the wiring; :class:`BridgeTarget`
says what it talks to).  Its command line is ``iotcast bridge``
(:mod:`iotcast.commands.bridge`).

May import: ``telemetry``, ``online_models``, ``monitoring`` (floor 3); never
``stream`` nor the shell (``tests/test_layout.py``).
"""

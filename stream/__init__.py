"""The stream processor, and only it: one process consuming the telemetry stream.

Modules: ``consumer`` (Kinesis through async-kinesis, shard leases in
DynamoDB), ``state`` (per-shard and per-device state), ``core`` (one record
through its parts: ``gate``, decoding and dead letters; ``devices``, the device
registry; the device's models; ``fleet`` and ``watch``, the metrics; ``records``,
the output records), ``checkpoint`` (the S3
manifest protocol), ``registry`` (model versions in S3), ``control`` (the
operator command channel a running processor obeys), ``output`` (prediction
records, dead-letter lines), ``aws`` (what it uses of the boto3 clients, as
types) and ``runner`` (:class:`StreamProcessor`, the process that ties them
together).  Its command line is ``iotcast process``
(:mod:`iotcast.commands.process`); the operator commands that read its S3
and DynamoDB state are the shell's (``iotcast status``, ``iotcast models``).

May import: ``telemetry``, ``online_models``, ``monitoring`` (floor 3); never
``bridge`` nor the shell (``tests/test_layout.py``).
"""

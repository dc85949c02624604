"""The models: features, the catalog of River pipelines and baselines, guarded model
calls, scoring, selection, drift, and the offline evaluation with its report.

The stream processor and ``iotcast evaluate`` run the very same
:class:`~online_models.device.DeviceModels`, so the figures of both agree.

May import: ``telemetry`` only (floor 2; ``tests/test_layout.py``).
"""

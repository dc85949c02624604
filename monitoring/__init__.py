"""Monitoring: every ``iotcast_*`` metric, declared once (:mod:`monitoring.metrics`), the
Prometheus configuration and alert rules, the Grafana dashboards and alerting,
and the upload to Grafana (:mod:`monitoring.grafana`; the command line is
``iotcast grafana push``).

May import: ``telemetry`` only (floor 2; ``tests/test_layout.py``).
"""

"""Monitoring: every ``iotcast_*`` metric (:mod:`monitoring.metrics`), the
Prometheus configuration and rules, and the Grafana dashboards."""

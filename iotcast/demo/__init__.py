"""``iotcast demo``: the whole local stack, a replay of generated readings, a live view,
a clean stop and a summary whose figures are checked against Prometheus, the
checkpoint manifests and the offline evaluation.  Part of the shell."""

"""``iotcast demo``: the whole local stack, a replay of generated readings, a live view,
a clean stop and a summary whose figures are checked against Prometheus, the
checkpoint manifests and the offline evaluation.

Modules: ``command`` (the flags, refusals and exit codes), ``stack`` (ports,
components, the stack's processes), ``run`` (the run: readings, replay,
watch, shutdown), ``summary`` (the summary, its checks and its printing).
Part of the shell: may import every package.
"""

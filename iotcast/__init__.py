"""The shell of iotcast: the top floor, the only package that imports every other one.

Holds what a person runs and what wires the floors together: the command
line (:mod:`iotcast.cli`, one module per subcommand in :mod:`iotcast.commands`),
the settings read once at that edge (:mod:`iotcast.settings`), the local
stack's processes and their supervision (:mod:`iotcast.stack`,
:mod:`iotcast.supervisor`), the demo (:mod:`iotcast.demo`), the terminal's
live view (:mod:`iotcast.live`) and the operator commands (``status``,
``models``).

May import: ``telemetry``, ``online_models``, ``monitoring``, ``bridge``,
``stream`` (floor 4).  Nothing below imports it (``tests/test_layout.py``).
"""

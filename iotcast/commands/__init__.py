"""The subcommands of ``iotcast``, one module each (``HELP``, ``add_arguments``, ``run``).

Each reads its flags and the settings, builds the plain values the floor it
drives takes (``Settings.bridge_target()``, ``Settings.processor_target()``,
``Settings.mqtt``) and runs it.  Part of the shell: may import every package.
"""

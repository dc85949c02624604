"""The iotcast widget category of Orange's tool box (the ``orange.widgets`` entry point).

Orange reads the category's name, icon and colour from this module.
"""

from iotcast.orange.i18n import tr

NAME = "iotcast"
DESCRIPTION = tr("Sensor telemetry and online temperature forecasts (iotcast).")
ICON = "icons/category.svg"
BACKGROUND = "#f6c65b"
PRIORITY = 50

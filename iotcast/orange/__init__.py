"""iotcast inside Orange: drag-and-drop workflows over sensor data and forecasts.

An Orange add-on (an optional extra: ``pip install iotcast[orange]``) whose widgets
speak Orange's :class:`~Orange.data.Table`:

- **Telemetry** (:mod:`~iotcast.orange.widgets.owtelemetry`): readings from a CSV file of
  the public format or a generated sample, as a table with a time variable, the device as
  a discrete variable and the sensors (:mod:`~iotcast.orange.tables`);
- **Forecast evaluation** (:mod:`~iotcast.orange.widgets.owforecast`): the prequential
  evaluation ``iotcast evaluate`` runs (:func:`online_models.analysis.analyse`), with
  Orange's progress bar and cancel; the leaderboard, every scored prediction and the
  figures by scenario as tables;
- **Fleet** (:mod:`~iotcast.orange.widgets.owfleet`): the devices, champions and rolling
  errors the processors' S3 manifests hold (:mod:`~iotcast.orange.fleet`), and a Promote
  action that runs ``iotcast models promote``.

Example workflows (``workflows/*.ows``) appear under Help > Example Workflows; widget
names and labels follow Orange's language setting, in English or Spanish
(:mod:`~iotcast.orange.i18n`).  Nothing here is imported by the rest of iotcast: the
package needs Orange only when Orange loads it.
"""

__all__: list[str] = []

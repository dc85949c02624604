"""The analysis page: sensor data and forecasts for people who are not programmers.

``iotcast ui`` serves it (http://127.0.0.1:8050 by default). A Dash app, thin over
:mod:`online_models.analysis` (the evaluation of ``iotcast evaluate`` as pandas
DataFrames), :mod:`online_models.data_summary` and the operator's commands:

- :mod:`~iotcast.ui.workspace`: files, checks, background jobs (:mod:`~iotcast.ui.jobs`);
- :mod:`~iotcast.ui.layout` and the callbacks of each section
  (:mod:`~iotcast.ui.callbacks_data`, :mod:`~iotcast.ui.callbacks_run`,
  :mod:`~iotcast.ui.callbacks_fleet`);
- :mod:`~iotcast.ui.charts`: the Plotly figures and their sentences;
- :mod:`~iotcast.ui.text`: every string, in English and Spanish;
- :mod:`~iotcast.ui.fleet`: the live fleet from S3; promote and roll back through
  ``iotcast models``.

Everything the browser loads comes from this process (Dash serves React, Plotly.js and
its components from the installed packages; the style sheet is ``assets/style.css``):
the page works with no network at all.

>>> import tempfile, pathlib
>>> from iotcast.ui.workspace import Workspace
>>> app = create_app(Workspace(folder=pathlib.Path(tempfile.mkdtemp()), measure_costs=False))
>>> app.config.serve_locally, app.title
(True, 'iotcast analysis')
"""

from __future__ import annotations

from pathlib import Path

from iotcast.ui.workspace import Workspace

__all__ = ["create_app"]

ASSETS = Path(__file__).with_name("assets")


def create_app(ws: Workspace):
    """The Dash app of the page over ``ws``."""
    from dash import Dash

    from iotcast.ui import callbacks_data, callbacks_fleet, callbacks_run
    from iotcast.ui.layout import layout

    app = Dash(
        __name__,
        title="iotcast analysis",
        assets_folder=str(ASSETS),
        serve_locally=True,
        update_title=None,
    )
    app.layout = layout(list(ws.catalog.select("default").names))
    callbacks_data.register(app, ws)
    callbacks_run.register(app, ws)
    callbacks_fleet.register(app, ws)
    return app

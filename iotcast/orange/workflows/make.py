"""Write the add-on's example workflows: build each in Orange's canvas, let the data flow,
set the views as a person would (which variable, grouped by what), and save the ``.ows``
with the widgets' own settings.  Run it again after a widget's settings change:

    QT_QPA_PLATFORM=offscreen python -m iotcast.orange.workflows.make

- ``which-model-wins-where.ows``: Telemetry → Forecast Evaluation → Box Plot (absolute
  error by model, per device) and Distributions (error by device), the leaderboard in a
  Data Table;
- ``error-by-hour.ows``: Telemetry → Forecast Evaluation → Pivot Table (mean absolute
  error by hour of day and model);
- ``look-at-a-week.ows``: Telemetry (a generated week) → Select Rows (the variable
  device) → Line Chart of the time-series add-on (temperature and humidity).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from AnyQt.QtWidgets import QApplication

from iotcast.orange.workflows.canvas import FOLDER, registry, wait_until_idle

__all__ = ["WORKFLOWS", "make"]

OW = "iotcast.orange.widgets."
TELEMETRY = OW + "owtelemetry.OWTelemetry"
EVALUATION = OW + "owforecast.OWForecastEvaluation"
BOXPLOT = "Orange.widgets.visualize.owboxplot.OWBoxPlot"
DISTRIBUTIONS = "Orange.widgets.visualize.owdistributions.OWDistributions"
TABLE = "Orange.widgets.data.owtable.OWTable"
PIVOT = "Orange.widgets.data.owpivot.OWPivot"
SELECT = "Orange.widgets.data.owselectrows.OWSelectRows"
LINECHART = "orangecontrib.timeseries.widgets.owlinechart.OWLineChart"
VARIABLE_DEVICE = "1c:bf:ce:15:ec:4d"

# name -> nodes (id, widget, title, position, settings), links (from, output, to, input)
Node = tuple[str, str, str, tuple[float, float], dict[str, object]]
Link = tuple[str, str, str, str]
DAY = {"source": 1, "days": 1.0, "seed": 1}
WORKFLOWS: dict[str, tuple[list[Node], list[Link]]] = {
    "which-model-wins-where": (
        [
            ("t", TELEMETRY, "Telemetry", (80, 200), DAY),
            ("e", EVALUATION, "Forecast Evaluation", (280, 200), {}),
            ("b", BOXPLOT, "Box Plot", (500, 100), {}),
            ("d", DISTRIBUTIONS, "Distributions", (500, 220), {}),
            ("l", TABLE, "Leaderboard", (500, 340), {}),
        ],
        [
            ("t", "Readings", "e", "Readings"),
            ("e", "Predictions", "b", "Data"),
            ("e", "Predictions", "d", "Data"),
            ("e", "Leaderboard", "l", "Data"),
        ],
    ),
    "error-by-hour": (
        [
            ("t", TELEMETRY, "Telemetry", (80, 200), DAY),
            ("e", EVALUATION, "Forecast Evaluation", (280, 200), {"horizons": [3600]}),
            ("p", PIVOT, "Pivot Table", (500, 200), {}),
        ],
        [("t", "Readings", "e", "Readings"), ("e", "Predictions", "p", "Data")],
    ),
    "look-at-a-week": (
        [
            ("t", TELEMETRY, "Telemetry", (80, 200), {"source": 1, "days": 7.0, "seed": 1}),
            ("s", SELECT, "Select Rows", (280, 200), {}),
            ("c", LINECHART, "Line Chart", (480, 200), {}),
        ],
        [("t", "Readings", "s", "Data"), ("s", "Matching Data", "c", "Time series")],
    ),
}


def _box_plot(w) -> None:
    d = w.dataset.domain
    w.attribute, w.group_var = d["abs_error"], d["model"]
    w._set_list_view_selections()
    w._variables_changed(w.apply_group_sorting)


def _distributions(w) -> None:
    d = w.data.domain
    w.var, w.cvar = d["error"], d["device"]
    w._on_var_changed()


def _pivot(w) -> None:
    from Orange.widgets.data.owpivot import Pivot

    d = w.data.domain
    w.row_feature, w.col_feature, w.val_feature = d["hour"], d["model"], d["abs_error"]
    w.sel_agg_functions = {Pivot.Mean.value}
    w._OWPivot__feature_changed()


def _select_rows(w) -> None:
    d = w.data.domain
    w.remove_all()
    w.add_row(d["device"], 0, [d["device"].values.index(VARIABLE_DEVICE) + 1])
    w.conditions_changed()
    w.commit.now()


def _line_chart(w) -> None:
    d = w.data.domain
    w.attrs = [[d["temp"]], [d["humidity"]]]
    w.is_logit = [False, False]
    w.plot_type = ["line", "line"]
    w.apply_settings()
    w.setup_plots()


SET_VIEW: dict[str, Callable[[object], None]] = {
    BOXPLOT: _box_plot,
    DISTRIBUTIONS: _distributions,
    PIVOT: _pivot,
    SELECT: _select_rows,
    LINECHART: _line_chart,
}


def make(name: str, reg=None) -> None:
    """Build, run and save one workflow (see the module docstring)."""
    from orangecanvas.scheme import SchemeNode

    nodes, links = WORKFLOWS[name]
    reg = reg or registry()
    from Orange.canvas.mainwindow import MainWindow
    from orangecanvas import config

    window = MainWindow()
    window.set_widget_registry(reg)
    window.show()
    scheme = config.workflow_constructor(parent=window)
    window.set_scheme(scheme)
    made = {}
    for key, widget, title, pos, props in nodes:
        node = SchemeNode(reg.widget(widget), title=title, position=pos, properties=dict(props))
        scheme.add_node(node)
        made[key] = node
    for src, out, dst, inp in links:
        scheme.new_link(made[src], out, made[dst], inp)
    wait_until_idle(window, timeout=900)
    for key, widget, *_ in nodes:
        if widget in SET_VIEW:
            SET_VIEW[widget](scheme.widget_manager.widget_for_node(made[key]))
            wait_until_idle(window, timeout=300)
    scheme.title = name.replace("-", " ").capitalize()
    window.save_scheme_to(scheme, str(FOLDER / f"{name}.ows"))
    window.current_document().setModified(False)
    window.close()


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(WORKFLOWS)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    reg = registry()
    for name in names:
        make(name, reg)
        print(f"wrote {FOLDER / name}.ows")
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())

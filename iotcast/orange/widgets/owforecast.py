"""Forecast evaluation: the prequential evaluation of ``iotcast evaluate`` over readings.

Input: a table of readings (the Telemetry widget's, or any table with a time variable,
``device`` and sensor columns).  Settings: the target, the horizons, the models of the
catalog (with their descriptions and measured cost per reading, as the analysis page
lists them).  The run (:mod:`iotcast.orange.evaluation`) goes on in a thread with
Orange's progress bar; Cancel stops it.  Outputs: the leaderboard, every scored
prediction and the figures by scenario; the leaderboard is also shown in the widget.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from AnyQt.QtCore import QObject, Qt, pyqtSignal
from AnyQt.QtWidgets import QCheckBox, QListWidget, QListWidgetItem, QTableWidget, QTableWidgetItem
from Orange.data import Table
from Orange.widgets import gui
from Orange.widgets.settings import Setting
from Orange.widgets.utils.concurrent import ConcurrentWidgetMixin, TaskState
from Orange.widgets.widget import Input, Msg, Output, OWWidget

from iotcast.orange.evaluation import (
    DEFAULT_HORIZONS,
    Cancelled,
    NothingUsable,
    Outputs,
    Question,
    run,
    tables,
)
from iotcast.orange.i18n import tr
from iotcast.orange.tables import TableError
from online_models.catalog import Catalog, load_catalog
from online_models.config import TARGETS

__all__ = ["OWForecastEvaluation", "measure_costs"]

HORIZON_CHOICES = (0, 60, 300, 900, 3600)
_costs: dict[str, float] = {}


def measure_costs(catalog: Catalog) -> dict[str, float]:
    """Each catalog model's CPU per reading (µs, a nowcast and a 15-minute forecast) on an
    hour of one generated device, as the analysis page measures it; once per process."""
    if not _costs:
        from online_models.analysis import analyse
        from telemetry.generate import generate

        a = analyse(
            generate(days=1 / 24, seed=3, devices=1),
            horizons=(0, 900),
            models="all",
            catalog=catalog,
        )
        _costs.update({k: v for k, v in a.result.cost_us.items() if v == v})
    return dict(_costs)


class _Costs(QObject):
    measured = pyqtSignal(dict)


def _evaluate(data: Table, q: Question, catalog: Catalog, state: TaskState) -> Outputs:
    total = max(len(data), 1)

    def progress(n: int) -> None:
        if state.is_interruption_requested():
            raise Cancelled
        state.set_progress_value(100.0 * n / total)

    return tables(run(data, q, catalog, progress))


def _horizon_label(h: int) -> str:
    return tr("nowcast") if h == 0 else (f"{h // 60} min" if h % 60 == 0 else f"{h} s")


class OWForecastEvaluation(OWWidget, ConcurrentWidgetMixin):
    name = tr("Forecast Evaluation")
    description = tr(
        "Score the online models reading by reading (predict, then learn), as iotcast evaluate does."
    )
    icon = "icons/forecast.svg"
    priority = 20
    keywords = "iotcast, forecast, evaluation, prequential, leaderboard"
    measure_costs = True  # the tests switch it off

    class Inputs:
        data = Input(tr("Readings"), Table, id="readings", default=True)

    class Outputs:
        leaderboard = Output(tr("Leaderboard"), Table, id="leaderboard", default=True)
        predictions = Output(tr("Predictions"), Table, id="predictions")
        scenarios = Output(tr("Scenarios"), Table, id="scenarios")

    class Error(OWWidget.Error):
        failed = Msg("{}")

    class Information(OWWidget.Information):
        cancelled = Msg(tr("Cancelled: press Run to start again."))

    target: str = Setting("temp")
    horizons: list[int] = Setting(list(DEFAULT_HORIZONS))
    models: list[str] = Setting([])  # empty: the catalog's default set
    references: bool = Setting(True)
    keep_predictions: bool = Setting(True)
    auto_run: bool = Setting(True)

    def __init__(self) -> None:
        OWWidget.__init__(self)
        ConcurrentWidgetMixin.__init__(self)
        self.data: Table | None = None
        self.catalog = load_catalog()
        if not self.models:
            self.models = list(self.catalog.select("default").names)
        self._build_controls()
        self.board = QTableWidget(
            self.mainArea, editTriggers=QTableWidget.EditTrigger.NoEditTriggers
        )
        self.mainArea.layout().addWidget(self.board)
        self._costs = _Costs()
        self._costs.measured.connect(self._show_costs)
        if self.measure_costs:
            signal = self._costs.measured
            threading.Thread(
                target=lambda: signal.emit(measure_costs(self.catalog)), daemon=True
            ).start()

    def _build_controls(self) -> None:
        gui.comboBox(
            self.controlArea,
            self,
            "target",
            box=tr("Target"),
            items=TARGETS,
            sendSelectedValue=True,
        )
        box = gui.widgetBox(self.controlArea, tr("Horizons"))
        self._horizon_boxes: dict[int, QCheckBox] = {}
        for h in HORIZON_CHOICES:
            check = QCheckBox(_horizon_label(h), box)
            check.setChecked(h in self.horizons)
            check.toggled.connect(self._horizons_changed)
            box.layout().addWidget(check)
            self._horizon_boxes[h] = check
        box = gui.widgetBox(self.controlArea, tr("Models"))
        self.model_list = QListWidget(box)
        box.layout().addWidget(self.model_list)
        for spec in self.catalog:
            if spec.reference and not spec.default:
                continue  # added with the references
            item = QListWidgetItem(f"{spec.name}: {spec.description}")
            item.setData(Qt.ItemDataRole.UserRole, spec.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            checked = spec.name in self.models
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.model_list.addItem(item)
        self.model_list.itemChanged.connect(self._models_changed)
        gui.checkBox(box, self, "references", tr("Add the reference models (scored, never served)"))
        gui.checkBox(box, self, "keep_predictions", tr("Output every scored prediction"))
        gui.checkBox(self.buttonsArea, self, "auto_run", tr("Run when data arrives"))
        self.run_button = gui.button(self.buttonsArea, self, tr("Run"), callback=self.run)
        gui.button(self.buttonsArea, self, tr("Cancel"), callback=self.stop)

    def _horizons_changed(self) -> None:
        self.horizons = [h for h, cb in self._horizon_boxes.items() if cb.isChecked()]

    def _models_changed(self) -> None:
        items = (self.model_list.item(i) for i in range(self.model_list.count()))
        self.models = [
            i.data(Qt.ItemDataRole.UserRole)
            for i in items
            if i.checkState() == Qt.CheckState.Checked
        ]

    def _show_costs(self, costs: dict[str, float]) -> None:
        for i in range(self.model_list.count()):
            item = self.model_list.item(i)
            name = item.data(Qt.ItemDataRole.UserRole)
            spec = self.catalog[name]
            cost = costs.get(name)
            suffix = "" if cost is None else f" ({cost:,.0f} µs {tr('per reading')})"
            item.setText(f"{name}: {spec.description}{suffix}")

    @Inputs.data
    def set_data(self, data: Table | None) -> None:
        self.cancel()
        self.data = data
        self.Error.clear()
        self.Information.clear()
        if data is not None and self.auto_run:
            self.run()
        elif data is None:
            self._send(None)

    def question(self) -> Question:
        return Question(
            target=self.target,
            horizons=tuple(sorted(self.horizons)) or DEFAULT_HORIZONS,
            models=tuple(self.models),
            references=self.references,
            predictions=self.keep_predictions,
        )

    def run(self) -> None:
        self.Error.clear()
        self.Information.clear()
        if self.data is None:
            return
        if not self.models:
            self.Error.failed(tr("Choose at least one model."))
            return
        self.start(_evaluate, self.data, self.question(), self.catalog)

    def stop(self) -> None:
        if self.task is not None:
            self.cancel()
            self.Information.cancelled()

    def on_done(self, result: Outputs) -> None:
        self._send(result)

    def on_exception(self, ex: Exception) -> None:
        if isinstance(ex, Cancelled):
            self.Information.cancelled()
            return
        if not isinstance(ex, TableError | NothingUsable | ValueError):
            raise ex
        self.Error.failed(str(ex))
        self._send(None)

    def _send(self, result: Outputs | None) -> None:
        self.Outputs.leaderboard.send(None if result is None else result.leaderboard)
        self.Outputs.predictions.send(None if result is None else result.predictions)
        self.Outputs.scenarios.send(None if result is None else result.scenarios)
        self._show_board(result)
        if result is not None:
            self._show_costs(result.analysis.result.cost_us)

    def _show_board(self, result: Outputs | None) -> None:
        self.board.clear()
        if result is None:
            self.board.setRowCount(0)
            return
        df = result.analysis.leaderboard()
        cols = ["device", "horizon", "model", "n", "mae", "rmse", "vs_persistence_pct", "best"]
        headers = [tr("Device"), tr("Horizon"), tr("Model"), tr("Scored"), "MAE", "RMSE"]
        headers += [tr("vs persistence"), tr("Best")]
        self.board.setColumnCount(len(cols))
        self.board.setHorizontalHeaderLabels(headers)
        self.board.setRowCount(len(df))
        for i, row in enumerate(df[cols].itertuples(index=False)):
            for j, value in enumerate(_cells(row)):
                item = QTableWidgetItem(value)
                if j >= 3:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.board.setItem(i, j, item)
        self.board.resizeColumnsToContents()

    def onDeleteWidget(self) -> None:
        self.shutdown()
        super().onDeleteWidget()


def _cells(row: Iterable[object]) -> list[str]:
    device, h, model, n, mae, rmse, pct, best = row
    return [
        str(device),
        _horizon_label(int(h)),  # type: ignore[call-overload]
        str(model),
        f"{n:,}",
        f"{mae:.4f}",
        f"{rmse:.4f}",
        "" if pct != pct else f"{pct:+.1f} %",
        "★" if best else "",
    ]


if __name__ == "__main__":  # pragma: no cover
    from Orange.widgets.utils.widgetpreview import WidgetPreview

    from iotcast.orange.tables import readings_table
    from telemetry.generate import generate

    WidgetPreview(OWForecastEvaluation).run(readings_table(generate(days=0.1, seed=1)))

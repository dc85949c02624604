"""Telemetry: sensor readings from a CSV file or a generated sample, as an Orange table.

The file is read by :func:`telemetry.csvfile.read_csv` (the public format, judged
reading by reading as ``iotcast evaluate`` judges it); the sample is
:func:`telemetry.generate.generate` (a day of the three calibrated devices: 49,600
readings).  Rows refused whole are counted in a warning; a file with no usable row, a
missing file or a wrong header is an error shown in the widget, and nothing is sent.

>>> from telemetry.generate import generate
>>> loaded = load_readings(generate(days=0.01, seed=1), None)
>>> len(loaded.table), loaded.devices
(510, 3)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from AnyQt.QtWidgets import QFileDialog
from Orange.data import Table
from Orange.widgets import gui
from Orange.widgets.settings import Setting
from Orange.widgets.utils.concurrent import ConcurrentWidgetMixin, TaskState
from Orange.widgets.widget import Msg, Output, OWWidget

from iotcast.orange.i18n import tr
from iotcast.orange.tables import readings_table
from online_models.config import TaskConfig
from online_models.data_summary import count_rows
from online_models.evaluate import EvalResult, nothing_usable
from telemetry.csvfile import BadRows, CsvFormatError, read_csv
from telemetry.generate import expected_rows, generate
from telemetry.reading import Reading

__all__ = ["Loaded", "OWTelemetry", "ReadError", "load_readings"]

FILE, SAMPLE = 0, 1
PROGRESS_EVERY = 5000


class ReadError(ValueError):
    """Nothing usable in the source; the message says why, in words a person can act on."""


class Cancelled(Exception):
    """The widget asked the running read to stop."""


@dataclass
class Loaded:
    table: Table
    bad: BadRows
    devices: int


def load_readings(
    readings: Iterable[Reading],
    bad: BadRows | None,
    total: int = 0,
    state: TaskState | None = None,
    name: str = "telemetry",
) -> Loaded:
    """Every reading of ``readings`` as a table; :class:`ReadError` when there is none."""
    bad = bad if bad is not None else BadRows()
    rows: list[Reading] = []
    try:
        for reading in readings:
            rows.append(reading)
            if state is not None and len(rows) % PROGRESS_EVERY == 0:
                if state.is_interruption_requested():
                    raise Cancelled
                state.set_progress_value(100.0 * len(rows) / max(total, len(rows)))
    except CsvFormatError as exc:
        raise ReadError(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ReadError(f"not a text (UTF-8) CSV file: {exc}") from exc
    if not rows:
        empty = EvalResult(task=TaskConfig(), models=(), devices={})
        raise ReadError(nothing_usable(empty, bad) or "no usable reading")
    return Loaded(readings_table(rows, name), bad, len({r.device for r in rows}))


def _read(source: int, path: str, days: float, seed: int, state: TaskState) -> Loaded:
    if source == FILE:
        p = Path(path)
        if not path or not p.is_file():
            raise ReadError(f"no such file: {path}" if path else "no file chosen")
        bad = BadRows()
        total = count_rows(p)
        return load_readings(read_csv(p, on_bad_row=bad), bad, total, state, p.stem)
    if days <= 0:
        raise ReadError("the sample needs more than 0 days")
    total = expected_rows(days)
    return load_readings(generate(days=days, seed=seed), None, total, state, f"sample-{days:g}d")


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M")


class OWTelemetry(OWWidget, ConcurrentWidgetMixin):
    name = tr("Telemetry")
    description = tr("Sensor readings from a CSV file or a generated sample, as a table.")
    icon = "icons/telemetry.svg"
    priority = 10
    keywords = "iotcast, telemetry, sensor, csv, iot, temperature"
    want_main_area = False
    resizing_enabled = False

    class Outputs:
        data = Output(
            tr("Readings"),
            Table,
            id="readings",
            doc=tr("One row per reading: time, device and the sensors."),
        )

    class Error(OWWidget.Error):
        read_error = Msg("{}")

    class Warning(OWWidget.Warning):
        bad_rows = Msg(tr("{} rows skipped: {}"))

    source: int = Setting(SAMPLE)
    path: str = Setting("")
    days: float = Setting(1.0)
    seed: int = Setting(1)

    def __init__(self) -> None:
        OWWidget.__init__(self)
        ConcurrentWidgetMixin.__init__(self)
        box = gui.radioButtons(
            self.controlArea, self, "source", box=tr("Source"), callback=self.reload
        )
        gui.appendRadioButton(box, tr("CSV file (the public format)"))
        row = gui.hBox(gui.indentedBox(box))
        gui.lineEdit(row, self, "path", callback=self._path_edited)
        gui.button(row, self, "…", callback=self.browse, autoDefault=False, width=30)
        gui.appendRadioButton(box, tr("Generated sample (three devices)"))
        sample = gui.indentedBox(box)
        gui.doubleSpin(
            sample, self, "days", 0.01, 31.0, 0.25, label=tr("Days:"), callback=self._sample_edited
        )
        gui.spin(sample, self, "seed", 0, 10**6, label=tr("Seed:"), callback=self._sample_edited)
        self.info_label = gui.widgetLabel(gui.widgetBox(self.controlArea, tr("Info")), "")
        self.info_label.setWordWrap(True)
        gui.button(self.buttonsArea, self, tr("Reload"), callback=self.reload)
        self.reload()

    def browse(self) -> None:
        start = str(Path(self.path).parent) if self.path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self, tr("Open a telemetry CSV file"), start, tr("CSV files (*.csv);;All files (*)")
        )
        if path:
            self.path = path
            self.source = FILE
            self.reload()

    def _path_edited(self) -> None:
        self.source = FILE
        self.reload()

    def _sample_edited(self) -> None:
        self.source = SAMPLE
        self.reload()

    def reload(self) -> None:
        self.Error.clear()
        self.Warning.clear()
        self.info_label.setText(tr("Reading…"))
        self.start(_read, self.source, self.path, self.days, self.seed)

    def on_done(self, result: Loaded) -> None:
        t = result.table
        first, last = (_utc(v) for v in (t.X[0, 0], t.X[-1, 0]))
        self.info_label.setText(
            tr("{rows:,} readings of {devices} devices, {first} to {last} (UTC).").format(
                rows=len(t), devices=result.devices, first=first, last=last
            )
        )
        if result.bad.count:
            reasons = ", ".join(f"{why} {n:,}" for why, n in result.bad.by_reason.most_common())
            self.Warning.bad_rows(f"{result.bad.count:,}", reasons)
        self.Outputs.data.send(t)

    def on_exception(self, ex: Exception) -> None:
        if isinstance(ex, Cancelled):
            return
        if not isinstance(ex, ReadError | OSError):
            raise ex
        self.info_label.setText("")
        self.Error.read_error(str(ex))
        self.Outputs.data.send(None)

    def onDeleteWidget(self) -> None:
        self.shutdown()
        super().onDeleteWidget()


if __name__ == "__main__":  # pragma: no cover
    from Orange.widgets.utils.widgetpreview import WidgetPreview

    WidgetPreview(OWTelemetry).run()

"""Telemetry: sensor readings from a CSV file, a generated sample or the live fleet, as an
Orange table.

The file is read by :func:`telemetry.csvfile.read_csv` (the public format, judged
reading by reading as ``iotcast evaluate`` judges it); the sample is
:func:`telemetry.generate.generate` (a day of the three calibrated devices: 49,600
readings); the live fleet is the last hours of a Kinesis stream of the stack or of AWS
(:func:`iotcast.orange.live.read_recent`: the telemetry stream by default, every sensor
of every reading; or the predictions stream, with the served forecasts and their
intervals), where and which as the Fleet widget says it (endpoint or AWS, region).
Reading shows Orange's progress bar; **Cancel** stops it.  Rows refused whole are counted
in a warning; a file with no usable row, a missing file, a wrong header, a stack that does
not answer or a stream with nothing in the window is an error shown in the widget, and
nothing is sent.

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

from AnyQt.QtCore import Qt
from AnyQt.QtWidgets import QFileDialog
from Orange.data import Table
from Orange.widgets import gui
from Orange.widgets.settings import Setting
from Orange.widgets.utils.concurrent import ConcurrentWidgetMixin, TaskState
from Orange.widgets.widget import Msg, Output, OWWidget

from iotcast.orange.i18n import tr
from iotcast.orange.live import LiveError, LiveRead, Stop, read_recent
from iotcast.orange.tables import readings_table
from iotcast.settings import LOCAL_AWS_ENDPOINT, LOCAL_REGION, Settings
from online_models.config import TaskConfig
from online_models.data_summary import count_rows
from online_models.evaluate import EvalResult, nothing_usable
from telemetry.csvfile import BadRows, CsvFormatError, read_csv
from telemetry.generate import expected_rows, generate
from telemetry.reading import Reading

__all__ = ["Loaded", "OWTelemetry", "ReadError", "load_readings"]

FILE, SAMPLE, LIVE = 0, 1, 2
STACK, AWS = 0, 1
STREAMS = ("iot-telemetry", "iot-predictions")
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
    live: LiveRead | None = None


@dataclass(frozen=True)
class Live:
    """Where the live fleet is read from: the connection, the stream, the window."""

    settings: Settings
    stream: str
    hours: float


def _read_live(live: Live, state: TaskState) -> Loaded:
    try:
        got = read_recent(
            live.settings,
            live.stream,
            live.hours,
            progress=state.set_progress_value,
            stop=state.is_interruption_requested,
        )
    except Stop:
        raise Cancelled from None
    except LiveError as exc:
        raise ReadError(str(exc)) from exc
    bad = BadRows()
    bad.count = sum(got.refused.values())
    bad.by_reason.update(got.refused)
    name = f"live-{live.stream}"
    devices = len({r.device for r in got.readings})
    return Loaded(readings_table(got.readings, name), bad, devices, got)


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


def _read(source: int, path: str, days: float, seed: int, live: Live, state: TaskState) -> Loaded:
    if source == LIVE:
        return _read_live(live, state)
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
    description = tr(
        "Sensor readings from a CSV file, a generated sample or the live fleet, as a table."
    )
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
        truncated = Msg(tr("Stopped at {} readings: choose fewer hours."))

    source: int = Setting(SAMPLE)
    path: str = Setting("")
    days: float = Setting(1.0)
    seed: int = Setting(1)
    live_where: int = Setting(STACK)
    endpoint_url: str = Setting(LOCAL_AWS_ENDPOINT)
    region: str = Setting(LOCAL_REGION)
    live_stream: str = Setting(STREAMS[0])
    hours: float = Setting(24.0)

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
        gui.appendRadioButton(box, tr("Live fleet: the last hours of a stream"))
        live = gui.indentedBox(box)
        horizontal = {"orientation": Qt.Orientation.Horizontal, "callback": self._live_edited}
        gui.comboBox(
            live,
            self,
            "live_where",
            items=[tr("Local stack at"), tr("AWS (credentials from the environment)")],
            label=tr("Where:"),
            **horizontal,
        )
        gui.lineEdit(live, self, "endpoint_url", label=tr("Endpoint:"), **horizontal)
        gui.lineEdit(live, self, "region", label=tr("Region:"), **horizontal)
        gui.comboBox(
            live,
            self,
            "live_stream",
            items=STREAMS,
            editable=True,
            sendSelectedValue=True,
            label=tr("Stream:"),
            **horizontal,
        )
        gui.doubleSpin(live, self, "hours", 0.25, 8760.0, 1.0, label=tr("Hours:"), **horizontal)
        self.info_label = gui.widgetLabel(gui.widgetBox(self.controlArea, tr("Info")), "")
        self.info_label.setWordWrap(True)
        gui.button(self.buttonsArea, self, tr("Reload"), callback=self.reload)
        self.cancel_button = gui.button(
            self.buttonsArea, self, tr("Cancel"), callback=self.cancel_read
        )
        self.cancel_button.setEnabled(False)
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

    def _live_edited(self) -> None:
        self.source = LIVE
        self.reload()

    def live(self) -> Live:
        """The live fleet's stream and window, the connection resolved as the command line
        resolves its flags (the Fleet widget's way)."""
        flags = {"region": self.region or None}
        if self.live_where == STACK:
            settings = Settings.of(endpoint_url=self.endpoint_url, **flags)
        else:
            settings = Settings.resolve(flags=flags)
        return Live(settings, self.live_stream.strip() or STREAMS[0], float(self.hours))

    def reload(self) -> None:
        self.Error.clear()
        self.Warning.clear()
        self.info_label.setText(tr("Reading…"))
        self.cancel_button.setEnabled(True)
        live = self.live() if self.source == LIVE else None
        self.start(_read, self.source, self.path, self.days, self.seed, live)

    def cancel_read(self) -> None:
        """Stop the read under way; what was sent before stays."""
        self.cancel()
        self.cancel_button.setEnabled(False)
        self.info_label.setText(tr("Cancelled: press Reload to read again."))

    def on_done(self, result: Loaded) -> None:
        self.cancel_button.setEnabled(False)
        t = result.table
        first, last = (_utc(v) for v in (t.X[0, 0], t.X[-1, 0]))
        text = tr("{rows:,} readings of {devices} devices, {first} to {last} (UTC).").format(
            rows=len(t), devices=result.devices, first=first, last=last
        )
        got = result.live
        if got is not None:
            said = (
                tr(
                    "From {where}, the last {hours:g} hours: what the processors served "
                    "(the actual value, the served forecasts and their intervals)."
                )
                if got.kind == "predictions"
                else tr("From {where}, the last {hours:g} hours: the readings the devices sent.")
            )
            text += " " + said.format(where=got.where, hours=self.hours)
            if got.truncated:
                self.Warning.truncated(f"{len(t):,}")
        self.info_label.setText(text)
        if result.bad.count:
            reasons = ", ".join(f"{why} {n:,}" for why, n in result.bad.by_reason.most_common())
            self.Warning.bad_rows(f"{result.bad.count:,}", reasons)
        self.Outputs.data.send(t)

    def on_exception(self, ex: Exception) -> None:
        self.cancel_button.setEnabled(False)
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

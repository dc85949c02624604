"""Fleet: the live devices, their champions and rolling errors, and Promote.

Settings: the local stack (an endpoint URL; by default the stack ``iotcast demo`` and
``./dev demo`` start) or AWS (credentials and region from the environment, as the
command line takes them), the bucket and the application.  Refresh reads the S3
manifests (:func:`iotcast.orange.fleet.fleet_frame`) and sends one row per device, model
and horizon.  Promote asks for a confirmation, then runs ``iotcast models promote``
(:func:`iotcast.ui.fleet.operator_command`) and shows its answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from AnyQt.QtCore import Qt
from AnyQt.QtWidgets import QMessageBox
from Orange.data import Table
from Orange.widgets import gui
from Orange.widgets.settings import Setting
from Orange.widgets.utils.concurrent import ConcurrentWidgetMixin, TaskState
from Orange.widgets.widget import Msg, Output, OWWidget

from iotcast.orange.fleet import FleetFigures, fleet_frame
from iotcast.orange.i18n import tr
from iotcast.orange.tables import frame_table
from iotcast.settings import LOCAL_AWS_ENDPOINT, LOCAL_REGION, Settings
from iotcast.ui.fleet import CommandResult, operator_command

__all__ = ["OWFleet"]

STACK, AWS = 0, 1
EVERY_HORIZON = "every horizon"


@dataclass
class _Promoted:
    result: CommandResult
    fleet: FleetFigures


def _refresh(settings: Settings, state: TaskState) -> FleetFigures:
    return fleet_frame(settings)


def _promote(settings: Settings, args: list[str], state: TaskState) -> _Promoted:
    result = operator_command(settings, "promote", *args)
    return _Promoted(result, fleet_frame(settings))


class OWFleet(OWWidget, ConcurrentWidgetMixin):
    name = tr("Fleet")
    description = tr("The live devices, their champion models and rolling errors; promote a model.")
    icon = "icons/fleet.svg"
    priority = 30
    keywords = "iotcast, fleet, devices, champion, promote, s3"
    want_main_area = False

    class Outputs:
        fleet = Output(tr("Fleet"), Table, id="fleet", default=True)

    class Error(OWWidget.Error):
        unreachable = Msg(tr("Cannot read {}: {}"))
        refused = Msg(tr("Promote refused: {}"))

    class Information(OWWidget.Information):
        empty = Msg(tr("No device has a checkpoint yet."))

    mode: int = Setting(STACK)
    endpoint_url: str = Setting(LOCAL_AWS_ENDPOINT)
    region: str = Setting(LOCAL_REGION)
    bucket: str = Setting("iotcast")
    app: str = Setting("iotcast")
    reason: str = Setting("")

    def __init__(self) -> None:
        OWWidget.__init__(self)
        ConcurrentWidgetMixin.__init__(self)
        self.devices: list[str] = []
        self.model_names: list[str] = []
        self.horizon_items: list[str] = [EVERY_HORIZON]
        self.device_index = self.model_index = self.horizon_index = 0
        box = gui.radioButtons(self.controlArea, self, "mode", box=tr("Where"))
        gui.appendRadioButton(box, tr("Local stack at"))
        gui.lineEdit(gui.indentedBox(box), self, "endpoint_url")
        gui.appendRadioButton(box, tr("AWS (credentials from the environment)"))
        form = gui.widgetBox(self.controlArea, tr("Application"))
        gui.lineEdit(
            form, self, "region", label=tr("Region:"), orientation=Qt.Orientation.Horizontal
        )
        gui.lineEdit(
            form, self, "bucket", label=tr("Bucket:"), orientation=Qt.Orientation.Horizontal
        )
        gui.lineEdit(
            form, self, "app", label=tr("Application:"), orientation=Qt.Orientation.Horizontal
        )
        gui.button(form, self, tr("Refresh"), callback=self.refresh)
        self.summary = gui.widgetLabel(gui.widgetBox(self.controlArea, tr("Devices")), "")
        self.summary.setWordWrap(True)
        box = gui.widgetBox(self.controlArea, tr("Promote"))
        self.device_combo = gui.comboBox(box, self, "device_index", label=tr("Device:"))
        self.model_combo = gui.comboBox(box, self, "model_index", label=tr("Model:"))
        self.horizon_combo = gui.comboBox(box, self, "horizon_index", label=tr("Horizon:"))
        gui.lineEdit(box, self, "reason", label=tr("Reason:"))
        self.promote_button = gui.button(box, self, tr("Promote…"), callback=self.promote)
        self.answer = gui.widgetLabel(box, "")
        self.answer.setWordWrap(True)
        self.refresh()

    def settings(self) -> Settings:
        """The connection settings, resolved as the command line resolves its flags."""
        flags = {"region": self.region or None, "bucket": self.bucket, "app": self.app}
        if self.mode == STACK:
            return Settings.of(endpoint_url=self.endpoint_url, **flags)
        return Settings.resolve(flags=flags)

    def refresh(self) -> None:
        self.Error.clear()
        self.start(_refresh, self.settings())

    def promote(self) -> None:
        if not self.devices or not self.model_names:
            return
        device = self.devices[self.device_index]
        model = self.model_names[self.model_index]
        horizon = self.horizon_items[self.horizon_index]
        args = [
            device,
            model,
            "--reason",
            self.reason or tr("promoted in Orange"),
            "--by",
            "Orange",
        ]
        where = tr("every horizon it runs at")
        if horizon != EVERY_HORIZON:
            args += ["--horizon", horizon]
            where = tr("horizon {} s").format(horizon)
        text = tr("Make {model} the champion of {device} at {where}?").format(
            model=model, device=device, where=where
        )
        if not self.confirm(text):
            return
        self.Error.refused.clear()
        self.answer.setText(tr("Waiting for the processors…"))
        self.start(_promote, self.settings(), args)

    def confirm(self, text: str) -> bool:
        answer = QMessageBox.question(self, tr("Promote"), text)
        return answer == QMessageBox.StandardButton.Yes

    def on_done(self, result: FleetFigures | _Promoted) -> None:
        if isinstance(result, _Promoted):
            out = result.result
            self.answer.setText(out.output)
            if out.code != 0:
                self.Error.refused(out.output.splitlines()[-1] if out.output else out.code)
            result = result.fleet
        self._show(result)

    def _show(self, fleet: FleetFigures) -> None:
        self.Information.clear()
        if fleet.error:
            self.Error.unreachable(fleet.where, fleet.error)
            self.Outputs.fleet.send(None)
            return
        df = fleet.frame
        keep_device = self.devices[self.device_index] if self.devices else None
        self.devices = sorted(set(df.device))
        self.model_names = sorted(set(df.model))
        self.horizon_items = [EVERY_HORIZON, *map(str, sorted(set(df.horizon)))]
        for combo, items in (
            (self.device_combo, self.devices),
            (self.model_combo, self.model_names),
            (self.horizon_combo, [tr("every horizon"), *self.horizon_items[1:]]),
        ):
            combo.clear()
            combo.addItems(items)
        if keep_device in self.devices:
            self.device_index = self.devices.index(keep_device)
        champions = df[df.champion]
        self.summary.setText(
            tr("{devices} devices; champions: {champions}").format(
                devices=len(self.devices),
                champions=", ".join(
                    f"{m} ×{n}" for m, n in champions.model.value_counts().sort_index().items()
                )
                or "-",
            )
        )
        if df.empty:
            self.Information.empty()
            self.Outputs.fleet.send(None)
            return
        self.Outputs.fleet.send(
            frame_table(df, discrete=("device", "shard", "model", "horizon"), name="fleet")
        )

    def on_exception(self, ex: Exception) -> None:
        raise ex

    def onDeleteWidget(self) -> None:
        self.shutdown()
        super().onDeleteWidget()


if __name__ == "__main__":  # pragma: no cover
    from Orange.widgets.utils.widgetpreview import WidgetPreview

    WidgetPreview(OWFleet).run()

"""One run of the demo: generate, replay, watch until every reading is accounted for, stop.

:class:`Demo` generates the readings, starts the offline evaluation of
the showcased devices' readings (it runs while the stack starts), starts the stack
(:class:`~iotcast.demo.stack.DemoStack`), replays the readings through MQTT
on a thread, and watches the parts'
/metrics until the processors took a decision on every reading the bridge
forwarded (:func:`pipeline_done`), failing with the stage that stopped
moving (:func:`diagnose_stall`) when nothing moves for ``stall_timeout``
seconds.  :meth:`Demo.shutdown` stops every process it started (after
copying the checkpoints out of moto) whatever happened; :meth:`Demo.finish`
writes the summary (:mod:`iotcast.demo.summary`).

The demo showcases the three real devices of the generator (:func:`showcased`,
the first three of any fleet it generates): the processors watch them
(``iotcast process --watch``: their per-device series), the live view and the
summary show them one per row, and the offline evaluation runs over their
readings alone (the stream's per-device figures are checked against it; the
other devices of a large fleet are counted in the fleet's figures only).

>>> showcased(1000, seed=1)
('00:0f:00:70:91:0a', '1c:bf:ce:15:ec:4d', 'b8:27:eb:bf:9d:51')
>>> up = dict(bridge_up=True)
>>> pipeline_done(PipelineFigures(forwarded=10, dead_lettered=1, learned=9, glitches=1, **up), 11, True)
True
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.live import Live

from iotcast.demo import summary
from iotcast.demo.stack import STOP_GRACE, DemoStack, Ports
from iotcast.live import PipelineFigures, Scraper, progress_line, render
from iotcast.settings import Settings
from iotcast.stack import HOST
from iotcast.supervisor import INTERRUPTS, ProcessList, StopFailed
from telemetry.broker import MqttTarget
from telemetry.csvfile import read_csv, write_csv
from telemetry.generate import generate, profiles_for
from telemetry.replay import BackgroundReplay

__all__ = ["Demo", "DemoFailed", "Options", "diagnose_stall", "pipeline_done", "showcased"]

DEFAULT_OUT = "demo-output"
SHOWCASED = 3  # devices watched, shown and evaluated one by one


def showcased(devices: int, seed: int) -> tuple[str, ...]:
    """The devices the demo watches and shows: the generator's first (the real ones)."""
    return tuple(sorted(p.device for p in profiles_for(min(devices, SHOWCASED), seed)))


class DemoFailed(RuntimeError):
    """A part failed or stalled; the message names it and where its log is.

    >>> str(DemoFailed("bridge exited"))
    'bridge exited'
    """


@dataclass
class Options:
    """The demo's own flags (the connection flags are the stack's, not the user's)."""

    out: Path = Path(DEFAULT_OUT)
    days: float = 1.0
    devices: int = 3
    seed: int = 1
    speed: float = 0.0  # times real time; 0: as fast as the pipeline takes it
    ports: Ports = field(default_factory=Ports)
    stall_timeout: float = 60.0
    evaluate_timeout: float = 900.0
    horizon: str = "0"
    baseline: str = "persistence"
    hold: bool = False
    evaluate: bool = True
    json: bool = False
    progress_every: float = 5.0
    live: bool | None = None  # None: when stdout is a terminal


FIGURES_SETTLE_S = 2.5
# The stack's components have this long to stop on SIGTERM: the moto server holding a large
# fleet's checkpoints (1,000 devices: ~60,000 objects) takes over 10 s on a busy machine.
STACK_STOP_GRACE = 30.0


def pipeline_done(snap: PipelineFigures, replayed: int, replay_finished: bool) -> bool:
    """True when every replayed reading was forwarded or dead-lettered and the processors
    took a decision (learned, duplicate, late, glitch) on every forwarded one.

    >>> pipeline_done(PipelineFigures(forwarded=10, learned=9, bridge_up=True), 10, True)
    False
    """
    return (
        replay_finished
        and snap.bridge_up
        and snap.forwarded + snap.dead_lettered >= replayed
        and snap.buffered == 0
        and snap.accounted >= snap.forwarded
    )


def diagnose_stall(snap: PipelineFigures, replayed: int, total: int | None, seconds: float) -> str:
    """Say which stage stopped moving, for the message of a stalled demo.

    >>> diagnose_stall(PipelineFigures(forwarded=10, learned=4), 10, 10, 60)
    'nothing moved for 60 s: the processors accounted for 4 of 10 forwarded readings (see logs/processor.log)'
    """
    head = f"nothing moved for {seconds:.0f} s: "
    if total is not None and replayed < total:
        return (
            head + f"the replay published {replayed} of {total} readings (see stack/mosquitto.log)"
        )
    if snap.forwarded + snap.dead_lettered < replayed:
        return head + (
            f"the bridge forwarded {snap.forwarded} and dead-lettered {snap.dead_lettered} "
            f"of {replayed} replayed readings (see logs/bridge.log)"
        )
    return head + (
        f"the processors accounted for {snap.accounted} of {snap.forwarded} forwarded readings "
        f"(see logs/processor.log)"
    )


class Workload:
    """The demo's readings: generated into a CSV file, replayed through MQTT on a thread;
    the showcased devices' readings evaluated offline by an ``iotcast evaluate`` child of
    the stack (from a CSV file of their own when the fleet has more devices)."""

    def __init__(
        self, opts: Options, csv: Path, say: Callable[[str], None], showcase: Sequence[str] = ()
    ) -> None:
        self.opts = opts
        self.csv = csv
        self.say = say
        self.showcase = tuple(showcase)
        self.evaluated_csv = csv
        self.total: int | None = None
        self.replayed = 0
        self.replay: BackgroundReplay | None = None

    def generate(self) -> int:
        opts = self.opts
        self.say(f"generating {opts.days} day(s) of {opts.devices} devices (seed {opts.seed}) "
                 f"into {self.csv}")  # fmt: skip
        count = 0

        def counted() -> Iterator:
            nonlocal count
            for reading in generate(opts.days, opts.seed, devices=opts.devices):
                count += 1
                yield reading

        write_csv(self.csv, counted())
        self.total = count
        if opts.devices > len(self.showcase):
            # The offline evaluation is per device: the showcased devices' figures are the
            # same from a file of their readings alone (in the same order), in a fraction
            # of the time (the whole fleet's would take longer than the stream).
            keep = frozenset(self.showcase)
            self.evaluated_csv = self.csv.with_name("showcased.csv")
            write_csv(self.evaluated_csv, (r for r in read_csv(self.csv) if r.device in keep))
        return count

    def start_evaluation(self, stack: DemoStack, report: Path) -> None:
        csv, out = str(self.evaluated_csv), str(report)
        proc = stack.iotcast("evaluate", "evaluate", "--csv", csv, "--out", out, "--no-progress")
        stack.procs.start(proc, ready=lambda: True)

    def speed(self) -> float:
        return self.opts.speed

    def start_replay(self, broker: MqttTarget) -> None:
        speed = self.speed()
        self.say(f"replaying {self.total} readings through MQTT at "
                 f"{'full speed' if speed == 0 else f'{speed:.0f}x real time'}")  # fmt: skip
        self.replay = BackgroundReplay(broker, read_csv(self.csv), speed=speed, qos=1).start()

    def replay_finished(self) -> bool:
        return self.replay is not None and self.replay.finished()

    def replay_error(self) -> BaseException | None:
        return None if self.replay is None else self.replay.error

    def progress(self) -> int:
        """Readings replayed so far: taken by the replay, then those the broker accepted."""
        if self.replay is not None:
            done = self.replay.finished() and self.replay.error is None
            self.replayed = self.replay.result if done else self.replay.taken
        return self.replayed

    def stop(self, timeout: float) -> None:
        if self.replay is not None:
            self.replay.cancel()
            self.replay.wait(timeout)


class Demo:
    """One run of the demo: the stack, the replay, the watch, the shutdown and the summary."""

    def __init__(self, settings: Settings, opts: Options, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.out = opts.out.resolve()
        self.logs = self.out / "logs"
        self.csv = self.out / "readings.csv"
        self.report = self.out / "report"
        self.checkpoints = self.out / "checkpoints"
        self.settings = settings.replace(
            endpoint_url=f"http://{HOST}:{opts.ports.moto}",
            endpoints={"kinesis": f"http://{HOST}:{opts.ports.kinesis}"},
            mqtt_url=f"mqtt://{HOST}:{opts.ports.mqtt}",
            mqtt_ca_file=None,
            metrics_port=None,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.procs = ProcessList(registry=self.out)
        self.watched = showcased(opts.devices, opts.seed)
        self.stack = DemoStack(
            self.settings, opts.ports, self.procs, self.out / "stack", self.logs,
            watch=self.watched,
        )  # fmt: skip
        self.scraper = Scraper(
            self.stack.bridge_url,
            self.stack.processor_urls,
            horizon=opts.horizon,
            baseline=opts.baseline,
        )
        self.load = Workload(opts, self.csv, self.say, self.watched)
        self.summary: dict[str, Any] = {}
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)

    # ----------------------------------------------------------------- steps
    def prepare(self) -> None:
        """Clear what a previous run left in the output directory (only the demo's own names)."""
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("stack", "checkpoints", "report", "logs"):
            shutil.rmtree(self.out / name, ignore_errors=True)
        for name in ("summary.json", "pids.json", "readings.csv", "showcased.csv"):
            (self.out / name).unlink(missing_ok=True)
        self.logs.mkdir(parents=True)
        self.stack.work.mkdir(parents=True)

    def check_children(self) -> None:
        for proc in self.procs.processes:
            if proc.proc is not None and proc.proc.poll() is not None and proc.name != "evaluate":
                raise DemoFailed(
                    f"{proc.name} exited with code {proc.proc.returncode}; "
                    f"last lines of {proc.log_path}:\n{proc.log_tail()}"
                )
        evaluate = self.procs.get("evaluate")
        if evaluate and evaluate.proc and evaluate.proc.poll() not in (None, 0):
            raise DemoFailed(
                f"the evaluation exited with code {evaluate.proc.returncode}; "
                f"last lines of {evaluate.log_path}:\n{evaluate.log_tail()}"
            )
        error = self.load.replay_error()
        if error is not None:
            raise DemoFailed(f"the replay failed: {error}") from error

    # ----------------------------------------------------------------- watch
    @property
    def latest(self) -> PipelineFigures:
        return self.scraper.latest

    def footer(self) -> str:
        return (
            f"Prometheus {self.stack.prometheus_url}   bridge {self.stack.bridge_url}   "
            + "processors "
            + " ".join(self.stack.processor_urls)
            + f"   elapsed {time.monotonic() - self.started:.0f} s   Ctrl-C stops everything"
        )

    def view(self, title: str) -> Any:
        title = f"{title}   {self.scraper.rate():.0f} readings/s"
        return render(
            self.latest, self.load.replayed, self.load.total, title=title, footer=self.footer()
        )

    def watch(
        self, until: Callable[[], bool], title: str, live: Live | None, stall: float | None = None
    ) -> None:
        """Scrape and show until ``until()``; raise :class:`DemoFailed` on a stall or a dead part."""
        last_print = 0.0
        last_change = time.monotonic()
        last_state: tuple = ()
        tick = 0.5 if live else 1.0
        while True:
            self.check_children()
            snap = self.scraper.collect()
            replayed, total = self.load.progress(), self.load.total
            state = (
                replayed,
                snap.received,
                snap.forwarded,
                snap.dead_lettered,
                snap.accounted,
            )
            now = time.monotonic()
            if state != last_state:
                last_state, last_change = state, now
            if live:
                live.update(self.view(title))
            elif now - last_print >= self.opts.progress_every:
                line = progress_line(snap, replayed, total)
                self.say(f"{line}  ({self.scraper.rate():.0f}/s)")
                last_print = now
            if until():
                return
            if stall is not None and now - last_change > stall:
                raise DemoFailed(
                    diagnose_stall(snap, replayed, total, now - last_change)
                    + f"; logs are in {self.logs}"
                )
            time.sleep(tick)

    def wait_processed(self, live: Live | None) -> None:
        # The processors refresh a device's error gauges at most once a second (and when the
        # stream goes idle): once every reading is accounted for, wait until the figures
        # have stood still for FIGURES_SETTLE_S, so the summary reads the final ones.
        stable: dict[str, Any] = {"since": None, "figures": None}

        def done() -> bool:
            snap = self.latest
            if not pipeline_done(snap, self.load.progress(), self.load.replay_finished()):
                stable["since"] = None
                return False
            figures = (snap.devices, snap.forecasts, snap.fleet)
            now = time.monotonic()
            if stable["since"] is None or figures != stable["figures"]:
                stable["since"], stable["figures"] = now, figures
            return now - stable["since"] >= FIGURES_SETTLE_S

        self.watch(done, "iotcast demo: replaying", live, stall=self.opts.stall_timeout)

    def wait_evaluation(self, live: Live | None) -> None:
        evaluate = self.procs.get("evaluate")
        if evaluate is None or evaluate.proc is None:
            return
        deadline = time.monotonic() + self.opts.evaluate_timeout
        if evaluate.alive():
            self.say("waiting for the offline evaluation to finish")

        def done() -> bool:
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"the evaluation did not finish in {self.opts.evaluate_timeout:.0f} s; "
                    f"see {evaluate.log_path}"
                )
            return not evaluate.alive()

        self.watch(done, "iotcast demo: evaluating offline", live)

    # ------------------------------------------------------------- the run
    def run(self) -> None:
        self.prepare()
        self.procs.start_reaper(self.logs / "reaper.log")
        self.stack.load_rules(self.say)
        self.summary["rule_files"] = [str(p) for p in self.stack.rule_files]
        self.summary["rule_files_rejected"] = self.stack.rules_rejected
        # The readings first: the offline evaluation of them (CPU-bound, one core) then
        # runs while the stack starts (import-bound) instead of only beside the pipeline.
        self.load.generate()
        if self.opts.evaluate:
            self.load.start_evaluation(self.stack, self.report)
        self.stack.start(self.say)
        self.load.start_replay(self.settings.mqtt)
        use_live = self.opts.live if self.opts.live is not None else self.console.is_terminal
        live_ctx = (
            Live(self.view("iotcast demo"), console=self.console, refresh_per_second=4)
            if use_live
            else contextlib.nullcontext()
        )
        with live_ctx as live:
            self.wait_processed(live)
            done_at = time.time()
            final = self.latest
            self.summary["prometheus"] = summary.query_prometheus(
                self.stack.prometheus_url, done_at
            )
            self.wait_evaluation(live)
            self.scraper.latest = final
            if live:
                live.update(self.view("iotcast demo: done"))
        self.summary["stream"] = final.figures()
        offline = summary.offline_mae(self.report / "metrics.csv") if self.opts.evaluate else {}
        self.summary["devices"] = summary.device_rows(
            final.devices, offline, self.opts.horizon, self.opts.baseline
        )
        self.summary["forecasts"] = summary.forecast_rows(final.forecasts, offline)
        if self.opts.hold:
            self.hold()

    def hold(self) -> None:
        st = self.stack
        self.say(
            f"the stack keeps running: Prometheus {st.prometheus_url}, "
            f"metrics {st.bridge_url} {' '.join(st.processor_urls)}, "
            f"AWS endpoints {self.settings.describe_endpoints()}, MQTT {self.settings.mqtt_url}\n"
            f"in another terminal:\n"
            f"  {st.operator_command('status')} --scrape {' '.join([st.bridge_url, *st.processor_urls])}\n"
            f"  {st.operator_command('models list')}\n"
            "Ctrl-C here stops everything."
        )
        while True:
            self.check_children()
            time.sleep(1)

    def shutdown(self) -> None:
        """Stop everything this run started; keep the checkpoints out of moto first."""
        with INTERRUPTS.ignored():
            if self.load.replay is not None:
                self.load.replay.cancel()
            if self.procs.processes:
                self.say(f"stopping {len(self.procs.processes)} processes")
            codes: dict[str, int | None] = {}
            errors: list[str] = []
            try:
                codes.update(self.procs.stop(self.stack.children(), grace=STOP_GRACE))
            except StopFailed as exc:
                errors.append(str(exc))
            moto = self.procs.get("moto_server")
            if moto is not None and moto.alive():
                try:
                    self.summary["checkpoints"] = self.download_checkpoints()
                except (BotoCoreError, ClientError, OSError, ValueError, KeyError) as exc:
                    errors.append(f"could not copy the checkpoints out of moto: {exc}")
            try:
                codes.update(self.procs.stop_all(grace=STACK_STOP_GRACE))
            except StopFailed as exc:
                errors.append(str(exc))
            self.load.stop(5)
            self._stopped(codes, errors)

    def _stopped(self, codes: dict[str, int | None], errors: list[str]) -> None:
        self.summary["exit_codes"] = codes
        self.summary["stop_seconds"] = self.procs.stop_seconds
        self.summary["killed_after_grace"] = self.procs.killed
        for name in self.procs.killed:
            self.say(f"[yellow]warning:[/] {name} did not stop on SIGTERM in time: killed")
        self.summary["pids"] = self.procs.pids()
        self.summary["still_running"] = self.procs.running()
        if errors:
            self.summary["shutdown_errors"] = errors
            for error in errors:
                self.say(f"[red]error:[/] {error}")

    def download_checkpoints(self) -> dict[str, Any]:
        """Copy the shard manifests and each device's newest checkpoint out of moto; the
        summary keeps the fleet's totals and the watched devices' entries."""
        s3 = self.settings.client("s3")
        copied = summary.download_checkpoints(
            s3, self.settings.bucket, self.settings.app, self.checkpoints
        )
        return summary.checkpoint_figures(copied, self.watched)

    # -------------------------------------------------------------- summary
    def finish(self, outcome: str, message: str | None = None) -> dict[str, Any]:
        """The summary of the run (also written to ``<out>/summary.json``)."""
        s = self.summary
        s.update(
            outcome=outcome,
            message=message,
            elapsed_seconds=round(time.monotonic() - self.started, 1),
            out=str(self.out),
            csv=str(self.csv),
            watched=list(self.watched),
            evaluated_csv=str(self.load.evaluated_csv) if self.opts.evaluate else None,
            generated=self.load.total,
            replayed=self.load.replayed,
            speed=self.load.speed(),
            report=str(self.report),
            checkpoints_dir=str(self.checkpoints),
            checkpoints_s3=f"s3://{self.settings.bucket}/models/{self.settings.app}/",
            prometheus_data=str(self.stack.work / "prometheus-data"),
            logs=str(self.logs),
            urls=self.stack.urls(),
            horizon=self.opts.horizon,
            baseline=self.opts.baseline,
        )
        if "stream" not in s:  # failed or interrupted: the last figures seen
            s["stream"] = self.latest.figures()
            s["stream_complete"] = False
        else:
            s["stream_complete"] = True
        s["agreement"] = (
            summary.agreement(s)
            if s["stream_complete"]
            else {"prometheus": None, "manifests": None, "evaluation": None}
        )
        (self.out / "summary.json").write_text(json.dumps(s, indent=2, default=str) + "\n")
        return s

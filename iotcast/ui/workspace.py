"""The page's server side: where files go, what is checked before reading, and the jobs.

A :class:`Workspace` holds the settings, the model catalog, a folder for uploads and
the generated sample, the :class:`~iotcast.ui.jobs.Jobs`, and each model's measured
cost per reading. Reading a file gives its :class:`Contents`: the data summary and,
per device, the sensors it sent and the values validation dropped or clipped, hence
the targets the file can answer for. It knows no HTML: the page asks it, and tests may too.

>>> import tempfile, pathlib
>>> ws = Workspace(folder=pathlib.Path(tempfile.mkdtemp()), measure_costs=False)
>>> (ws.folder / "bad.csv").write_text("a,b\\n1,2\\n") and ws.check(ws.folder / "bad.csv").key
'err_columns'
>>> (ws.folder / "x.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00") and ws.check(ws.folder / "x.png").key
'err_not_csv'
>>> from telemetry.csvfile import HEADER  # extra number columns after the public ones: fine
>>> (ws.folder / "p.csv").write_text(HEADER + ',"pressure"\\n') and ws.check(ws.folder / "p.csv")
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotcast.settings import Settings
from iotcast.ui.jobs import Job, Jobs
from online_models.analysis import Analysis, Source, analyse, readings_of
from online_models.catalog import Catalog, load_catalog
from online_models.config import TARGETS
from online_models.data_summary import DataSummary, count_rows, summarize
from online_models.evaluate import DeviceInput
from telemetry.csvfile import BadRows, CsvFormatError, read_csv
from telemetry.reading import FIELDS, SENSORS, Reading

__all__ = ["LARGE_ROWS", "Contents", "Problem", "Question", "Workspace"]

LARGE_ROWS = 300_000  # more rows than this: the page offers to read only the first ones
DEFAULT_LIMIT = 200_000
# the numeric sensors a question may predict, in the page's order
TARGET_ORDER = tuple(k for k in ("temp", "humidity", "co", "lpg", "smoke") if k in TARGETS)
SAMPLE_DAYS = 2
SAMPLE_SEED = 1


@dataclass(frozen=True)
class Problem:
    """Why a file cannot be used: a text key of :mod:`iotcast.ui.text` and its fields."""

    key: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Question:
    """What the person asked: the data, devices, target, horizons, models."""

    path: str
    limit: int | None
    devices: tuple[str, ...]
    target: str = "temp"
    horizons: tuple[int, ...] = (900, 3600)
    models: tuple[str, ...] = ()
    references: bool = True

    def models_arg(self, catalog: Catalog) -> str:
        """``default`` when the default set is what was picked (as ``iotcast evaluate``
        takes it), else the names."""
        if set(self.models) == set(catalog.select("default").names):
            return "default"
        return ",".join(self.models)


@dataclass
class Contents:
    """A file as read for the page: its :class:`DataSummary` (``summary``) and, per device,
    what it sent (``inputs``: readings, sensors, values dropped by field and reason, values
    clipped by field). The same :class:`DeviceInput` ``iotcast evaluate`` reports.

    >>> from telemetry.generate import generate
    >>> c = Contents.read(generate(days=0.05, seed=1, sensors=(("temp",), ("temp", "humidity"))))
    >>> c.targets()
    {'temp': 3, 'humidity': 1}
    >>> sorted(c.nowcast_possible("temp", [d]) for d in c.devices)  # one device has humidity
    [False, False, True]
    """

    summary: DataSummary
    inputs: dict[str, DeviceInput]

    @classmethod
    def read(
        cls,
        source: Source,
        limit: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Contents:
        """Read ``source`` (its first ``limit`` rows) once: the summary and the inputs."""
        bad = BadRows()
        inputs: dict[str, DeviceInput] = {}

        def tallied() -> Iterator[Reading]:
            for r in readings_of(source, limit=limit, bad_rows=bad, progress=progress):
                inp = inputs.get(r.device)
                if inp is None:
                    inp = inputs[r.device] = DeviceInput()
                inp.add(r)
                yield r

        summary = summarize(tallied())
        summary.bad_rows = bad  # the rows refused whole were met here, not by summarize
        return cls(summary, inputs)

    @property
    def devices(self) -> list[str]:
        return list(self.summary.devices.device)

    def sensors(self, device: str) -> dict[str, int]:
        """The sensors (and extra fields) ``device`` sent, in the page's order, with how
        many of its readings carried each."""
        sent = self.inputs[device].sensors
        known = [s for s in (*TARGET_ORDER, *SENSORS) if s in sent]
        order = list(dict.fromkeys(known)) + sorted(set(sent) - set(known))
        return {s: sent[s] for s in order}

    def targets(self, devices: Iterable[str] | None = None) -> dict[str, int]:
        """Each numeric sensor of ``devices`` (default: every device) that can be predicted,
        with how many of them have it; in the page's order."""
        chosen = self.devices if devices is None else [d for d in devices if d in self.inputs]
        have = {k: sum(k in self.inputs[d].sensors for d in chosen) for k in TARGET_ORDER}
        return {k: n for k, n in have.items() if n}

    def nowcast_possible(self, target: str, devices: Iterable[str]) -> bool:
        """True when one of ``devices`` with ``target`` has another sensor: the nowcast (the
        virtual sensor) estimates the target from a device's other sensors, never its own."""
        return any(
            target in inp.sensors and any(s != target for s in inp.sensors if s in SENSORS)
            for inp in (self.inputs[d] for d in devices if d in self.inputs)
        )


def _fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


class Workspace:
    """Files, checks and jobs of one running page (see the module docstring)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        folder: Path,
        catalog: Catalog | None = None,
        measure_costs: bool = True,
        sample_days: float = SAMPLE_DAYS,
    ) -> None:
        self.settings = settings or Settings()
        self.catalog = catalog or load_catalog(self.settings.models_file)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jobs = Jobs()
        self.sample_days = sample_days
        self.costs: dict[str, float] = {}
        self._sample_lock = threading.Lock()
        if measure_costs:
            threading.Thread(target=self._measure_costs, daemon=True, name="costs").start()

    # ------------------------------------------------------------------- files
    def check(self, path: Path) -> Problem | None:
        """None when ``path`` looks like a telemetry CSV (header read, nothing else)."""
        if not path.is_file():
            return Problem("err_no_file", {"path": str(path)})
        if path.stat().st_size == 0:
            return Problem("err_empty")
        with open(path, "rb") as f:
            head = f.read(4096)
        name = path.name
        try:
            text = head.decode("utf-8-sig")
        except UnicodeDecodeError:
            return Problem("err_not_csv", {"name": name})
        if "\x00" in text:
            return Problem("err_not_csv", {"name": name})
        first = text.splitlines()[0] if text.strip() else ""
        if not first.strip():
            return Problem("err_empty")
        header = next(csv.reader(io.StringIO(first)), [])
        try:  # the public columns, maybe followed by extra number columns (e.g. pressure)
            next(read_csv(io.StringIO(first + "\n")), None)
            return None
        except CsvFormatError:
            pass
        if len(header) < 2:
            return Problem("err_not_csv", {"name": name})
        return Problem(
            "err_columns",
            {"found": ", ".join(h[:30] for h in header[:12]), "expected": ", ".join(FIELDS)},
        )

    def save_upload(self, filename: str, contents: str) -> Path:
        """An uploaded file (``data:...;base64,...`` as the browser sends it) saved here."""
        _, _, data = contents.partition(",")
        raw = base64.b64decode(data)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "upload.csv").name)[:80]
        digest = hashlib.sha256(raw).hexdigest()[:12]
        path = self.folder / "uploads" / f"{digest}-{safe}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        return path

    def sample(self) -> Path:
        """The generated sample (by default two days of three devices), written once."""
        from telemetry.csvfile import write_csv
        from telemetry.generate import generate

        path = self.folder / f"sample-{self.sample_days:g}d-seed{SAMPLE_SEED}.csv"
        with self._sample_lock:
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                write_csv(tmp, generate(days=self.sample_days, seed=SAMPLE_SEED))
                tmp.replace(path)
        return path

    @staticmethod
    def rows(path: Path) -> int:
        return count_rows(path)

    # -------------------------------------------------------------------- jobs
    def summarize(self, path: Path, limit: int | None) -> Job:
        """Read the file (the first ``limit`` rows) into its :class:`Contents`, in the background."""
        path = Path(path)

        def work(progress) -> Contents:
            total = min(count_rows(path), limit or 1 << 62)
            progress(0, total)
            return Contents.read(path, limit, progress=lambda n: progress(n, total))

        return self.jobs.start(("summary", _fingerprint(path), limit), work)

    def run(self, q: Question, total_rows: int) -> Job:
        """The evaluation ``q`` asks for, in the background (cached by the question)."""
        path = Path(q.path)

        def work(progress) -> Analysis:
            progress(0, total_rows)
            return analyse(
                path,
                target=q.target,
                horizons=q.horizons,
                models=q.models_arg(self.catalog),
                references=q.references,
                devices=q.devices,
                limit=q.limit,
                catalog=self.catalog,
                progress=lambda n: progress(n),
            )

        return self.jobs.start(("run", _fingerprint(path), q), work)

    def _measure_costs(self) -> None:
        """Each catalog model's CPU per reading (predict + learn, a nowcast and a 15-minute
        forecast), measured here on a short generated stream, for the model list."""
        from telemetry.generate import generate

        a = analyse(
            generate(days=1 / 24, seed=3, devices=1),
            horizons=(0, 900),
            models="all",
            catalog=self.catalog,
        )
        self.costs = {k: v for k, v in a.result.cost_us.items() if v == v}

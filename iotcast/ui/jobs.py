"""Long work off the request path: a thread per job, progress, cancel, and a result cache.

The page starts a job (reading a file, an evaluation) and polls it twice a second.
A job's function gets a ``progress(done, total)`` callback; calling it after
:meth:`Jobs.cancel` raises :class:`~online_models.analysis.Cancelled`, which
stops the evaluation between two readings. Jobs are keyed by what they compute:
starting a job whose key is running or done returns that job (the second look
at the same question costs nothing); the newest ``keep`` finished jobs are kept.

>>> jobs = Jobs()
>>> job = jobs.start(("double", 21), lambda progress: 2 * 21)
>>> jobs.wait(job.id).result, jobs.start(("double", 21), lambda progress: 0) is job
(42, True)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from online_models.analysis import Cancelled

__all__ = ["Job", "Jobs"]


@dataclass
class Job:
    """One piece of work: its state (``running``, ``done``, ``failed``, ``cancelled``),
    progress and result (or error)."""

    id: str
    key: Hashable
    state: str = "running"
    done: int = 0
    total: int = 0
    result: Any = None
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    def progress(self, done: int, total: int | None = None) -> None:
        if self.cancel_requested.is_set():
            raise Cancelled(self.id)
        self.done = done
        if total is not None:
            self.total = total


class Jobs:
    """The page's jobs, by id and by key (see the module docstring)."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Job] = OrderedDict()
        self._by_key: dict[Hashable, Job] = {}
        self._ids = itertools.count(1)

    def start(self, key: Hashable, work: Callable[[Callable[..., None]], Any]) -> Job:
        """The job computing ``key``: a running or finished one, else ``work(progress)`` in
        a new thread (a failed or cancelled job is started again)."""
        with self._lock:
            job = self._by_key.get(key)
            if job is not None and job.state in ("running", "done"):
                self._by_id.move_to_end(job.id)
                return job
            job = Job(id=f"job{next(self._ids)}", key=key)
            self._by_id[job.id] = job
            self._by_key[key] = job
            self._trim()
        threading.Thread(target=self._run, args=(job, work), daemon=True, name=job.id).start()
        return job

    def _run(self, job: Job, work: Callable[[Callable[..., None]], Any]) -> None:
        try:
            job.result = work(job.progress)
            job.state = "done"
        except Cancelled:
            job.state = "cancelled"
        except Exception as exc:  # noqa: BLE001 - shown in the page, with its type
            job.error = f"{type(exc).__name__}: {exc}"
            job.state = "failed"
        finally:
            job.seconds = time.monotonic() - job.started

    def _trim(self) -> None:
        finished = [j for j in self._by_id.values() if j.state != "running"]
        for job in finished[: max(len(finished) - self.keep, 0)]:
            self._by_id.pop(job.id, None)
            if self._by_key.get(job.key) is job:
                del self._by_key[job.key]

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._by_id.get(job_id) if job_id else None

    def cancel(self, job_id: str | None) -> None:
        job = self.get(job_id)
        if job is not None and job.state == "running":
            job.cancel_requested.set()

    def wait(self, job_id: str, timeout: float = 600.0) -> Job:
        """Block until the job is finished (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        while job is not None and job.state == "running":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job_id} still running after {timeout:.0f}s")
            time.sleep(0.02)
        if job is None:
            raise KeyError(job_id)
        return job

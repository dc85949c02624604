"""The batch models in a running processor: load the current version live, shadow it, judge it.

A processor started with ``--batch-expert`` runs a :class:`BatchWatch` beside its hot
loop. Every ``--batch-poll-seconds`` it reads the registry's ``current.json``
(:mod:`stream.batch_registry`, one GET); when the current version changes:

1. **Load.** The model's bytes must match its manifest's sha256, unpickle to a
   :class:`~online_models.retrain.BatchModel` of this code's format, with the features
   this code computes, one global model (a per-device model is not served live yet), and
   at least one of the processor's horizons. Else the version is **refused** (an event,
   a verdict ``refused`` with the reason) and the devices go on as they were.
2. **A verdict already stands** (a rollback to a version accepted before, a restart):
   ``accepted`` is weighed at once (``active``); ``refused`` is not used again, and the
   newest accepted version in ``current.json``'s history stays active.
3. **Else shadow.** The version forecasts as ``batch_shadow`` (:mod:`online_models.batch_live`):
   scored on every device like any model, never weighed nor champion. Its absolute
   errors, and those of what it would replace on the same forecasts (the active
   version's; before any, persistence's), are summed per horizon. Each poll writes this
   processor's sums to S3 and reads the other processors' (those against the same
   reference), so that the verdict is the fleet's, not one shard's. The shadow ends once
   ``shadow_seconds`` of this processor's stream time have passed and every horizon has
   at least ``shadow_scores`` scores in the fleet's sums; or, at the next poll, once
   another processor's verdict stands (followed at once). Per horizon, the version is not
   worse when its MAE, over the fleet's sums, is at most its reference's. It is
   **accepted** when it is not worse at some horizon and not worse than the active
   version at any horizon that version serves (no regression):
   it becomes the active version, forecasting at the horizons where it was not worse
   (the verdict's ``serves``; the previous version leaves). Else it is **refused**, and
   the active version stays. A batch model is often worse than persistence at the
   shortest horizons (a sensor's steps make "no change" hard to beat a minute ahead)
   and far better at the longer ones: it is weighed where it earned it.

The poll runs in a thread; the hot loop only adds up errors and, when a shadow ends,
switches what :data:`~online_models.batch_live.LIVE` forecasts with and queues the
verdict and the events, which the next poll writes (S3 never blocks the loop; an S3
error keeps them queued for the poll after). Each step is an event: a line in the log, ``iotcast_batch_events_total{kind}``, an
object ``models/<app>/_batch/v<N>/events/...`` (``iotcast models batch show N``), and for
a verdict ``v<N>/verdict.json``, written once (create-only): the first processor to end
its shadow judges on every processor's sums so far, and the others adopt its verdict.
What each process forecasts with is ``iotcast_batch_version{stage}``.

Exactly once: the batch models learn nothing in the processor and their trees are not
in any checkpoint; each horizon's blend of the champion and the batch expert keeps its
weights in the device's state like every model. A restart loads the current version again and, if its
verdict stands, weighs it at once, else shadows it afresh.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from monitoring import metrics as m
from online_models.batch_expert import FEATURES
from online_models.batch_live import ACTIVE, LIVE, SHADOW, STAGES, LiveExperts
from online_models.records import Score
from online_models.retrain import FORMAT, BatchModel
from stream.batch_registry import BatchRegistry, Manifest, UnknownBatchVersion, shadow_totals

__all__ = ["EVENT_KINDS", "BatchWatch", "Loaded", "zero_metrics"]

log = logging.getLogger(__name__)
REFERENCE_BEFORE_ANY = "persistence"  # what a first version must beat in its shadow


@dataclass
class Loaded:
    """A version loaded: its number, model and the horizons it serves here."""

    version: int
    model: BatchModel
    horizons: frozenset[int]


@dataclass
class _Shadow:
    """A version in shadow and its errors so far: per horizon, [its |error| sum, its scores,
    the reference's |error| sum, the reference's scores], this processor's (``sums``) and
    the other processors' shadowing it against the same reference, as of the last poll
    (``others``, added up over ``processors - 1`` of them)."""

    loaded: Loaded
    reference: dict[int, str]  # per horizon: the active version where it serves, else persistence
    started: float | None = None  # stream time of its first score
    sums: dict[int, list[float]] = field(default_factory=dict)
    others: dict[int, list[float]] = field(default_factory=dict)
    processors: int = 1

    def totals(self, h: int) -> list[float]:
        """The fleet's sums at horizon ``h`` so far: this processor's and the others'."""
        own, theirs = self.sums.get(h, _NONE), self.others.get(h, _NONE)
        return [a + b for a, b in zip(own, theirs, strict=True)]


_NONE = (0.0, 0, 0.0, 0)


EVENT_KINDS = ("batch_shadow", "batch_active", "batch_refused")


def zero_metrics() -> None:
    """The batch series from a processor's start, at zero (no version; no step yet), with or
    without ``--batch-expert``: a dashboard or an alert sees 0, not nothing."""
    for stage in STAGES:
        m.BATCH_VERSION.labels(stage).set(0)
    for kind in EVENT_KINDS:
        m.BATCH_EVENTS.labels(kind)


class BatchWatch:
    """Loads, shadows and judges the batch versions of one processor (module docstring)."""

    def __init__(
        self,
        registry: BatchRegistry,
        ref_id: str,
        horizons: Iterable[int],
        *,
        shadow_seconds: float = 86_400.0,
        shadow_scores: int = 1_000,
        live: LiveExperts = LIVE,
    ) -> None:
        self.registry = registry
        self.ref_id = ref_id
        self.horizons = frozenset(h for h in horizons if h > 0)
        self.shadow_seconds = shadow_seconds
        self.shadow_scores = shadow_scores
        self.live = live
        self.seen: int | None = None  # the current version last acted on
        self.active: Loaded | None = None
        self.shadow: _Shadow | None = None
        # reached in the hot loop, written to S3 by the next poll (never blocking the loop)
        self._decided: list[tuple[int, Manifest]] = []  # verdicts
        self._events: list[tuple[int, Manifest]] = []

    # ------------------------------------------------------------------ the poll (a thread)
    def poll(self) -> None:
        """Write the verdicts reached, then act on a change of the current version. Blocking
        (S3): run it off the event loop (:meth:`run`)."""
        self._flush()
        self._act()
        self._share()
        self._flush()

    def _act(self) -> None:
        cur = self.registry.current()
        if cur is None or cur.get("version") == self.seen:
            return
        version = int(cast(int, cur["version"]))
        self._act_on(cur, version)
        self.seen = version  # (not when S3 failed half-way: the next poll tries again)

    def _act_on(self, cur: Manifest, version: int) -> None:
        verdict = self.registry.verdict(version)
        if verdict is not None and verdict.get("outcome") == "refused":
            log.warning("batch v%d is current but was refused (%s)", version, verdict.get("reason"))
            self._fall_back(cur)
            return
        if self.active is not None and self.active.version == version:
            self._set_shadow(None)
            return
        if verdict is not None:  # accepted before: a rollback, or a restart
            self._reactivate(version, verdict, "accepted after its shadow before: weighed at once")
            return
        loaded = self._load(version)
        if loaded is not None:
            self._set_shadow(loaded)

    def _share(self) -> None:
        """While shadowing: follow the verdict if another processor wrote it; else write
        this processor's shadow errors, and read the other processors' (those against the
        same reference at a horizon) for the verdict."""
        shadow = self.shadow
        if shadow is None:
            return
        version = shadow.loaded.version
        verdict = self.registry.verdict(version)
        if verdict is not None:  # another processor finished first: follow its verdict now,
            self._set_shadow(None)  # as after a restart (an S3 error: again at the next poll)
            self.seen = None
            self._act()
            return
        refs = {str(h): self._name(r) for h, r in shadow.reference.items()}
        if shadow.started is not None:
            mine = {str(h): list(acc) for h, acc in list(shadow.sums.items())}
            self.registry.put_shadow(
                version, self.ref_id, {"by": self.ref_id, "reference": refs, "sums": mine}
            )
        theirs = self.registry.shadows(version, other_than=self.ref_id)
        totals, processors = shadow_totals(theirs, refs)  # one reference a horizon
        shadow.others = {h: total for (h, _), total in totals.items()}
        shadow.processors = 1 + processors

    def _flush(self) -> None:
        while self._events:
            version, event = self._events[0]
            self.registry.put_event(version, event)
            self._events.pop(0)
        while self._decided:
            version, verdict = self._decided[0]
            self._write_verdict(version, verdict)
            self._decided.pop(0)

    async def run(self, interval: float) -> None:
        """:meth:`poll` every ``interval`` seconds; S3 errors are logged and retried next time."""
        while True:
            try:
                await asyncio.to_thread(self.poll)
            except Exception as exc:  # S3 down, a bad object: the devices go on as they are
                log.warning("batch models: %s (retrying in %.0f s)", exc, interval)
            await asyncio.sleep(interval)

    def _load(self, version: int) -> Loaded | None:
        """The version, loaded and checked; None (refused, an event and a verdict) when it
        cannot serve. S3's own errors propagate: the next poll tries again."""
        model: object = None
        reason = "the artifact is empty"
        try:
            raw = self.registry.model_bytes(version)  # its sha256 checked
        except UnknownBatchVersion as exc:  # missing, or not what its manifest says
            raw, reason = b"", str(exc)
        if raw:
            try:
                model = pickle.loads(raw)
                reason = self._incompatible(model)
            except Exception as exc:  # an artifact that does not unpickle here, whatever the cause
                reason = f"cannot be loaded: {type(exc).__name__}: {exc}"
        if reason:
            self._event(version, "batch_refused", reason, {})
            self._decided.append((version, {"outcome": "refused", "reason": reason}))
            return None
        model = cast(BatchModel, model)
        return Loaded(version, model, frozenset(model.horizons) & self.horizons)

    def _incompatible(self, model: object) -> str:
        """Why a loaded object cannot serve here ("" when it can)."""
        if not isinstance(model, BatchModel):
            return f"not a batch model ({type(model).__name__})"
        if model.format != FORMAT:
            return f"model format {model.format}, this processor reads {FORMAT}: retrain it"
        if tuple(model.features) != FEATURES:
            return "trained on other features than this processor computes: retrain it"
        if "*" not in model.experts:
            return "per-device models are not served live yet: retrain with --scope global"
        if not frozenset(model.horizons) & self.horizons:
            return (
                f"trained for horizons {sorted(model.horizons)} s, the processor forecasts "
                f"{sorted(self.horizons)} s"
            )
        return ""

    def _fall_back(self, cur: Manifest) -> None:
        """The current version was refused: the newest accepted one in the history is active."""
        self._set_shadow(None)
        for entry in reversed(cast("list[dict[str, Any]]", cur.get("history", []))):
            v = int(entry["version"])
            if self.active is not None and self.active.version == v:
                return
            verdict = self.registry.verdict(v)
            if verdict is not None and verdict.get("outcome") == "accepted":
                self._reactivate(v, verdict, f"v{cur['version']} was refused: the newest accepted")
                return

    def _reactivate(self, version: int, verdict: Manifest, reason: str) -> None:
        """A version accepted before is weighed at once, at the horizons its verdict serves."""
        loaded = self._load(version)
        if loaded is not None:
            loaded.horizons &= frozenset(cast("list[int]", verdict.get("serves", [])))
            self._activate(loaded, reason)

    # ------------------------------------------------------------------ stages
    def _publish(self, stage: str, loaded: Loaded | None) -> None:
        """What ``stage`` forecasts with, in every device's models and in /metrics."""
        if loaded is None:
            self.live.set(stage, None, None)
        else:
            self.live.set(stage, loaded.version, loaded.model.experts["*"], loaded.horizons)
        m.BATCH_VERSION.labels(stage).set(0 if loaded is None else loaded.version)

    def _set_shadow(self, loaded: Loaded | None) -> None:
        self._publish("shadow", loaded)
        if loaded is None:
            self.shadow = None
            return
        serving = self.active.horizons if self.active is not None else frozenset()
        reference = {h: ACTIVE if h in serving else REFERENCE_BEFORE_ANY for h in loaded.horizons}
        self.shadow = _Shadow(loaded, reference)
        against = ", ".join(f"{h} s: {self._name(r)}" for h, r in sorted(reference.items()))
        self._event(
            loaded.version,
            "batch_shadow",
            f"in shadow against {against}: scored, not weighed, for at least "
            f"{self.shadow_seconds:.0f} s of stream time and {self.shadow_scores} scores a horizon",
            {"horizons": sorted(loaded.horizons)},
        )

    def _name(self, reference: str) -> str:
        return f"v{self.active.version}" if reference == ACTIVE and self.active else reference

    def _activate(self, loaded: Loaded, reason: str, figures: dict[str, Any] | None = None) -> None:
        previous = self.active.version if self.active is not None else None
        self.active = loaded
        self._publish("active", loaded)
        self._event(
            loaded.version, "batch_active", reason, {**(figures or {}), "previous": previous}
        )

    # ------------------------------------------------------------------ the hot path
    def observe(self, scores: Iterable[Score], ts: float) -> None:
        """A reading's scores: the shadow's and its reference's errors (cheap; between records)."""
        shadow = self.shadow
        if shadow is None:
            return
        reference, sums = shadow.reference, shadow.sums
        paired: set[tuple[int, float]] = set()  # the forecasts the shadow made and had scored
        for s in scores:
            if s.model == SHADOW:
                acc = sums.setdefault(s.horizon, [0.0, 0, 0.0, 0])
                acc[0] += abs(s.actual - s.predicted)
                acc[1] += 1
                paired.add((s.horizon, s.made_ts))
                if shadow.started is None:
                    shadow.started = ts
        if paired:  # the reference, on the same forecasts
            for s in scores:
                if s.model == reference.get(s.horizon) and (s.horizon, s.made_ts) in paired:
                    acc = sums[s.horizon]
                    acc[2] += abs(s.actual - s.predicted)
                    acc[3] += 1
        started = shadow.started
        if (
            started is not None
            and ts - started >= self.shadow_seconds
            and all(shadow.totals(h)[1] >= self.shadow_scores for h in shadow.loaded.horizons)
        ):
            self._judge(shadow)

    def _judge(self, shadow: _Shadow) -> None:
        """The shadow is over: accept (weighed from now at the horizons where it is not worse
        than its reference) or refuse the version (worse at every horizon, or worse than the
        active version at a horizon that version serves: no regression)."""
        figures: dict[str, Any] = {"horizons": {}, "processors": shadow.processors}
        serves: list[int] = []
        worse: list[int] = []
        for h in sorted(shadow.loaded.horizons):
            own, n, ref, n_ref = shadow.totals(h)
            ratio = (own / n) / (ref / n_ref) if n and n_ref and ref > 0 else math.inf
            figures["horizons"][str(h)] = {
                "reference": self._name(shadow.reference[h]), "ratio": ratio, "n": n,
                "mae": own / n if n else None, "reference_mae": ref / n_ref if n_ref else None,
            }  # fmt: skip
            (serves if ratio <= 1.0 else worse).append(h)
        regress = [h for h in worse if shadow.reference[h] == ACTIVE]
        accepted = bool(serves) and not regress
        figures["serves"] = serves if accepted else []
        version = shadow.loaded.version
        said = "; ".join(
            f"{h} s {f['ratio']:.3f}x {f['reference']}" for h, f in figures["horizons"].items()
        ) + (f" (on {shadow.processors} processors' devices)" if shadow.processors > 1 else "")
        if accepted:
            reason = f"shadow MAE {said}: accepted, weighed at {', '.join(map(str, serves))} s"
        elif regress:
            reason = f"shadow MAE {said}: worse than the active version: refused"
        else:
            reason = f"shadow MAE {said}: worse at every horizon: refused"
        self._set_shadow(None)
        if accepted:
            loaded = Loaded(version, shadow.loaded.model, frozenset(serves))
            self._activate(loaded, reason, figures)
        else:
            self._event(version, "batch_refused", reason, figures)
        self._decided.append(
            (
                version,
                {"outcome": "accepted" if accepted else "refused", "reason": reason, **figures},
            )
        )

    # ------------------------------------------------------------------ records
    def _event(self, version: int, kind: str, reason: str, figures: dict[str, Any]) -> None:
        m.BATCH_EVENTS.labels(kind).inc()
        (log.warning if kind == "batch_refused" else log.info)(
            "batch v%d %s: %s", version, kind, reason
        )
        event = {"kind": kind, "by": self.ref_id, "at": time.time(), "reason": reason, **figures}
        self._events.append((version, event))  # to S3 with the next poll (kept until written)

    def _write_verdict(self, version: int, verdict: Manifest) -> None:
        body = {**verdict, "by": self.ref_id, "at": time.time()}
        stands = self.registry.put_verdict(version, body)
        if stands.get("by") != self.ref_id and stands.get("outcome") != verdict.get("outcome"):
            log.warning(
                "batch v%d: %s judged it %s first; this process follows",
                version, stands.get("by"), stands.get("outcome"),
            )  # fmt: skip
            self.seen = None  # the next poll acts on the verdict that stands
            if self.active is not None and self.active.version == version:
                self.active = None
                self._publish("active", None)

"""The retrain job's work, without I/O: readings in, a validated batch model and its manifest out.

:func:`retrain` turns readings (any order of devices, each device in time order) into the
batch expert's examples (:class:`~online_models.batch_expert.PairBuilder`, the processor's
forecast grid), holds out the examples whose target time falls in the last
``holdout_days`` of the data, trains on the rest, scores the held-out ones against
persistence per horizon, then retrains on everything (the model shipped has seen the
latest days; its validation figures are those of the same recipe one holdout earlier).

``scope="global"``: one model across devices (the device features tell them apart, and a
new device is served from its first day); ``scope="device"``: one model per device (a
device with too few examples gets none).

:class:`BatchModel` is what the artifact holds: picklable, only lists, floats and strings.

>>> import math
>>> from telemetry.reading import Reading
>>> readings = [Reading(1.6e9 + 3600 * i, "d", temp=20 + 3 * math.sin(i * math.pi / 12))
...             for i in range(24 * 16)]
>>> out = retrain(readings, horizons=(3600,), holdout_days=2, max_iter=30)
>>> v = out.validation[3600]
>>> v["n"] > 0 and v["mae"] < v["persistence_mae"]
True
>>> m = out.model
>>> m.scope, sorted(m.experts), m.horizons
('global', ['*'], (3600,))
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from online_models.batch_expert import DEFAULTS, FEATURES, BatchExpert, Examples, PairBuilder, fit
from telemetry.reading import Reading, is_glitch

__all__ = ["FORMAT", "BatchModel", "Retrained", "examples_from", "library_versions", "retrain"]

FORMAT = 1  # of the BatchModel's pickle; a processor refuses another
DAY = 86_400.0
MIN_EXAMPLES = 200  # a per-device model needs at least this many


@dataclass
class BatchModel:
    """The artifact's model: the experts (``"*"`` for the global one, else per device), the
    horizons and grid they were made for, and the feature names in column order."""

    scope: str
    experts: dict[str, BatchExpert]
    horizons: tuple[int, ...]
    per_horizon: int
    features: tuple[str, ...] = FEATURES
    format: int = FORMAT

    def expert_for(self, device: str) -> BatchExpert | None:
        """The model that forecasts ``device`` (None: a per-device model set without it)."""
        return self.experts.get("*") or self.experts.get(device)


@dataclass
class Retrained:
    """A retrain's result: the model, its validation per horizon (``mae``,
    ``persistence_mae``, ``n``), the data window and the figures of the work."""

    model: BatchModel
    validation: dict[int, dict[str, float | int]]
    window: dict[str, Any]
    cpu_s: dict[str, float] = field(default_factory=dict)


def examples_from(
    readings: Iterable[Reading],
    horizons: Iterable[int],
    per_horizon: int = 60,
    target: str = "temp",
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Examples], dict[str, object]]:
    """Per device, the examples of its readings (by column); and the data window (first and
    last time, readings used, skipped, devices)."""
    builders: dict[str, PairBuilder] = {}
    out: dict[str, Examples] = {}
    first, last = math.inf, -math.inf
    used = skipped = n = 0
    hs = tuple(horizons)
    for r in readings:
        n += 1
        if progress is not None and n % 50_000 == 0:
            progress(n)
        y = getattr(r, target, None)
        if y is None or is_glitch(r):
            skipped += 1
            continue
        b = builders.get(r.device)
        if b is None:
            b = builders[r.device] = PairBuilder(hs, per_horizon, r.device)
            out[r.device] = Examples()
        if b.last_ts is not None and r.ts <= b.last_ts:
            skipped += 1  # duplicate or late: the processor does not learn it either
            continue
        out[r.device].extend(b.add(r.ts, float(y)).done)
        used += 1
        first, last = min(first, r.ts), max(last, r.ts)
    window: dict[str, object] = {
        "first_ts": first if used else None,
        "last_ts": last if used else None,
        "readings": used,
        "skipped": skipped,
        "devices": sorted(out),
    }
    return out, window


def _score(expert: BatchExpert, examples: Examples) -> tuple[np.ndarray, np.ndarray]:
    x, chunk = examples.features(), 10_000  # rows as lists (fast to walk), a chunk at a time
    pred = np.concatenate(
        [expert.predict_many(x[i : i + chunk].tolist()) for i in range(0, len(x), chunk)]
    )
    dy = examples.changes()
    return np.abs(dy - pred), np.abs(dy)


def _train(
    by_device: dict[str, Examples], scope: str, params: dict[str, object]
) -> dict[str, BatchExpert]:
    if scope == "global":
        every = Examples.joined(by_device.values())
        return {"*": fit(every, **params)} if len(every) else {}
    return {d: fit(exs, **params) for d, exs in by_device.items() if len(exs) >= MIN_EXAMPLES}


def _shuffled(by_device: dict[str, Examples], seed: int) -> dict[str, Examples]:
    """The same examples with their targets permuted across all of them (a drill)."""
    flat = np.concatenate([exs.changes() for exs in by_device.values()])
    targets = np.random.default_rng(seed).permutation(flat)
    out, at = {}, 0
    for d, exs in by_device.items():
        out[d] = exs.with_changes(targets[at : at + len(exs)])
        at += len(exs)
    return out


def retrain(
    readings: Iterable[Reading],
    *,
    horizons: Iterable[int] = (60, 900, 3600),
    per_horizon: int = 60,
    scope: str = "global",
    holdout_days: float = 2.0,
    target: str = "temp",
    progress: Callable[[str], None] | None = None,
    shuffle_seed: int | None = None,
    **params: object,
) -> Retrained:
    """Examples, a held-out validation, the final model (see the module docstring).

    ``shuffle_seed`` (a drill: a deliberately bad model) shuffles the targets among the
    examples before training, with that seed: the model learns nothing true, and a
    processor's shadow must refuse it.

    Raises ``ValueError`` with what to change when there is nothing to train on, or the
    held-out days leave nothing to train on."""
    if scope not in ("global", "device"):
        raise ValueError(f"scope must be global or device, got {scope!r}")
    hs = tuple(sorted({int(h) for h in horizons if int(h) > 0}))
    if not hs:
        raise ValueError("give at least one forecast horizon > 0 seconds")
    say = progress or (lambda _line: None)
    cpu0 = time.process_time()
    by_device, window = examples_from(
        readings, hs, per_horizon, target, lambda n: say(f"read {n:,} readings")
    )
    total = sum(len(v) for v in by_device.values())
    if not total:
        raise ValueError(
            f"no examples: {window['readings']:,} usable readings of {target!r} "
            f"({window['skipped']:,} skipped) never reach a target time {max(hs)} s ahead; "
            "give more data (--days) or shorter horizons"
        )
    cpu_features = time.process_time() - cpu0
    cut = float(cast(float, window["last_ts"])) - holdout_days * DAY
    train = {d: exs.where(exs.times() + exs.horizons() <= cut) for d, exs in by_device.items()}
    held = {d: exs.where(exs.times() > cut) for d, exs in by_device.items()}  # no overlap
    if shuffle_seed is not None:  # the drill: trained on lies, validated on the truth
        train, by_device = _shuffled(train, shuffle_seed), _shuffled(by_device, shuffle_seed)
    n_train = sum(len(v) for v in train.values())
    n_held = sum(len(v) for v in held.values())
    if holdout_days > 0 and (n_train < MIN_EXAMPLES or not n_held):
        raise ValueError(
            f"holding out the last {holdout_days:g} days leaves {n_train:,} examples to train "
            f"on and {n_held:,} to validate: give more days of data or a shorter --holdout-days"
        )
    params = {**DEFAULTS, **params}
    validation: dict[int, dict[str, float | int]] = {}
    cpu1 = time.process_time()
    if holdout_days > 0:
        say(f"validating: training on {n_train:,} examples, holding out {n_held:,}")
        experts = _train(train, scope, params)
        errs: dict[int, list[np.ndarray]] = {h: [] for h in hs}
        pers: dict[int, list[np.ndarray]] = {h: [] for h in hs}
        for d, exs in held.items():
            expert = experts.get("*") or experts.get(d)
            for h in hs:
                part = exs.where(exs.horizons() == h)
                if expert is None or not len(part):
                    continue
                e_model, e_pers = _score(expert, part)
                errs[h].append(e_model)
                pers[h].append(e_pers)
        for h in hs:
            if errs[h]:
                a, p = np.concatenate(errs[h]), np.concatenate(pers[h])
                validation[h] = {
                    "n": int(a.size),
                    "mae": float(a.mean()),
                    "persistence_mae": float(p.mean()),
                }
    cpu_validate = time.process_time() - cpu1
    del train, held  # (copies: the final model trains on all the examples)
    say(f"training the final model on {total:,} examples")
    cpu2 = time.process_time()
    model = BatchModel(scope, _train(by_device, scope, params), hs, per_horizon)
    cpu_final = time.process_time() - cpu2
    window.update(
        examples=total,
        holdout_days=holdout_days,
        holdout_from_ts=cut if holdout_days > 0 else None,
        examples_train=n_train,
        examples_held_out=n_held,
    )
    return Retrained(
        model,
        validation,
        window,
        {"features": cpu_features, "validate": cpu_validate, "final": cpu_final},
    )


def library_versions() -> dict[str, str]:
    """The versions the artifact was made with (a processor may refuse other ones)."""
    from importlib.metadata import PackageNotFoundError, version

    import sklearn

    try:
        ours = version("iotcast")
    except PackageNotFoundError:
        ours = "unknown"
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "iotcast": str(ours),
    }

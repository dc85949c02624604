"""The model-set format of a device's checkpoint: what this code writes, what it can read.

A device's checkpoint artifact is its pickled :class:`~online_models.device.DeviceModels`:
the attributes of that class and of the objects it holds (features, models, pending
forecasts, scores) are the format.  Every artifact is written with :data:`FORMAT`, and
the number is recorded beside the artifact's sha256 in the shard manifest and in the
artifact's own ``manifest.json`` (``stream.checkpoint.DeviceEntry.format``; manifests
written before formats were recorded have none and mean :data:`LEGACY`).  Every load
goes through :func:`loads`, which checks the recorded format *before* unpickling:

- a format in :data:`READS` loads, then its migration runs (old object -> current object);
- any other format (newer than this code, or old and no longer supported) is refused
  with :class:`IncompatibleFormat`, whose message says what to do; nothing is unpickled.

**Changing DeviceModels' state is done here, in one place:**

1. bump :data:`FORMAT`;
2. in :data:`READS`, give each older format you still read a migration (a function
   ``models -> models`` that completes an object unpickled from the old state, e.g.
   adds the new attributes or models with fresh state), or delete its line to refuse it;
   classes renamed or moved since go in :data:`RENAMED`;
3. run ``tests/fixtures/checkpoints/make_fixture.py`` to add the new format's fixture;
   ``tests/test_checkpoint_format.py`` then loads every fixture, old and new.

A fleet rolls forward image by image (deploy/README.md, "A new model version"): new
processors read the old format, old processors refuse the new one and leave its shards
to new processors.

>>> FORMAT in READS
True
>>> try:
...     check(FORMAT + 1, "d1")
... except IncompatibleFormat as e:
...     print(e.format == FORMAT + 1, "newer" in str(e))
True True
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from online_models.device import DeviceModels

__all__ = [
    "FORMAT",
    "LEGACY",
    "READS",
    "RENAMED",
    "IncompatibleFormat",
    "check",
    "dumps",
    "loads",
]

# The format this code writes.  Bump it when DeviceModels' pickled state changes.
# 2: the guarded model set (horizon features, the forecast grid, the served series, the
#    ridge and the ensemble in the default set).
# 3: any subset of sensors: each tracked variable's own last time (``FeatureState.seen``)
#    and the declared extras; each pending forecast keeps the names of its features (a
#    shared tuple, ``Pending.keys``, interned in ``DeviceModels.key_sets``); the
#    ``n_no_target`` count.
# 4: the project's models are River estimators: hyperparameters under their ``__init__``
#    names, learned state private (``ForgettingRidge._coef``, ``ExpWeighted._loss``,
#    ``Resampled.step`` now the narrowest bin width, the chosen one ``_step``...).
# 5: the served forecast's prediction intervals: each horizon's ``band``
#    (online_models.intervals.Band), with the offsets of the forecasts it published.
# 6: the device's anomaly watch (``DeviceModels.watch``, online_models.anomaly.Watch), the
#    anomalies it reported as going on (``ongoing``), the readings it held back
#    (``n_held``), and the horizons' order (``order``: the nowcast first).
# 7: each band's lattice of readings (``Band._step``, ``Band._last``), to snap its intervals to.
FORMAT = 7

# The format of artifacts whose manifests record none (written before formats were recorded,
# up to commit 0e4ad41): the same state as format 1.
LEGACY = 1


def _as_is(models: Any) -> Any:
    return models


def _from_1(models: Any) -> Any:
    """Format 1 -> 3: the device keeps every model whose spec is unchanged (state, scores,
    champion) and gains the models the built-in catalog now runs by default; its pending
    forecasts (of the old layout) are dropped and counted; then as format 2."""
    from online_models.catalog import load_catalog
    from online_models.device import upgrade

    catalog = load_catalog()
    names = [*catalog.select("default").names]
    names += [s.name for s in models.catalog if s.name in catalog and s.name not in names]
    return _from_2(upgrade(models, catalog, names))


def _from_2(models: Any) -> Any:
    """Format 2 -> 3: every reading carried every sensor, so each tracked variable was last
    seen at the device's last reading, every pending forecast kept the features of the
    first reading's names (``feature_keys``), and no reading lacked the target."""
    fs = models.features
    if "seen" not in fs.__dict__:
        fs.seen = dict.fromkeys(fs.prev, fs.last_ts)
        fs.extras = ()
    state = models.__dict__
    state.setdefault("n_no_target", 0)
    keys = models.feature_keys
    if "key_sets" not in state:
        models.key_sets = {} if keys is None else {keys: keys}
    for hz in models.horizons.values():
        pending = hz.pending
        if "keys" not in pending.__dict__:
            pending.keys = [keys if flags & 3 else None for flags in pending.flags]
    return models


def _from_3(models: Any) -> Any:
    """Format 3 -> 4: nothing to do here. Each model class maps its own learned state from
    the public names format 3 pickled to its private ones, in ``__setstate__``, wherever the
    object sits (in a wrapper, in any horizon); a format-4 processor reads format 3 as it is.
    The format changed so that a processor of format 3 refuses what this code writes."""
    return models


def _from_4(models: Any) -> Any:
    """Format 4 -> 5: each horizon gains its interval band (the task's levels), which owes
    the forecasts already pending an interval: they are scored on the offsets of the day."""
    from online_models.intervals import Band

    for hz in models.horizons.values():
        if "band" not in hz.__dict__:
            hz.band = Band(models.task.interval_levels)
            hz.band.owe(len(hz.pending))
    return models


def _from_5(models: Any) -> Any:
    """Format 5 -> 6: the device gains a fresh anomaly watch (it learns the device's usual
    cadence, runs and levels from the next readings on, and reports nothing before: its
    thresholds are multiples of what it has seen), nothing going on, nothing held."""
    from online_models.anomaly import Watch

    state = models.__dict__
    if state.get("watch") is None:
        models.watch = Watch(models.device)
        models.n_held = state.get("n_held", 0)
        models.ongoing = state.get("ongoing") or {}
    if "order" not in state:
        models.order = sorted(models.horizons.items(), key=lambda item: item[0] != 0)
    return models


def _from_6(models: Any) -> Any:
    """Format 6 -> 7: nothing to do here. A band pickled without its lattice gets none in
    ``Band.__setstate__`` and learns it from its next targets (until then it publishes as
    format 6 did). The format changed so that a processor of format 6 refuses what this code
    writes."""
    return models


# format -> migration run after unpickling (``_as_is`` for the current format).
READS: dict[int, Callable[[Any], Any]] = {
    1: lambda models: _from_6(_from_5(_from_4(_from_1(models)))),
    2: lambda models: _from_6(_from_5(_from_4(_from_2(models)))),
    3: lambda models: _from_6(_from_5(_from_4(_from_3(models)))),
    4: lambda models: _from_6(_from_5(_from_4(models))),
    5: lambda models: _from_6(_from_5(models)),
    6: _from_6,
    7: _as_is,
}

# (old module, old name) -> (new module, new name), for classes moved or renamed since an
# older format that READS still lists.
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("online_models.device", "_Horizon"): ("online_models.horizon_models", "HorizonModels"),
}


class IncompatibleFormat(ValueError):
    """A checkpoint whose model-set format this code cannot read (``format`` is its number)."""

    def __init__(self, fmt: int, message: str) -> None:
        super().__init__(message)
        self.format = fmt


def check(fmt: int, device: str) -> None:
    """Raise :class:`IncompatibleFormat` unless artifacts of format ``fmt`` are readable here."""
    if fmt in READS:
        return
    readable = ", ".join(map(str, sorted(READS)))
    if fmt > FORMAT:
        advice = (
            "it was written by a newer iotcast. Run the newer image for this app (an older "
            "processor leaves such shards to the newer ones during a rolling deployment); to "
            "roll back, restore the shard manifests of before the upgrade (S3 versioning) or "
            "remove them, and the devices' models start afresh"
        )
    else:
        advice = (
            "this iotcast no longer reads it. Roll out an image that still reads it, or "
            "remove the shard's manifest and the devices' models start afresh"
        )
    raise IncompatibleFormat(
        fmt,
        f"the checkpoint of device {device!r} has model-set format {fmt}; this iotcast writes "
        f"format {FORMAT} and reads {readable}: {advice}",
    )


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module, name = RENAMED.get((module, name), (module, name))
        return super().find_class(module, name)


def dumps(models: DeviceModels) -> bytes:
    """The artifact of ``models`` in format :data:`FORMAT`."""
    return pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)


def loads(payload: bytes, fmt: int, device: str) -> DeviceModels:
    """The current ``DeviceModels`` from an artifact of format ``fmt`` (checked first, migrated).

    Only call it on bytes whose sha256 (and, with a key, signature) has been verified:
    unpickling runs code.
    """
    check(fmt, device)
    models: DeviceModels = READS[fmt](_Unpickler(io.BytesIO(payload)).load())
    return models

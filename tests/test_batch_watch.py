"""The batch models' lifecycle in a processor (stream.batch_watch), on a registry in a directory.

The registry's S3 side is exercised by tests/test_batch_loop.py against moto; here the
watch's decisions: shadow, verdicts, refusals, rollbacks and restarts.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest

from online_models.batch_expert import BatchExpert
from online_models.batch_live import ACTIVE, LIVE, SHADOW, LiveExperts
from online_models.catalog import load_catalog
from online_models.combination import ExpWeighted
from online_models.config import TaskConfig
from online_models.device import DeviceModels
from online_models.records import SERVED, Score
from online_models.retrain import BatchModel
from stream.batch_registry import BatchRegistry, DirectoryObjects
from stream.batch_watch import BatchWatch
from telemetry.generate import generate

HORIZONS = (0, 60, 900)


def model(change: float, **kw: object) -> bytes:
    """A batch model that always predicts ``change`` (no trees): enough to tell versions apart."""
    fields = {"scope": "global", "experts": {"*": BatchExpert([], change)}, "horizons": (60, 900)}
    fields.update(kw)
    return pickle.dumps(BatchModel(per_horizon=60, **fields))  # type: ignore[arg-type]


@pytest.fixture
def reg(tmp_path: Path) -> BatchRegistry:
    return BatchRegistry(DirectoryObjects(tmp_path), "app")


def watch(
    reg: BatchRegistry, live: LiveExperts, ref_id: str = "proc-1", **kw: object
) -> BatchWatch:
    opts: dict = {"shadow_seconds": 100.0, "shadow_scores": 20, **kw}
    return BatchWatch(reg, ref_id, HORIZONS, live=live, **opts)


def two_shadowing_v1(reg: BatchRegistry) -> tuple[LiveExperts, BatchWatch, LiveExperts, BatchWatch]:
    """Two processors, v1 promoted, each with v1 in shadow."""
    live1, live2 = LiveExperts(), LiveExperts()
    w1, w2 = watch(reg, live1, "proc-1"), watch(reg, live2, "proc-2")
    reg.promote(reg.put(model(0.1), {}), by="test")
    w1.poll()
    w2.poll()
    return live1, w1, live2, w2


def feed(w: BatchWatch, errors: dict[str, float], n: int, t0: float = 0.0) -> None:
    """``n`` readings 10 s apart, each scoring every model of ``errors`` at both horizons."""
    for i in range(n):
        ts = t0 + 10.0 * i
        w.observe(
            [
                Score(name, h, ts - h, ts, 20.0 + e, 20.0)
                for name, e in errors.items()
                for h in (60, 900)
            ],
            ts,
        )


def v1_active(reg: BatchRegistry) -> tuple[LiveExperts, BatchWatch]:
    """A watch whose first version went through its shadow and is weighed."""
    live = LiveExperts()
    w = watch(reg, live)
    reg.promote(reg.put(model(0.1), {}), by="test")
    w.poll()
    feed(w, {SHADOW: 0.2, "persistence": 0.5}, 30)
    w.poll()
    assert live.version("active") == 1
    return live, w


def kinds(reg: BatchRegistry, version: int) -> list[str]:
    return [e["kind"] for e in reg.events(version)]


def test_a_first_version_is_shadowed_against_persistence_then_weighed(reg: BatchRegistry) -> None:
    live = LiveExperts()
    w = watch(reg, live)
    w.poll()  # nothing current: nothing loaded
    assert live.version("active") is None and live.version("shadow") is None
    reg.promote(reg.put(model(0.1), {}), by="test")
    w.poll()
    assert (live.version("shadow"), live.version("active")) == (1, None)
    assert live.expert("shadow", 60) is not None and live.expert("shadow", 3600) is None
    feed(w, {SHADOW: 0.2, "persistence": 0.5}, 5)  # too few scores, too short: still shadow
    assert live.version("shadow") == 1
    feed(w, {SHADOW: 0.2, "persistence": 0.5}, 30, t0=50.0)
    assert (live.version("shadow"), live.version("active")) == (None, 1)
    w.poll()  # writes the verdict and the events
    verdict = reg.verdict(1)
    assert verdict is not None and verdict["outcome"] == "accepted"
    assert verdict["serves"] == [60, 900]
    assert {(h, f["reference"], round(f["ratio"], 6)) for h, f in verdict["horizons"].items()} == {
        ("60", "persistence", 0.4), ("900", "persistence", 0.4),
    }  # fmt: skip
    assert kinds(reg, 1) == ["batch_shadow", "batch_active"]


def test_a_worse_version_is_refused_and_a_rollback_applies_at_once(reg: BatchRegistry) -> None:
    live, w = v1_active(reg)
    assert live.version("active") == 1
    # v2 is worse than v1 on the same forecasts: refused, v1 stays weighed
    reg.promote(reg.put(model(5.0), {}), by="retrain")
    w.poll()
    assert (live.version("shadow"), live.version("active")) == (2, 1)
    feed(w, {SHADOW: 0.9, ACTIVE: 0.2, "persistence": 0.5}, 30, t0=1000.0)
    w.poll()
    assert (live.version("shadow"), live.version("active")) == (None, 1)
    refused = reg.verdict(2)
    assert refused is not None and refused["outcome"] == "refused" and refused["serves"] == []
    assert {f["reference"] for f in refused["horizons"].values()} == {"v1"}
    assert kinds(reg, 2) == ["batch_shadow", "batch_refused"]
    # v3 is better: weighed; then an operator rolls back to v1: weighed at once, no shadow
    reg.promote(reg.put(model(0.0), {}), by="retrain")
    w.poll()
    feed(w, {SHADOW: 0.1, ACTIVE: 0.2}, 30, t0=2000.0)
    assert live.version("active") == 3
    reg.rollback(1, by="ops", reason="v3 misbehaves at night")
    w.poll()
    assert (live.version("shadow"), live.version("active")) == (None, 1)
    assert kinds(reg, 1)[-1] == "batch_active"
    # a restart with a refused version current weighs the newest accepted one of the history
    reg.promote(2, by="ops")
    fresh = LiveExperts()
    watch(reg, fresh).poll()
    assert (fresh.version("shadow"), fresh.version("active")) == (None, 1)


def test_a_version_serves_where_it_was_not_worse_and_may_not_regress(reg: BatchRegistry) -> None:
    live = LiveExperts()
    w = watch(reg, live)
    reg.promote(reg.put(model(0.1), {}), by="test")
    w.poll()
    # worse than persistence a minute ahead, better at 15 minutes: weighed at 900 s only
    for i in range(30):
        ts = 10.0 * i
        w.observe([Score(SHADOW, 60, ts - 60, ts, 20.3, 20.0), Score("persistence", 60, ts - 60, ts, 20.1, 20.0),
                   Score(SHADOW, 900, ts - 900, ts, 20.2, 20.0), Score("persistence", 900, ts - 900, ts, 20.5, 20.0)], ts)  # fmt: skip
    assert live.version("active") == 1
    assert live.expert("active", 900) is not None and live.expert("active", 60) is None
    w.poll()
    assert reg.verdict(1)["serves"] == [900]  # type: ignore[index]
    # v2 better than persistence at 60 s, worse than v1 at 900 s (which v1 serves): refused
    reg.promote(reg.put(model(0.0), {}), by="test")
    w.poll()
    for i in range(30):
        ts = 1000.0 + 10.0 * i
        w.observe([Score(SHADOW, 60, ts - 60, ts, 20.0, 20.0), Score("persistence", 60, ts - 60, ts, 20.1, 20.0),
                   Score(ACTIVE, 900, ts - 900, ts, 20.2, 20.0), Score(SHADOW, 900, ts - 900, ts, 20.4, 20.0)], ts)  # fmt: skip
    w.poll()
    assert reg.verdict(2)["outcome"] == "refused" and live.version("active") == 1  # type: ignore[index]
    assert "worse than the active version" in reg.verdict(2)["reason"]  # type: ignore[index]
    # a restart weighs v1 where its verdict says, at once
    fresh = LiveExperts()
    reg.rollback(1, by="ops")
    watch(reg, fresh).poll()
    assert fresh.expert("active", 900) is not None and fresh.expert("active", 60) is None


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("corrupt", "sha256"),
        ("features", "other features"),
        ("device", "per-device"),
        ("horizons", "horizons [3600]"),
        ("format", "format 99"),
    ],
)
def test_an_unloadable_version_is_refused_and_the_devices_go_on(
    reg: BatchRegistry, tmp_path: Path, bad: str, says: str
) -> None:
    live, w = v1_active(reg)
    kw: dict = {
        "features": {"features": ("x",)},
        "device": {"scope": "device", "experts": {"d1": BatchExpert([], 0.0)}},
        "horizons": {"horizons": (3600,)},
        "format": {"format": 99},
    }.get(bad, {})
    version = reg.put(model(0.0, **kw), {})
    reg.promote(version, by="test")
    if bad == "corrupt":  # damaged after it was promoted
        (tmp_path / f"models/app/_batch/v{version}/model.pkl").write_bytes(b"not the model")
    w.poll()
    assert (live.version("shadow"), live.version("active")) == (None, 1)
    verdict = reg.verdict(version)
    assert verdict is not None and verdict["outcome"] == "refused" and says in verdict["reason"]
    assert kinds(reg, version) == ["batch_refused"]


class FlakyObjects(DirectoryObjects):
    """A directory whose first read of a model fails as a network error would (the watch's
    retry is tested, not the store)."""

    failed = False

    def get(self, key: str) -> bytes | None:
        if key.endswith("model.pkl") and not self.failed:
            self.failed = True
            raise ConnectionError("S3 unreachable")
        return super().get(key)


def test_a_store_error_while_loading_is_retried_not_taken_for_a_refusal(tmp_path: Path) -> None:
    objects = FlakyObjects(tmp_path)
    reg = BatchRegistry(objects, "app")
    live = LiveExperts()
    w = watch(reg, live)
    objects.failed = True  # (promote reads the model too)
    reg.promote(reg.put(model(0.1), {}), by="test")
    objects.failed = False
    with pytest.raises(ConnectionError):
        w.poll()
    assert live.version("shadow") is None and reg.verdict(1) is None
    w.poll()  # the next poll: loaded, in shadow, and never refused
    assert live.version("shadow") == 1 and reg.verdict(1) is None


class _Broken(ExpWeighted):
    """A blend whose calls raise (the guard's wiring is tested, not the blend)."""

    def predict_one(self, x):  # type: ignore[no-untyped-def, override]
        raise RuntimeError("broken blend")

    def learn_one(self, x, y, w=1.0):  # type: ignore[no-untyped-def, override]
        raise RuntimeError("broken blend")


def test_the_blend_of_champion_and_batch_expert_is_guarded() -> None:
    from online_models.horizon_models import BLEND

    task = TaskConfig(horizons=(0, 60))
    models = [*load_catalog().select("default").names, ACTIVE, SHADOW]
    readings = list(generate(days=0.02, seed=3, devices=1))
    dm = DeviceModels(readings[0].device, load_catalog(), task, models=models)
    LIVE.set("active", 1, BatchExpert([], 0.0), frozenset({60}))
    try:
        for r in readings[:100]:
            dm.step(r)
        dm.horizons[60].blend = _Broken(60, (SERVED, ACTIVE))
        results = [dm.step(r) for r in readings[100:160]]
    finally:
        LIVE.set("active", None, None)
    resets = [e for res in results for e in res.events if e.kind == "model_reset"]
    assert resets and {(e.model, e.horizon) for e in resets} == {(BLEND, 60)}
    blend = dm.horizons[60].blend
    assert type(blend) is ExpWeighted  # a fresh one took the broken one's place
    served = [
        p for res in results for p in res.predictions if p.model == SERVED and p.horizon == 60
    ]
    assert served and all(math.isfinite(p.value) for p in served)
    assert any(p.source.endswith("+" + ACTIVE) for p in served)  # weighed again after the reset


def test_the_verdict_is_judged_on_every_processors_devices(reg: BatchRegistry) -> None:
    """Two processors shadow v1: on the first one's devices it is far better than
    persistence, on the second's a little worse. The second finishes its shadow first,
    on its devices and the first one's sums from S3: the fleet's verdict, accepted. On its
    own devices alone it would have refused v1 for everyone."""
    live1, w1, live2, w2 = two_shadowing_v1(reg)
    feed(w1, {SHADOW: 0.1, "persistence": 0.5}, 15)  # 140 s, but 15 scores a horizon: not over
    assert live1.version("shadow") == 1
    w1.poll()  # writes its shadow errors
    w2.poll()  # reads them
    feed(w2, {SHADOW: 0.6, "persistence": 0.5}, 11)  # 100 s, and 15 + 11 scores a horizon
    assert (live2.version("shadow"), live2.version("active")) == (None, 1)
    w2.poll()
    verdict = reg.verdict(1)
    assert verdict is not None and (verdict["outcome"], verdict["by"]) == ("accepted", "proc-2")
    assert verdict["processors"] == 2
    ratio = (15 * 0.1 + 11 * 0.6) / (26 * 0.5)
    assert {h: (f["n"], round(f["ratio"], 6)) for h, f in verdict["horizons"].items()} == {
        "60": (26, round(ratio, 6)), "900": (26, round(ratio, 6)),
    }  # fmt: skip
    assert "on 2 processors' devices" in verdict["reason"]
    w1.poll()  # the first one adopts the verdict that stands, at once
    assert (live1.version("shadow"), live1.version("active")) == (None, 1)


def test_following_another_processors_verdict_survives_a_store_error(tmp_path: Path) -> None:
    objects = FlakyObjects(tmp_path)
    objects.failed = True  # no failure while the two load v1
    reg = BatchRegistry(objects, "app")
    live1, w1, live2, w2 = two_shadowing_v1(reg)
    feed(w2, {SHADOW: 0.2, "persistence": 0.5}, 30)
    w2.poll()  # its verdict: accepted
    objects.failed = False  # w1's read of the model to follow it fails once
    with pytest.raises(ConnectionError):
        w1.poll()
    assert (live1.version("shadow"), live1.version("active")) == (None, None)
    w1.poll()  # the next poll follows the verdict
    assert (live1.version("shadow"), live1.version("active")) == (None, 1)

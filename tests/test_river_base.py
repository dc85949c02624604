"""Our models are River estimators: River's own checks pass, ``clone()`` gives a fresh model
with the same parameters, the guard resets through it, ``upgrade()`` compares
``_get_params()``, and checkpoints pickled with the older (public) state names still load
and predict what they did.

River's checks (``river.checks``, River 0.26's home of the estimator checks) run with
River's own regression data (TrumpApproval: five polls and a date). Those that do not
apply are named by each class's ``_unit_test_skips()``, River's way, with the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from river import base, checks, linear_model

from online_models import checkpoint_format
from online_models.adapters import Anchored, Resampled
from online_models.baselines import Persistence, RollingMean, SeasonalNaive
from online_models.catalog import Catalog, load_catalog
from online_models.combination import ExpWeighted
from online_models.config import TaskConfig
from online_models.device import DeviceModels, upgrade
from online_models.guard import fresh_model
from online_models.ridge import ForgettingRidge
from telemetry.generate import generate
from telemetry.reading import Reading

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"

MODELS: dict[str, base.Regressor] = {
    "ForgettingRidge": ForgettingRidge(),
    "ExpWeighted": ExpWeighted(**next(ExpWeighted._unit_test_params())),
    "Anchored(ForgettingRidge)": Anchored(**next(Anchored._unit_test_params())),
    # the nowcast's way: no target among the features (anchored at the running mean), and
    # a plain dict, so the adapter standardises with its own scaler
    "Anchored(LinearRegression,scaled)": Anchored(
        linear_model.LinearRegression(), "temp", scaled=True
    ),
    "Persistence": Persistence("gallup"),
    "RollingMean": RollingMean("temp"),
    "SeasonalNaive": SeasonalNaive(),
    "Resampled(SNARIMAX)": Resampled(**next(Resampled._unit_test_params())),
}


def _series(n: int) -> list[tuple[dict[str, float], float]]:
    """A series model's data: a reading every 10 s of a slow wave ({"ts": t}, value)."""
    return [({"ts": 10.0 * i}, 20.0 + math.sin(i / 50)) for i in range(n)]


def _river_checks() -> Iterator[Any]:
    for label, model in MODELS.items():
        skips = model._unit_test_skips()
        for i, check in enumerate(checks.yield_checks(model)):
            name = check.__name__
            if name in skips:
                continue
            if isinstance(model, Resampled) and isinstance(check, functools.partial):
                # its one feature is the time: River's regression data has none
                n = 2000 if name == "check_bounded_memory_growth" else 400
                check = functools.partial(check.func, dataset=_series(n))
            yield pytest.param(model, check, id=f"{label}-{name}-{i}")


@pytest.mark.parametrize(("model", "check"), list(_river_checks()))
def test_our_models_pass_rivers_estimator_checks(
    model: base.Regressor, check: Callable[[base.Regressor], None]
) -> None:
    check(model.clone())


def test_the_checks_skipped_are_few_and_named() -> None:
    skipped = {label: m._unit_test_skips() for label, m in MODELS.items() if m._unit_test_skips()}
    assert skipped == {
        # Anchored's verbs take the sample weight ``w`` and nothing else (River's own
        # TargetTransformRegressor takes no keywords either)
        "Anchored(ForgettingRidge)": {"check_wrapper_accepts_kwargs"},
        "Anchored(LinearRegression,scaled)": {"check_wrapper_accepts_kwargs"},
        # a series model's one feature is the time: dropping three features leaves none
        "Resampled(SNARIMAX)": {"check_emerging_features", "check_disappearing_features"},
    }
    assert all(isinstance(m, base.Regressor) for m in MODELS.values())


# ------------------------------------------------------------------ clone and the guard
def _stream(n: int, seed: int = 5) -> list[Reading]:
    """``n`` readings of one generated device."""
    readings = itertools.islice(generate(days=1, seed=seed), 3 * n)
    return [r for r in readings if r.device == "b8:27:eb:bf:9d:51"][:n]


def _trained(models: str, horizons: tuple[int, ...], n: int) -> DeviceModels:
    readings = _stream(n)
    dm = DeviceModels(
        readings[0].device, load_catalog(), TaskConfig(horizons=horizons), models=models
    )
    for r in readings:
        dm.step(r)
    return dm


def test_a_fresh_model_is_the_clone_the_catalog_would_have_built() -> None:
    """Every catalog model, trained: ``fresh_model`` (what the guard resets with) gives a model
    with the same parameters and no learned state, byte for byte what the catalog builds."""
    dm = _trained("all", (0, 60, 900), 400)
    seen = set()
    learned = 0
    for h, hz in dm.horizons.items():
        for name, model in hz.models.items():
            spec = hz.specs[name]
            fresh = fresh_model(model, spec, "temp", h)
            assert fresh is not model
            built = spec.build("temp", h)
            if name == "arf":
                # River's ARF resolves max_features ("sqrt") to a count at its first sample,
                # in the parameter itself: its clone keeps that count (the same forest as long
                # as the device's features are the same number)
                assert built.regressor.max_features == "sqrt"
                assert fresh.regressor.max_features == model.regressor.max_features > 0
                built.regressor.max_features = fresh.regressor.max_features
            assert pickle.dumps(fresh) == pickle.dumps(built), (name, h)
            learned += pickle.dumps(fresh) != pickle.dumps(model)
            if name != "batch_forest":  # the frozen forest is not a River estimator yet
                assert fresh._get_params().keys() == model._get_params().keys()
                assert repr(fresh) == repr(model.clone())
            seen.add(name)
    assert seen == set(load_catalog().names)
    assert learned >= 20  # the fresh ones are not the trained ones (baselines learn at 0 only)


def test_the_guard_resets_a_failing_model_to_its_clone(monkeypatch: pytest.MonkeyPatch) -> None:
    dm = _trained("default", (0, 60), 200)
    hz = dm.horizons[60]
    model = hz.models["ridge"]
    assert model.regressor.keys is not None  # it has learned
    want = pickle.dumps(model.clone())
    cloned = []
    clone = Anchored.clone

    def spy(self: Anchored, *args: Any, **kwargs: Any) -> Anchored:
        cloned.append(self)
        return clone(self, *args, **kwargs)

    monkeypatch.setattr(Anchored, "clone", spy)
    calls = []

    def explode(x: dict[str, float]) -> float:
        calls.append(x)
        raise FloatingPointError("the guest model gave up")

    model.predict_one = explode  # type: ignore[method-assign]
    reading = _stream(201)[-1]
    made = dm.step(dataclasses.replace(reading, ts=reading.ts + 600.0))
    assert calls, "the ridge was asked"
    resets = [(e.model, e.horizon) for e in made.events if e.kind == "model_reset"]
    assert resets == [("ridge", 60)]
    reset = hz.models["ridge"]
    assert reset is not model and type(reset) is type(model)
    assert reset.regressor.keys is None  # fresh: the state is gone ...
    assert reset._get_params() == model._get_params()  # ... the parameters are the same
    assert pickle.dumps(reset) == want  # state-wise, exactly model.clone()
    assert cloned == [model]  # ... because it is the failing model's clone


def test_guest_code_that_is_no_river_estimator_is_rebuilt_from_its_spec() -> None:
    class Guest:
        def predict_one(self, x: dict[str, float]) -> float:
            return 21.0

    spec = load_catalog()["linear"]
    fresh = fresh_model(Guest(), spec, "temp", 60)
    assert pickle.dumps(fresh) == pickle.dumps(spec.build("temp", 60))


# ------------------------------------------------------------------------------ upgrade
def _with_params(catalog: Catalog, name: str, **params: Any) -> Catalog:
    specs = tuple(
        dataclasses.replace(s, params={**s.params, **params}) if s.name == name else s
        for s in catalog
    )
    return Catalog(specs, catalog.source)


def test_upgrade_keeps_a_model_whose_parameters_are_the_same_by_get_params() -> None:
    old = _trained("default", (0, 60), 150)
    catalog = load_catalog()
    olds = {(h, n): m for h, hz in old.horizons.items() for n, m in hz.models.items()}
    # the same hyperparameters spelled out (River's default l2 = 0): the learned state stays;
    # another prior for the ridge: its state is not valid any more, it starts fresh
    spelled = _with_params(_with_params(catalog, "linear", l2=0.0), "ridge", prior=5.0)
    new = upgrade(old, spelled, "default")
    for h, hz in new.horizons.items():
        for name, model in hz.models.items():
            if name == "ridge":
                assert model is not olds[h, name] and model.regressor.keys is None
                assert model.regressor.prior == 5.0
            else:
                assert model is olds[h, name], (h, name)


# -------------------------------------------------------------------- older checkpoints
def _fixture(version: str) -> tuple[dict[str, Any], dict[str, tuple[int, bytes]]]:
    root = FIXTURES / version
    expected = orjson.loads((root / "expected.json").read_bytes())
    shard = root / "checkpoints" / expected["app"] / expected["shard"] / "manifest.json"
    devices = orjson.loads(shard.read_bytes())["devices"]
    return expected, {
        d: (e.get("format", checkpoint_format.LEGACY), (root / e["key"]).read_bytes())
        for d, e in devices.items()
    }


def _probe(expected: dict[str, Any]) -> list[Reading]:
    n = expected["readings"] + expected["probe"]
    stream = itertools.islice(generate(days=1, seed=expected["seed"], devices=3), n)
    return list(stream)[expected["readings"] :]


def _ours(dm: DeviceModels) -> Iterator[base.Base]:
    for hz in dm.horizons.values():
        for model in hz.models.values():
            yield model
            if isinstance(model, Anchored):
                yield model.regressor


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_checkpoints_of_the_public_names_load_into_river_estimators(version: str) -> None:
    """Formats 1 to 3 pickled our models' state under public names (``coef``, ``loss``...):
    each class's ``__setstate__`` maps them, so every model loads as a River estimator that
    clones and goes on predicting."""
    expected, artifacts = _fixture(version)
    probe = _probe(expected)
    for device, (fmt, payload) in artifacts.items():
        assert b"own_scaler" in payload  # the old names are in the pickle ...
        dm = checkpoint_format.loads(payload, fmt, device)
        for model in _ours(dm):
            assert isinstance(model, base.Base)
            state = vars(model)
            assert not {"own_scaler", "coef", "sq_y", "last", "min_step"} & set(state)
            assert repr(model.clone()) == repr(model)  # the same parameters
        steps = [dm.step(r) for r in probe if r.device == device]
        assert steps and all(s.status == "learned" for s in steps)


def test_a_format_3_checkpoint_predicts_what_it_did_when_written() -> None:
    """The checkpoints written just before the models became River estimators, read by this
    code: the same predictions as the code that wrote them, to the last few bits."""
    expected, artifacts = _fixture("v3")
    probe = _probe(expected)
    for device, (fmt, payload) in artifacts.items():
        assert fmt == 3
        dm = checkpoint_format.loads(payload, fmt, device)
        want = expected["devices"][device]["probe"]
        got = []
        for r in probe:
            if r.device == device:
                result = dm.step(r)
                preds = sorted([p.model, p.horizon, p.value] for p in result.predictions)
                got.append((r.ts, result.status, preds))
        assert [(g[0], g[1]) for g in got] == [(w["ts"], w["status"]) for w in want]
        for (_, _, preds), w in zip(got, want, strict=True):
            assert [p[:2] for p in preds] == [p[:2] for p in w["predictions"]]
            values = [p[2] for p in w["predictions"]]
            assert [p[2] for p in preds] == pytest.approx(values, rel=1e-12), device


def test_the_fixture_of_format_4_predicts_as_the_one_of_format_3() -> None:
    """Written by make_fixture.py from the same readings before and after the change."""
    three, _ = _fixture("v3")
    four, _ = _fixture("v4")
    assert (three["format"], four["format"]) == (3, 4)
    assert three["devices"] == four["devices"]

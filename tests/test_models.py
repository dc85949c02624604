"""Forecast scoring time alignment, determinism, checkpoints, the TOML catalog, the frozen forest."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from online_models.batch import FrozenForest
from online_models.catalog import BUILTIN, CatalogError, load_catalog
from online_models.config import TaskConfig
from online_models.device import DeviceModels
from telemetry.reading import Reading

DEVICE = "dev-1"


def _reading(ts: float, temp: float, humidity: float = 50.0) -> Reading:
    return Reading(ts, DEVICE, 0.005, humidity, False, 0.007, False, 0.02, temp)


def _stream(n: int, seed: int = 1) -> list[Reading]:
    rng = random.Random(seed)
    ts, temp = 1_594_512_000.0, 22.0
    out = []
    for _ in range(n):
        ts += rng.uniform(1.0, 9.0)
        temp = round(temp + rng.gauss(0, 0.05), 1)
        out.append(_reading(ts, temp, round(50 + rng.gauss(0, 1), 1)))
    return out


def test_forecast_is_scored_by_first_reading_at_or_after_target_time() -> None:
    times = [0, 10, 20, 55, 60, 61, 130, 200, 205]
    readings = [_reading(1_594_512_000.0 + t, 20.0 + i / 10) for i, t in enumerate(times)]
    dm = DeviceModels(DEVICE, load_catalog(), TaskConfig(horizons=(60,)), models="persistence")
    scored = {}
    for r in readings:
        for s in dm.step(r).scores:
            assert s.target_ts == s.made_ts + 60
            scored[s.made_ts - readings[0].ts] = (s.actual, s.predicted, r.ts - readings[0].ts)
    value = {t: 20.0 + i / 10 for i, t in enumerate(times)}
    for made, (actual, predicted, scored_at) in scored.items():
        first = min(t for t in times if t >= made + 60)
        assert scored_at == first, (made, scored_at, first)
        assert actual == value[first]
        assert predicted == value[made]  # persistence: the value when the forecast was made
    assert sorted(scored) == [0, 10, 20, 55, 60, 61, 130]  # 200 and 205 still wait


def test_same_readings_same_predictions_and_pickle_round_trip() -> None:
    readings = _stream(700)
    cat = load_catalog()
    task = TaskConfig(horizons=(0, 60, 900))
    a = DeviceModels(DEVICE, cat, task)
    for r in readings[:400]:
        a.step(r)
    b = pickle.loads(pickle.dumps(a))
    c = DeviceModels(DEVICE, cat, task)
    for r in readings[:400]:
        c.step(r)
    rest_a = [a.step(r) for r in readings[400:]]
    rest_b = [b.step(r) for r in readings[400:]]
    rest_c = [c.step(r) for r in readings[400:]]
    assert rest_a == rest_b == rest_c
    assert sum(len(r.predictions) for r in rest_a) > 300 * 8
    assert a.summary() == b.summary()


def test_duplicates_late_readings_and_glitches_are_not_learned() -> None:
    dm = DeviceModels(DEVICE, load_catalog(), TaskConfig(horizons=(0,)), models="persistence")
    assert dm.step(_reading(1_594_512_000.0, 20.0)).status == "learned"
    assert dm.step(_reading(1_594_512_000.0, 20.0)).status == "duplicate"
    assert dm.step(_reading(1_594_511_999.0, 20.0)).status == "late"
    assert dm.step(_reading(1_594_512_001.0, 0.0, humidity=1.0)).status == "glitch"
    assert dm.summary()["n_learned"] == 1
    with pytest.raises(ValueError, match="given to"):
        dm.step(Reading(1_594_512_005.0, "other", 0.0, 50.0, False, 0.0, False, 0.0, 20.0))


def test_model_added_to_toml_runs_without_code_change(tmp_path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        BUILTIN.read_text()
        + '\n[models.slow_linear]\nclass = "river.linear_model.LinearRegression"\nkind = "regressor"\n'
        'scale = true\ndefault = true\nparams = { optimizer = { class = "river.optim.SGD", '
        "params = { lr = 0.001 } }, intercept_lr = 0.001 }\n"
    )
    cat = load_catalog(path)
    dm = DeviceModels(DEVICE, cat, TaskConfig(horizons=(0, 60)))
    assert "slow_linear" in dm.model_names
    results = [dm.step(r) for r in _stream(60)]
    assert {p.horizon for r in results for p in r.predictions if p.model == "slow_linear"} == {
        0,
        60,
    }


def test_catalog_refuses_what_it_cannot_build(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.x]\nclass = "os.system"\n')
    with pytest.raises(CatalogError, match="not under"):
        load_catalog(bad)
    bad.write_text(
        '[models.x]\nclass = "river.linear_model.LinearRegression"\nparams = { nope = 1 }\n'
    )
    with pytest.raises(CatalogError, match="'x'"):
        load_catalog(bad)
    with pytest.raises(CatalogError, match="unknown model"):
        load_catalog().select("persistence,nonexistent")


def test_batch_forest_learns_the_first_day_then_stays_frozen() -> None:
    rng = random.Random(0)
    f = FrozenForest(train_seconds=500.0, n_estimators=5, max_depth=6)
    xs = [{"dt": 1.0, "a": rng.random(), "b": rng.random()} for _ in range(900)]
    for x in xs[:499]:
        assert f.predict_one(x) is None  # "not yet"
        f.learn_one(x, 3 * x["a"] - x["b"])
    f.learn_one(xs[499], 0.0)
    assert f.fitted and f.n_train == 499
    before = [f.predict_one(x) for x in xs[500:]]
    for x in xs[500:]:
        f.learn_one(x, 100.0)  # frozen: ignored
    assert [f.predict_one(x) for x in xs[500:]] == before
    # the compiled trees predict what scikit-learn's forest predicts
    from sklearn.ensemble import RandomForestRegressor

    X = np.array([[x["a"], x["b"], x["dt"]] for x in xs[:499]])
    y = 3 * X[:, 0] - X[:, 1]
    ref = RandomForestRegressor(
        n_estimators=5, max_depth=6, min_samples_leaf=5, random_state=0, n_jobs=1
    )
    ref.fit(X, y)
    Xt = np.array([[x["a"], x["b"], x["dt"]] for x in xs[500:]])
    assert np.allclose(ref.predict(Xt), before, atol=1e-9)
    assert np.mean(np.abs(np.array(before) - (3 * Xt[:, 0] - Xt[:, 1]))) < 0.3

"""The retrain job (issue 28, its offline half): the batch expert's trees, ``iotcast retrain``
from a CSV and from the S3 archive (moto server), versioned artifacts, and the batch
registry's list / show / promote / rollback."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from iotcast.cli import connection_flags, main
from iotcast.settings import Settings
from online_models.batch_expert import DEFAULTS, FEATURES, from_sklearn
from online_models.retrain import BatchModel
from stream.batch_registry import BatchRegistry, DirectoryObjects, S3Objects
from telemetry.csvfile import write_csv
from telemetry.reading import Reading
from tests.support import create_bucket

HOUR = 3600.0


def _daily(device: str, start: float, hours: int, mean: float = 20.0) -> list[Reading]:
    """Hourly readings of a daily cycle with a little deterministic wobble."""
    out = []
    for i in range(hours):
        t = start + HOUR * i
        wobble = 0.3 * math.sin(i * 0.7) * math.cos(i * 0.13)
        temp = mean + 4.0 * math.sin(2 * math.pi * t / 86_400) + wobble
        out.append(Reading(t, device, temp=round(temp, 2), humidity=50.0))
    return out


def test_copied_trees_predict_what_scikit_learn_predicts() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    X = rng.random((3000, len(FEATURES)))
    X[::5, 2] = np.nan  # missing values follow the side the trees learned
    y = 2 * X[:, 0] + np.sin(6 * X[:, 3]) + np.nan_to_num(X[:, 2])
    model = HistGradientBoostingRegressor(**{**DEFAULTS, "max_iter": 30}).fit(X, y)
    expert = from_sklearn(model)
    mine = expert.predict_many([tuple(r) for r in X[:500]])
    assert np.abs(mine - model.predict(X[:500])).max() < 1e-9
    assert pickle.loads(pickle.dumps(expert)).predict_change(tuple(X[0])) == mine[0]


def test_retrain_from_csv_writes_a_verified_version(tmp_path: Path) -> None:
    csv = tmp_path / "days.csv"
    start = 1_700_000_000.0
    write_csv(
        csv,
        sorted(_daily("a", start, 24 * 20) + _daily("b", start, 24 * 20, 26.0), key=lambda r: r.ts),
    )
    out = tmp_path / "artifacts"
    argv = [
        "retrain",
        "--csv",
        str(csv),
        "--horizon",
        "3600",
        "--horizon",
        "21600",
        "--out",
        str(out),
        "--quiet",
        "--app",
        "test",
    ]
    assert main(argv) == 0
    reg = BatchRegistry(DirectoryObjects(out), "test")
    assert reg.versions() == [1]
    man = reg.manifest(1)
    raw = (out / "models/test/_batch/v1/model.pkl").read_bytes()
    assert man["sha256"] == hashlib.sha256(raw).hexdigest()
    assert man["features"] == list(FEATURES) and man["horizons"] == [3600, 21600]
    assert man["window"]["readings"] == 2 * 24 * 20 and man["window"]["devices"] == ["a", "b"]
    assert set(man["libraries"]) >= {"python", "numpy", "scikit-learn", "iotcast"}
    for h in ("3600", "21600"):  # a daily cycle: the trees beat persistence on held-out days
        v = man["validation"][h]
        assert v["n"] > 0 and v["mae"] < 0.7 * v["persistence_mae"]
    model = pickle.loads(reg.model_bytes(1))
    assert isinstance(model, BatchModel) and model.expert_for("new device") is not None

    # a tampered artifact is refused before anything is unpickled
    (out / "models/test/_batch/v1/model.pkl").write_bytes(raw[:-1] + b"\x00")
    code = main(["models", "batch", "--dir", str(out), "promote", "1", "--app", "test"])
    assert code == 1 and reg.current() is None


def test_retrain_says_why_when_data_is_too_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "short.csv"
    write_csv(csv, _daily("a", 1_700_000_000.0, 30))
    code = main(["retrain", "--csv", str(csv), "--horizon", "3600", "--out", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "holding out the last 2 days leaves" in err and "--holdout-days" in err
    assert not (tmp_path / "models").exists()


def _archive(settings: Settings, readings: list[Reading]) -> int:
    """Write readings as the archive does: one gzipped CSV object per hour of arrival."""
    s3 = settings.client("s3")
    by_hour: dict[str, list[Reading]] = {}
    for r in readings:
        when = datetime.fromtimestamp(r.ts, UTC)
        by_hour.setdefault(f"{when:%Y/%m/%d/%H}", []).append(r)
    for hour, rows in by_hour.items():
        buf = io.StringIO()
        write_csv(buf, rows)
        key = f"archive/{settings.app}/readings/{hour}/part-0.csv.gz"
        s3.put_object(Bucket=settings.bucket, Key=key, Body=gzip.compress(buf.getvalue().encode()))
    return len(by_hour)


def test_retrain_from_the_s3_archive_then_promote_and_roll_back(
    settings_moto_only: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_moto_only
    create_bucket(settings)
    now = time.time()
    start = (now // HOUR - 24 * 14) * HOUR
    _archive(settings, _daily("a", start, 24 * 14 - 1))
    # older than --days: not read
    _archive(settings, _daily("old", start - 40 * 86_400.0, 48))
    flags = connection_flags(settings)
    retrain = ["retrain", "--from-s3", "--days", "20", "--horizon", "3600", "--quiet", *flags]
    assert main(retrain) == 0
    assert main([*retrain, "--scope", "device"]) == 0
    reg = BatchRegistry(S3Objects(settings.client("s3"), settings.bucket), settings.app)
    assert reg.versions() == [1, 2]
    man = reg.manifest(1)
    assert man["window"]["devices"] == ["a"] and man["window"]["readings"] == 24 * 14 - 1
    assert man["scope"] == "global" and reg.manifest(2)["scope"] == "device"
    capsys.readouterr()

    assert main(["models", "batch", "promote", "1", "--reason", "first", *flags]) == 0
    assert main(["models", "batch", "promote", "2", *flags]) == 0
    assert main(["models", "batch", "rollback", "--by", "ops", *flags]) == 0
    current = reg.current()
    assert current is not None
    assert (current["version"], current["previous"], current["action"], current["by"]) == (
        1,
        2,
        "rollback",
        "ops",
    )
    assert [e["version"] for e in current["history"]] == [1, 2, 1]
    capsys.readouterr()
    assert main(["models", "batch", "list", "--json", *flags]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["current"] == 1 and [v["version"] for v in listed["versions"]] == [2, 1]
    assert main(["models", "batch", "show", "9", *flags]) == 1
    assert "no batch version v9; versions: v1, v2" in capsys.readouterr().err


def test_retrain_from_an_empty_archive_says_where_it_looked(
    settings_moto_only: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    create_bucket(settings_moto_only)
    code = main(["retrain", "--from-s3", *connection_flags(settings_moto_only)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"archive/{settings_moto_only.app}/readings/" in err and "last 28 days" in err


def test_the_evaluation_weighs_the_batch_expert_only_after_its_first_training() -> None:
    from online_models.batch_served import NAMES, BatchServed
    from online_models.catalog import load_catalog
    from online_models.config import TaskConfig
    from online_models.evaluate import prequential

    readings = _daily("a", 1_700_000_000.0, 24 * 12) + _daily("b", 1_700_000_000.0, 24 * 12, 26.0)
    readings.sort(key=lambda r: r.ts)
    task = TaskConfig(horizons=(3600, 21600))
    bs = BatchServed(task.horizons, every_s=4 * 86_400.0, max_iter=30)
    res = prequential(readings, load_catalog(), task, references=False, batch_expert=bs)
    assert res.batch is bs
    # one global model at day 4 and day 8, on the examples whose target reading had come
    assert [t.device for t in bs.trainings] == ["*", "*"]
    first, second = bs.trainings
    assert first.ts == 1_700_000_000.0 + 4 * 86_400.0 and second.examples > first.examples
    # device a's reading at that time trains the model: b's reading then is not in yet
    when = first.ts
    assert first.examples == sum(
        1
        for r in readings
        for h in (3600, 21600)
        if r.ts + h < when or (r.ts + h == when and r.device == "a")
    )
    figures = bs.figures()
    assert sorted(figures) == [("a", 3600), ("a", 21600), ("b", 3600), ("b", 21600)]
    for (device, h), f in figures.items():
        assert set(f) == set(NAMES)  # the online baselines too, all on the same forecasts
        assert {f[name]["n"] for name in NAMES} == {f["served"]["n"]}
        served = res.figure(device, "served", h)
        # only the forecasts made once a batch model existed: fewer than the whole run's
        assert 0 < f["served"]["n"] < served["n"]
        # a daily cycle: the trees beat persistence by far once trained
        assert f["batch"]["mae"] < 0.5 * f["persistence"]["mae"]

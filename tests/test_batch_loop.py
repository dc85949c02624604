"""The retrain loop on kinesalite and the moto server, with the real commands.

A processor runs with ``--batch-expert``. ``iotcast retrain --promote`` writes version 1,
which the processor loads live, shadows and then weighs; a deliberately bad version 2
(``--shuffle-targets``) is shadowed and refused, with an event; version 3 (retrained on
the same data as version 1) is accepted; ``iotcast models batch rollback --to 1`` then
applies live, without a shadow. Every reading is taken exactly once throughout.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from iotcast.cli import main
from iotcast.ui.callbacks_fleet import batch_view
from iotcast.ui.fleet import fleet
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from stream.batch_registry import BatchRegistry, S3Objects
from telemetry.csvfile import write_csv
from telemetry.generate import generate
from tests import support

MODELS = "persistence,rolling_mean,ridge,ensemble"
HORIZONS = (0, 900)
BATCH = ("--batch-expert", "--batch-poll-seconds", "0.5")
SHADOW = ("--batch-shadow-seconds", "3600", "--batch-shadow-scores", "150")


def cli(settings, *argv: str) -> str:
    """``iotcast <argv>`` in this process, pointed at the test's stack; its output."""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        support.endpoints_env(settings),
    ):
        code = main(support.operator_argv(settings, *argv))
    assert code == 0, out.getvalue() + err.getvalue()
    return out.getvalue()


def test_retrain_shadow_refuse_and_roll_back_live(settings, tmp_path: Path) -> None:
    support.create_resources(settings, shards=1)
    # two days of history the batch job trains on, then half a day the processor takes
    every = list(generate(days=2.5, seed=11, devices=2))
    split = every[0].ts + 2 * 86_400
    history = tmp_path / "history.csv"
    write_csv(history, [r for r in every if r.ts < split])
    readings = [r for r in every if r.ts >= split]
    n = len(readings)
    cuts = [0, n * 3 // 10, n // 2, n * 7 // 10, n * 85 // 100, n]
    segments = [readings[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    registry = BatchRegistry(S3Objects(settings.client("s3"), settings.bucket), settings.app)
    retrain = ("retrain", "--csv", str(history), "--horizon", "900")
    retrain += ("--holdout-days", "0", "--promote", "--quiet")

    flags = support.processor_flags(MODELS, HORIZONS, session_timeout=None, heartbeat=None)
    proc = support.start_processor(settings, tmp_path, *flags, *BATCH, *SHADOW)
    with support.stops_cleanly(proc):
        fed = 0

        def feed(segment: list) -> None:
            nonlocal fed
            support.put_records(settings, support.items_of(segment))
            fed += len(segment)
            support.wait_for(
                lambda: support.metric_sum(proc, "iotcast_readings_processed_total") == fed,
                120,
                f"{fed} readings processed",
            )

        def stage(name: str) -> int:
            values = support.metric_values(support.scrape(proc), "iotcast_batch_version")
            return int(values[f'stage="{name}"'])

        def shadowed(version: int) -> None:
            support.wait_for(lambda: stage("shadow") == version, 30, f"v{version} in shadow")

        def judged(version: int) -> dict:
            return support.wait_for(lambda: registry.verdict(version), 30, f"v{version}'s verdict")

        feed(segments[0])  # the online models learn; no batch version yet
        assert (stage("active"), stage("shadow")) == (0, 0)

        # v1: shadowed against persistence, then weighed
        cli(settings, *retrain)
        shadowed(1)
        feed(segments[1])
        v1 = judged(1)
        assert v1["outcome"] == "accepted" and v1["serves"], v1
        assert {f["reference"] for f in v1["horizons"].values()} == {"persistence"}
        assert stage("active") == 1

        # v2, trained on shuffled targets: shadowed against v1, refused; v1 stays weighed
        cli(settings, *retrain, "--shuffle-targets", "1")
        shadowed(2)
        feed(segments[2])
        v2 = judged(2)
        assert v2["outcome"] == "refused", v2
        for h in v1["serves"]:  # worse than v1 where v1 serves
            assert v2["horizons"][str(h)]["reference"] == "v1"
            assert v2["horizons"][str(h)]["ratio"] > 1.0
        assert (stage("active"), stage("shadow")) == (1, 0)
        assert "batch_refused" in [e["kind"] for e in registry.events(2)]

        # v3, the same data as v1: the same forecasts, accepted (not worse), weighed
        cli(settings, *retrain)
        shadowed(3)
        feed(segments[3])
        v3 = judged(3)
        assert v3["outcome"] == "accepted" and v3["serves"] == v1["serves"], v3
        assert all(v3["horizons"][str(h)]["ratio"] == 1.0 for h in v1["serves"])
        assert stage("active") == 3

        # an operator rolls back to v1: weighed at once, no shadow
        cli(settings, "models", "batch", "rollback", "--to", "1", "--reason", "test")
        support.wait_for(lambda: stage("active") == 1, 30, "v1 active again")
        assert stage("shadow") == 0
        feed(segments[4])
        text = support.scrape(proc)
        status = cli(settings, "status")

    events = support.metric_values(text, "iotcast_batch_events_total")
    assert events == {'kind="batch_shadow"': 3, 'kind="batch_active"': 3, 'kind="batch_refused"': 1}
    assert [e["kind"] for e in registry.events(1)] == [
        "batch_shadow",
        "batch_active",
        "batch_active",
    ]
    assert "batch model v1 current (rollback" in status, status
    # the operator sees the versions' verdicts: the command line and the page
    listing = cli(settings, "models", "batch", "list")
    assert "shadow: refused" in listing and "shadow: accepted" in listing
    with support.endpoints_env(settings):
        page = fleet(settings)
    assert page.error == "" and page.batch is not None and page.batch["current"] == 1
    line = str(batch_view("en", page.batch))
    assert "version 1 is current" in line and "accepted after its shadow" in line
    assert "versión 1 es la actual" in str(batch_view("es", page.batch))

    # exactly once: every reading taken once, as an uninterrupted offline run takes them
    task = TaskConfig(horizons=HORIZONS)
    want = support.learned_counts(readings, load_catalog(), task, MODELS)
    support.wait_checkpointed(settings, want, 30, "every reading in the checkpoints once")
    # the batch expert was weighed with each device's champion at 900 s, and learned its weight
    for models in support.load_models(settings).values():
        weights = models.horizons[900].blend.weights()
        assert 0.0 < weights["batch_expert"] < 1.0 and weights["batch_expert"] != 0.5, weights
        assert models.horizons[0].blend is None  # no batch expert at the nowcast
    taken = sum(sum(support.metric_values(text, f"iotcast_readings_{k}_total").values()) for k in ("learned", "held"))  # fmt: skip
    assert taken == sum(want.values())

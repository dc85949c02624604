"""Two processes share a 4-shard stream fairly; when one dies the other takes its shards over.

Real moto server for Kinesis, S3 and DynamoDB.
"""

from __future__ import annotations

import itertools
import time

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from tests import support

MODELS = "persistence,rolling_mean"
SESSION = 4


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_second_process_gets_a_fair_share_and_takes_over_after_a_crash(settings, tmp_path):
    support.create_resources(settings, 4)
    stream = list(itertools.islice(generate(days=1, seed=8, devices=12), 3_300))
    a, b, c, probe = stream[:1000], stream[1000:2000], stream[2000:3000], stream[3000:]
    task = TaskConfig(horizons=(0, 60))
    flags = support.processor_flags(MODELS, checkpoint_every=300, session_timeout=SESSION)

    def counts(readings):
        return support.learned_counts(readings, load_catalog(), task, MODELS)

    support.put_records(settings, support.items_of(a))
    p1 = support.start_processor(settings, tmp_path, *flags, name="p1")
    p2 = None
    try:
        support.wait_for(
            lambda: support.metric_sum(p1, "iotcast_shard_owned") == 4,
            90,
            "p1 to hold all 4 shards",
        )
        want = counts(a)
        support.wait_checkpointed(settings, want, 120, "batch A checkpointed")
        assert len(support.manifests(settings)) == 4  # traffic on every shard

        p2 = support.start_processor(settings, tmp_path, *flags, name="p2")
        joined = time.monotonic()
        support.wait_for(
            lambda: (
                support.metric_sum(p1, "iotcast_shard_owned") == 2
                and support.metric_sum(p2, "iotcast_shard_owned") == 2
            ),
            60,
            "a 2 + 2 split",
        )
        print(f"fair share reached {time.monotonic() - joined:.1f}s after p2 was ready")

        support.put_records(settings, support.items_of(b))
        want = counts(a + b)
        support.wait_checkpointed(settings, want, 120, "batch B checkpointed by both")
        assert support.metric_sum(p2, "iotcast_readings_learned_total") > 0

        p2.kill()
        killed = time.monotonic()
        support.wait_for(
            lambda: support.metric_sum(p1, "iotcast_shard_owned") == 4,
            SESSION + 30,
            "p1 to take over p2's shards",
        )
        print(
            f"takeover {time.monotonic() - killed:.1f}s after the crash (session timeout {SESSION}s)"
        )

        support.put_records(settings, support.items_of(c))
        expected = support.reference(a + b + c, load_catalog(), task, MODELS)
        want = {d: dm.n_taken for d, dm in expected.items()}
        support.wait_checkpointed(settings, want, 120, "batch C checkpointed")
    finally:
        if p2 is not None:
            p2.stop()
        assert p1.stop(30) == 0, p1.log_tail()
    # A handed-over shard gets no checkpoint from its old owner after the release.
    assert "DynamoDB refused the checkpoint" not in p1.log_path.read_text(), p1.log_tail(40)
    for device, models in support.load_models(settings).items():
        assert support.same_predictions(
            models, expected[device], [r for r in probe if r.device == device]
        ), device

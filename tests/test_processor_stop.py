"""``iotcast process`` exits 0 on SIGTERM even with a prediction backlog it cannot send.

Real moto server (Kinesis, S3, DynamoDB) and the real CLI process.  The
predictions stream is left missing, so every PutRecords of predictions fails
and is retried: the backlog cannot drain.  Before the fix the writer drained
(retrying every batch) for 30 s after the final checkpoints, past the demo's
stop grace, and the process was SIGKILLed.
"""

from __future__ import annotations

import itertools
import signal
import subprocess

import pytest

from telemetry.generate import generate
from tests import support

STOP_BOUND = 20.0  # the demo gives a child 30 s; the writer's drain bound is 5 s


@pytest.mark.timeout(180)
def test_sigterm_exits_zero_with_an_unsendable_prediction_backlog(settings, tmp_path):
    support.create_stream(settings, shards=1)  # the predictions stream is NOT created
    support.create_bucket(settings)
    readings = list(itertools.islice(generate(days=1, seed=5, devices=2), 3_000))
    support.put_records(settings, support.items_of(readings))
    flags = support.processor_flags(
        "persistence,rolling_mean", session_timeout=None, heartbeat=None, predictions="champion"
    )
    proc = support.start_processor(settings, tmp_path, *flags)
    try:
        support.wait_for(
            lambda: support.metric_sum(proc, "iotcast_readings_learned_total") >= 2_500,
            90,
            "the processor to learn the readings",
        )
        proc.proc.send_signal(signal.SIGTERM)
        try:
            code = proc.proc.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"iotcast process still running {STOP_BOUND:.0f}s after SIGTERM:\n"
                + proc.log_tail(30)
            )
        assert code == 0, proc.log_tail(30)
        log = proc.log_path.read_text()
        assert "final checkpoints written" in log
        assert "prediction records not sent" in log  # the drop is said, with its count
        # The final checkpoint covers what was learned: the readings are not lost.
        (manifest,) = support.manifests(settings).values()
        assert manifest.sequence is not None
    finally:
        proc.kill()

"""The prediction writer's stop says, once and with the count, every record it did not send.

Real Kinesis (kinesalite) with the output stream missing, so every PutRecords
fails and is retried.  Records can be in two places when the stop's drain bound
passes: still buffered, or in the batch being retried.  Before the fix, the
second kind was said as "lost" per call and the stop's message missed them, so
a stop with everything in flight said nothing about the stop at all.
"""

from __future__ import annotations

import logging

import pytest

from stream.output import PredictionWriter
from stream.records import Forecast, PredictionRecord
from tests import support


def _records(n: int) -> list[PredictionRecord]:
    return [
        PredictionRecord(f"d{i % 3}", float(i), 22.0, [Forecast(0, "linear", 22.1, 1.0)])
        for i in range(n)
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "buffered_too", [False, True], ids=["all-in-flight", "in-flight-and-buffered"]
)
def test_stop_counts_and_says_records_in_flight_and_buffered(settings, caplog, buffered_too):
    writer = PredictionWriter(settings.client("kinesis"), f"{settings.stream}-missing", linger=0.01)
    caplog.set_level(logging.ERROR, logger="stream.output")
    writer.add(_records(40))
    support.wait_for(lambda: writer.pending == 0, 10, "the writer to take the batch", interval=0.01)
    if buffered_too:
        writer.add(_records(7))  # arrive while the first batch is being retried
    writer.close(timeout=0.5)

    want = 47 if buffered_too else 40
    assert (writer.sent, writer.failed, writer.dropped, writer.pending) == (0, 0, want, 0)
    stops = [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]
    assert len(stops) == 1, [r.getMessage() for r in caplog.records]
    assert stops[0].startswith(f"stopping: {want} prediction records not sent")
    assert "within the 0.5s drain bound" in stops[0]
    assert f"({want - 40} buffered, 40 being retried" in stops[0]
    assert not [r for r in caplog.records if "lost" in r.getMessage()]

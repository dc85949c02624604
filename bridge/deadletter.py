"""The dead letter: payloads that are not readings, kept in S3 with the reason.

Entries are batched into JSON Lines objects under
``dead-letter/<YYYY-MM-DD>/<HH-MM-SS.ffffff>-<uuid>.jsonl`` (UTC date of the
batch's first message), one object a line::

    {"received_at": "2026-11-26T20:55:12.123456+00:00", "topic": "iot/x/telemetry",
     "reason": "out_of_range", "message": "field 'data.temp' = 999.0 is outside [-40, 80]",
     "payload_b64": "eyJk...", "source": "bridge"}

A reading refused out of a device's batch (an array of readings) is its own line:
``payload_b64`` holds that reading alone (compact JSON) and ``"part"`` its index in
the batch; a line without ``part`` holds the whole message.

The messages are acknowledged to the broker only after S3 accepted the
object.  A failing write is retried like a Kinesis failure (bounded, then
:class:`~bridge.retry.BridgeFailure`); nothing is dropped.  A refusal that
retrying cannot fix (the credentials may not write there) raises
:class:`~bridge.retry.BridgeFailure` at once, naming the permission needed.

Keys hold only the batch's time and a random id: no device id, no topic.

>>> entry = dead_letter_entry("iot/x/telemetry", b"{oops", "invalid_json", "not JSON", 0.0)
>>> entry["received_at"], entry["payload_b64"], entry["source"]
('1970-01-01T00:00:00+00:00', 'e29vcHM=', 'bridge')
>>> dead_letter_key(0.0, "abc")
'dead-letter/1970-01-01/00-00-00.000000-abc.jsonl'
"""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import orjson

from bridge.retry import Attempts, BridgeFailure, RetryPolicy
from monitoring.metrics import BRIDGE_DEAD_LETTERS, BRIDGE_RETRIES

__all__ = [
    "DEAD_LETTER_PREFIX",
    "DeadLetterWriter",
    "dead_letter_entry",
    "dead_letter_key",
    "ensure_bucket",
]

DEAD_LETTER_PREFIX = "dead-letter/"
# S3 answers that retrying cannot fix: the credentials may not write the object.
_PERMANENT_S3_ERRORS = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)
log = logging.getLogger(__name__)


def dead_letter_entry(
    topic: str,
    payload: bytes,
    reason: str,
    message: str,
    received_at: float,
    part: int | None = None,
) -> dict[str, object]:
    """One dead-letter line (see the module docstring for the format)."""
    entry: dict[str, object] = {
        "received_at": datetime.fromtimestamp(received_at, UTC).isoformat(),
        "topic": topic,
        "reason": reason,
        "message": message,
        "payload_b64": base64.b64encode(payload).decode("ascii"),
        "source": "bridge",
    }
    if part is not None:
        entry["part"] = part
    return entry


def dead_letter_key(first_received_at: float, unique: str | None = None) -> str:
    """The S3 key of a dead-letter batch whose first message arrived at ``first_received_at``."""
    t = datetime.fromtimestamp(first_received_at, UTC)
    return f"{DEAD_LETTER_PREFIX}{t:%Y-%m-%d}/{t:%H-%M-%S.%f}-{unique or uuid.uuid4().hex}.jsonl"


@dataclass(eq=False)
class DeadLetterWriter:
    """Writes batches of dead-letter entries to ``s3://bucket/dead-letter/...``.

    :meth:`write` takes ``(entry, reason)`` pairs and returns once S3 holds
    them (retrying), or raises :class:`BridgeFailure` / :class:`~bridge.retry.Aborted`.
    """

    client: Any
    bucket: str
    policy: RetryPolicy
    abort: threading.Event
    written: int = field(default=0, init=False)

    def write(self, entries: Sequence[dict[str, Any]], first_received_at: float) -> str:
        key = dead_letter_key(first_received_at)
        body = b"".join(orjson.dumps(e) + b"\n" for e in entries)
        attempts = Attempts(
            self.policy,
            f"writing dead letters to s3://{self.bucket}/{key}",
            self.abort,
            hint="Check that the bucket exists (create it, or run with --create-stream on the "
            "local stack) and that the credentials may write to it; the messages stay "
            "unacknowledged in the MQTT broker.",
        )
        while True:
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson"
                )
                break
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                code = _code(exc)
                if code in _PERMANENT_S3_ERRORS:
                    raise BridgeFailure(
                        f"writing dead letters to s3://{self.bucket}/{key} was refused ({code}): "
                        f"the bridge's credentials need s3:PutObject on arn:aws:s3:::{self.bucket}/"
                        f"{DEAD_LETTER_PREFIX}* (deploy/iam/bridge-policy.json); the messages stay "
                        "unacknowledged in the MQTT broker.",
                        code,
                    ) from exc
                BRIDGE_RETRIES.labels(code).inc()
                attempts.failed(code, str(exc))
        for e in entries:
            BRIDGE_DEAD_LETTERS.labels(e["reason"]).inc()
        self.written += len(entries)
        log.info("dead letter: %d message(s) -> s3://%s/%s", len(entries), self.bucket, key)
        return key


def _code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def ensure_bucket(client, bucket: str, *, create: bool) -> None:
    """Check that ``bucket`` exists (creating it when ``create``), else raise :class:`BridgeFailure`."""
    try:
        client.head_bucket(Bucket=bucket)
        return
    except botocore.exceptions.ClientError as exc:
        code = _code(exc)
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise BridgeFailure(
                f"cannot use S3 bucket {bucket!r} for dead letters: {code} ({exc}); "
                "check the credentials and the bucket's policy.",
                code,
            ) from exc
    if not create:
        raise BridgeFailure(
            f"S3 bucket {bucket!r} (dead letters) does not exist. Create it (e.g. `aws s3 mb "
            f"s3://{bucket}`), point --bucket at an existing one, or run with --create-stream "
            "on the local stack.",
            "NoSuchBucket",
        )
    region = client.meta.region_name
    if region and region != "us-east-1":
        client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )
    else:
        client.create_bucket(Bucket=bucket)

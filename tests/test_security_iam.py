"""Least-privilege IAM policies (deploy/iam/) enforced by a real moto server; no secret logged.

A moto server of our own records every request (``MOTO_ENABLE_RECORDING``) and,
once the test's users exist, checks every call against the caller's IAM
policies (``/moto-api/reset-auth 0``, i.e. ``INITIAL_NO_AUTH_ACTION_COUNT``
reached).  moto 5.2 checks S3 calls against real resource ARNs (bucket and
key), but Kinesis and DynamoDB calls only against the resource ``*``: a
statement naming a stream or table ARN never matches there.  So the users
get the policy documents as written for S3, and for Kinesis/DynamoDB the
same actions on ``*`` (moto enforces the action list); every request the
bridge and processor made is then read back from moto's recording and
checked, action AND resource ARN, against the unmodified documents.  moto
also names HeadBucket ``s3:HeadBucket`` where AWS authorises it as
``s3:ListBucket``: the users' copies allow both.  And moto 5.2 miscomputes
the SigV4 canonical request of S3 calls whose key holds ``:`` (our device
ids) or whose query holds ``/`` (ListObjectsV2 with a prefix): it answers
SignatureDoesNotMatch to valid requests.  Our moto therefore skips the S3
*signature* comparison only; the access key must still exist and its
user's policy must still allow the action on the bucket/key.

The pipeline run (real mosquitto over TLS with passwords, the bridge and the
processor as child processes with DEBUG logging and their IAM users' keys,
the replay command, an HMAC key) is then scanned for every secret it was
given: none may appear in any log, stdout, stderr or JSON output.

It is also the suite's one end-to-end run on moto alone (Kinesis, S3 and
DynamoDB on one endpoint, as some users run it; every other test has Kinesis
on kinesalite): every replayed reading ends in a signed manifest, once.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import boto3
import botocore.exceptions
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.deadletter import DeadLetterWriter, dead_letter_entry
from bridge.retry import BridgeFailure, RetryPolicy
from iotcast.stack import ManagedProcess, free_port, port_in_use
from stream.checkpoint import CheckpointStore
from telemetry.csvfile import write_csv
from telemetry.generate import Faults, generate
from tests import support
from tests.mqtt_support import SecureBroker, start_secure_broker

IOTCAST = str(Path(sys.executable).parent / "iotcast")
IAM_DIR = Path(__file__).resolve().parent.parent / "deploy" / "iam"
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
NAMES = {
    "Partition": "aws",
    "Region": REGION,
    "AccountId": ACCOUNT,
    "TelemetryStream": "iam-telemetry",
    "PredictionsStream": "iam-predictions",
    "Bucket": "iam-bucket",
    "App": "iamapp",
}
HMAC_KEY = "HMAC-k3y-should-never-be-logged-0451"
BRIDGE_MQTT_PASSWORD = "MQTT-br1dge-pw-never-logged-7731"
DEVICE_MQTT_PASSWORD = "MQTT-dev1ce-pw-never-logged-1168"


# moto's server, with the S3 signature comparison off (see the module docstring).
MOTO_MAIN = """
import sys
from moto.iam import access_control
from moto.server import main
access_control.S3IAMRequest.check_signature = lambda self: None
main(sys.argv[1:])
"""


def render(name: str) -> dict[str, Any]:
    """deploy/iam/<name>-policy.json with this test's names filled in."""
    return json.loads(Template((IAM_DIR / f"{name}-policy.json").read_text()).substitute(NAMES))


def for_moto(policy: dict[str, Any]) -> dict[str, Any]:
    """The copy moto can enforce (module docstring): Kinesis/DynamoDB on '*', HeadBucket named."""
    out = copy.deepcopy(policy)
    for st in out["Statement"]:
        actions = st["Action"]
        if any(a.startswith(("kinesis:", "dynamodb:")) for a in actions):
            st["Resource"] = "*"
        if "s3:ListBucket" in actions:
            st["Action"] = [*actions, "s3:HeadBucket"]
    return out


ADMIN = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def create_users(iam: Any, policies: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """An IAM user per role holding moto's copy of its policy, and ``admin`` allowed
    everything; the access key of each."""
    keys = {}
    for user, policy in [("admin", ADMIN), *((u, for_moto(p)) for u, p in policies.items())]:
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user, PolicyName=f"{user}-policy", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
    return keys


def enforce_iam(moto_url: str) -> None:
    """From now on moto authenticates every call and checks it against the caller's policies."""
    req = urllib.request.Request(
        f"{moto_url}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def _match(pattern: str, value: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), value) is not None


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    """IAM's verdict for an identity policy of Allow statements (no conditions)."""
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if (
            st["Effect"] == "Allow"
            and any(_match(a.lower(), action.lower()) for a in actions)
            and any(_match(r, resource) for r in resources)
        ):
            return True
    return False


# --------------------------------------------------------------------------- the stack
class IamStack:
    """Our moto server (recording, IAM enforced after set-up), its users and their keys."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        self.recording = workdir / "moto-recording.jsonl"
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            MOTO_ENABLE_RECORDING="True",
            MOTO_RECORDER_FILEPATH=str(self.recording),
        )
        argv = [sys.executable, "-c", MOTO_MAIN, "-H", "127.0.0.1", "-p", str(port)]
        self.moto = ManagedProcess("moto_server", argv, port, workdir / "moto.log", env=env)
        self.moto.start(ready=lambda: _http_ok(f"{self.moto.url}/moto-api/"), timeout=60)
        self.url = self.moto.url
        try:
            self._set_up()
        except BaseException:
            self.moto.stop()  # a failed set-up leaves no server behind
            raise

    def _set_up(self) -> None:
        """Users (admin, bridge, processor) with their policies and keys, the resources, then
        IAM enforcement on."""
        iam = self.client("iam", ("testing", "testing"))
        self.keys = create_users(
            iam,
            {
                "bridge": render("bridge"),
                "processor": render("processor"),
                "retrain": render("retrain"),
            },
        )
        kinesis = self.client("kinesis", ("testing", "testing"))
        for stream in (NAMES["TelemetryStream"], NAMES["PredictionsStream"]):
            kinesis.create_stream(StreamName=stream, ShardCount=1)
        self.client("s3", ("testing", "testing")).create_bucket(Bucket=NAMES["Bucket"])
        self.client("dynamodb", ("testing", "testing")).create_table(
            TableName=f"kinesis-checkpoints-{NAMES['App']}",
            KeySchema=[{"AttributeName": "shard_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "shard_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        enforce_iam(self.url)

    def client(self, service: str, key: tuple[str, str] | str) -> Any:
        key_id, secret = self.keys[key] if isinstance(key, str) else key
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def env(self, user: str) -> dict[str, str]:
        key_id, secret = self.keys[user]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTCAST_"))}
        return env | {
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": REGION,
        }

    def entries(self) -> list[dict[str, Any]]:
        """The recorded requests.  moto's threads append an entry and its newline in two
        writes, so newlines may land between entries out of place: parse object by object."""
        text, decoder, out, at = self.recording.read_text(), json.JSONDecoder(), [], 0
        while (at := _skip_space(text, at)) < len(text):
            entry, at = decoder.raw_decode(text, at)
            out.append(entry)
        return out

    def mark(self) -> int:
        """Where the recording ends now (for :meth:`calls` of what comes next)."""
        return len(self.entries())

    def calls(self, user: str, since: int = 0) -> list[tuple[str, str]]:
        """(IAM action, resource ARN) of every request ``user`` made, from moto's recording."""
        key_id = self.keys[user][0]
        out = []
        for entry in self.entries()[since:]:
            auth = entry["headers"].get("Authorization", "")
            if f"Credential={key_id}/" in auth:
                out.append(_action_and_resource(entry, auth))
        return out

    def stop(self) -> None:
        self.moto.stop()


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status < 500
    except OSError:
        return False


def _action_and_resource(entry: dict[str, Any], auth: str) -> tuple[str, str]:
    service = auth.split("Credential=")[1].split(",")[0].split("/")[3]
    prefix = f"arn:aws:{service}:{REGION}:{ACCOUNT}"
    if service in ("kinesis", "dynamodb"):
        action = f"{service}:{entry['headers']['X-Amz-Target'].split('.')[-1]}"
        body = base64.b64decode(entry["body"]) if entry.get("body_encoded") else entry["body"]
        params = json.loads(body or "{}")
        if service == "dynamodb":
            return action, f"{prefix}:table/{params['TableName']}"
        stream = params.get("StreamName") or params.get("StreamARN", "").rsplit("/", 1)[-1]
        if not stream and "ShardIterator" in params:  # moto's iterator: b64("stream:shard:seq")
            stream = base64.b64decode(params["ShardIterator"]).decode().split(":")[0]
        return action, f"{prefix}:stream/{stream}"
    # S3, path style: /<bucket>[/<key>][?query]
    parts = urlsplit(entry["url"])
    bucket, _, key = parts.path.lstrip("/").partition("/")
    method = entry["method"]
    if key:
        action = {"GET": "GetObject", "HEAD": "GetObject", "PUT": "PutObject"}.get(method, method)
        return f"s3:{action}", f"arn:aws:s3:::{bucket}/{unquote(key)}"
    action = "ListBucket" if method in ("GET", "HEAD") else f"{method}Bucket"
    return f"s3:{action}", f"arn:aws:s3:::{bucket}"


@pytest.fixture(scope="module")
def iam(tmp_path_factory: pytest.TempPathFactory):
    stack = IamStack(tmp_path_factory.mktemp("iam"))
    yield stack
    stack.stop()


# ------------------------------------------------------------------------------ tests
def test_policies_name_only_our_resources_and_no_wildcard_actions() -> None:
    for name in ("bridge", "processor", "retrain", "firehose"):
        policy = render(name)
        for st in policy["Statement"]:
            assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            assert all("*" not in a for a in actions), (name, actions)
            assert all(r != "*" and NAMES["Bucket"] + "/*" not in r for r in resources)
    bridge, processor = render("bridge"), render("processor")
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/"
    assert allowed(bridge, "kinesis:PutRecords", stream + NAMES["TelemetryStream"])
    assert not allowed(bridge, "kinesis:PutRecords", stream + NAMES["PredictionsStream"])
    assert not allowed(bridge, "kinesis:GetRecords", stream + NAMES["TelemetryStream"])
    assert not allowed(bridge, "s3:PutObject", "arn:aws:s3:::iam-bucket/models/iamapp/x")
    assert not allowed(processor, "kinesis:PutRecords", stream + NAMES["TelemetryStream"])
    assert not allowed(processor, "s3:GetObject", "arn:aws:s3:::iam-bucket/models/otherapp/x")
    assert not allowed(processor, "s3:GetObject", "arn:aws:s3:::iam-bucket/dead-letter/x")
    assert allowed(processor, "s3:PutObject", "arn:aws:s3:::iam-bucket/events/iamapp/d/x.jsonl")
    assert not allowed(processor, "s3:PutObject", "arn:aws:s3:::iam-bucket/events/other/x")
    assert not allowed(processor, "dynamodb:DeleteTable", f"arn:aws:dynamodb:{REGION}:"
                       f"{ACCOUNT}:table/kinesis-checkpoints-iamapp")  # fmt: skip


def _refused(call: Any, **kwargs: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        call(**kwargs)
    error = exc.value.response["Error"]
    # moto answers JSON-protocol services (Kinesis, DynamoDB, IAM) with an XML error body,
    # which botocore reports as code "403" with the XML as message: read its <Code>.
    found = re.search(r"<Code>(\w+)</Code>", error.get("Message", ""))
    return found.group(1) if error["Code"] == "403" and found else error["Code"]


DENIED = {"AccessDenied", "AccessDeniedException"}


def test_moto_refuses_calls_outside_the_policies(iam: IamStack) -> None:
    bucket = NAMES["Bucket"]
    s3_bridge, s3_proc = iam.client("s3", "bridge"), iam.client("s3", "processor")
    # Allowed, so that the refusals below are about the policy, not the set-up.
    s3_bridge.put_object(Bucket=bucket, Key="dead-letter/2026-11-27/x.jsonl", Body=b"{}\n")
    s3_proc.put_object(Bucket=bucket, Key="models/iamapp/d/all/1/model.pkl", Body=b"x")
    assert s3_proc.get_object(Bucket=bucket, Key="models/iamapp/d/all/1/model.pkl")
    # The bridge may not read or write models, nor read dead letters back.
    assert (
        _refused(s3_bridge.get_object, Bucket=bucket, Key="models/iamapp/d/all/1/model.pkl")
        in DENIED
    )
    assert _refused(s3_bridge.put_object, Bucket=bucket, Key="models/iamapp/x", Body=b"x") in DENIED
    assert (
        _refused(s3_bridge.get_object, Bucket=bucket, Key="dead-letter/2026-11-27/x.jsonl")
        in DENIED
    )
    # The processor stays in its app's prefixes.
    assert _refused(s3_proc.put_object, Bucket=bucket, Key="models/otherapp/x", Body=b"x") in DENIED
    assert (
        _refused(s3_proc.get_object, Bucket=bucket, Key="dead-letter/2026-11-27/x.jsonl") in DENIED
    )
    assert (
        _refused(s3_proc.delete_object, Bucket=bucket, Key="models/iamapp/d/all/1/model.pkl")
        in DENIED
    )
    # Actions no policy grants (moto checks Kinesis/DynamoDB actions, on any resource).
    k_bridge, k_proc = iam.client("kinesis", "bridge"), iam.client("kinesis", "processor")
    assert _refused(k_bridge.get_shard_iterator, StreamName=NAMES["TelemetryStream"],
                    ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON") in DENIED  # fmt: skip
    assert _refused(k_bridge.delete_stream, StreamName=NAMES["TelemetryStream"]) in DENIED
    assert _refused(k_proc.create_stream, StreamName="x", ShardCount=1) in DENIED
    d_proc = iam.client("dynamodb", "processor")
    table = f"kinesis-checkpoints-{NAMES['App']}"
    assert _refused(d_proc.delete_table, TableName=table) in DENIED
    assert _refused(iam.client("dynamodb", "bridge").scan, TableName=table) in DENIED
    assert _refused(iam.client("iam", "processor").list_users) in DENIED


def test_a_refused_dead_letter_write_stops_the_bridge_at_once_naming_the_permission(
    iam: IamStack,
) -> None:
    writer = DeadLetterWriter(
        iam.client("s3", "bridge"), "iam-other-bucket", RetryPolicy(give_up_after=60),
        threading.Event(),
    )  # fmt: skip
    entry = dead_letter_entry("iot/x/telemetry", b"{", "invalid_json", "not JSON", time.time())
    started = time.monotonic()
    with pytest.raises(BridgeFailure) as exc:
        writer.write([entry], time.time())
    assert time.monotonic() - started < 10  # not retried for a minute
    assert exc.value.code == "AccessDenied"
    assert "s3:PutObject on arn:aws:s3:::iam-other-bucket/dead-letter/*" in str(exc.value)


def test_retrain_reads_the_archive_and_writes_batch_versions_only_under_its_policy(
    iam: IamStack,
) -> None:
    """The scheduled retrain's role (deploy/iam/retrain-policy.json): the archive in, batch
    model versions out, every call it made allowed as written, nothing else."""
    import gzip
    import math

    from telemetry.archive import join_records, object_key
    from telemetry.reading import Reading, encode

    bucket, app = NAMES["Bucket"], NAMES["App"]
    admin = iam.client("s3", "admin")
    now = time.time()
    start = (now // 3600 - 24 * 14) * 3600
    readings = [
        Reading(start + 3600 * i, "a", temp=round(20 + 4 * math.sin(i * math.pi / 12), 2))
        for i in range(24 * 14 - 1)
    ]
    for day in range(14):  # one object a day, keyed by "arrival" (now: the last hour)
        part = readings[day * 24 : (day + 1) * 24]
        body = gzip.compress(join_records(encode(r) for r in part))
        admin.put_object(Bucket=bucket, Key=object_key(app, now, f"d{day}"), Body=body)
    since = iam.mark()
    done = subprocess.run(
        [IOTCAST, "retrain", "--from-s3", "--days", "2", "--horizon", "3600", "--quiet",
         "--endpoint-url", iam.url, "--region", REGION, "--bucket", bucket, "--app", app],
        capture_output=True, text=True, timeout=240, env=iam.env("retrain"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    calls = iam.calls("retrain", since)
    policy = render("retrain")
    assert calls and [c for c in calls if not allowed(policy, *c)] == []
    wrote = {r for a, r in calls if a == "s3:PutObject"}
    assert f"arn:aws:s3:::{bucket}/models/{app}/_batch/v1/model.pkl" in wrote
    assert all(r.startswith(f"arn:aws:s3:::{bucket}/models/{app}/_batch/") for r in wrote)
    s3 = iam.client("s3", "retrain")
    assert _refused(s3.put_object, Bucket=bucket, Key=f"models/{app}/d/all/1/model.pkl",
                    Body=b"x") in DENIED  # fmt: skip
    assert _refused(s3.put_object, Bucket=bucket, Key=object_key(app, now), Body=b"x") in DENIED
    assert _refused(s3.get_object, Bucket=bucket, Key=f"checkpoints/{app}/x") in DENIED


# ------------------------------------------------------------- the pipeline under the policies
_wait = functools.partial(support.wait_for, interval=0.3)


def _scrape(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))  # fmt: skip


def _publish_bad_payloads(broker: SecureBroker) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set("device", DEVICE_MQTT_PASSWORD)
    client.tls_set(ca_certs=str(broker.ca_file), cert_reqs=ssl.CERT_REQUIRED)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    infos = [
        client.publish("iot/x/telemetry", b"{not json", qos=1),
        client.publish('iot/a"b/telemetry', b'{"device_id": "a\\"b"}', qos=1),
    ]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_pipeline_runs_under_the_policies_and_logs_no_secret(iam: IamStack, tmp_path: Path) -> None:
    broker = start_secure_broker(
        tmp_path / "mqtt", {"bridge": BRIDGE_MQTT_PASSWORD, "device": DEVICE_MQTT_PASSWORD}
    )
    procs: list[ManagedProcess] = []
    since = iam.mark()
    try:
        common = ["--endpoint-url", iam.url, "--region", REGION, "--stream",
                  NAMES["TelemetryStream"], "--bucket", NAMES["Bucket"], "--app", NAMES["App"],
                  "--log-level", "DEBUG"]  # fmt: skip
        bport, pport = free_port(), free_port()
        bridge = ManagedProcess(
            "bridge",
            [IOTCAST, "bridge", *common, "--metrics-port", str(bport), "--client-id", "iam-bridge",
             "--mqtt-url", broker.url("bridge"), "--mqtt-ca-file", str(broker.ca_file)],
            bport, tmp_path / "bridge.log", env=iam.env("bridge"),
        )  # fmt: skip
        procs.append(bridge.start(ready=lambda: _http_ok(f"{bridge.url}/healthz"), timeout=60))
        processor = ManagedProcess(
            "processor",
            [IOTCAST, "process", *common, "--metrics-port", str(pport), "--workers", "1",
             "--checkpoint-seconds", "1", "--session-timeout", "10"],
            pport, tmp_path / "processor.log",
            env=iam.env("processor") | {"IOTCAST_HMAC_KEY": HMAC_KEY,
                                        "IOTCAST_PREDICTIONS_STREAM": NAMES["PredictionsStream"]},
        )  # fmt: skip
        procs.append(processor.start(ready=lambda: port_in_use(pport), timeout=120))

        readings = list(generate(days=0.01, seed=11, faults=Faults.none()))[:240]
        csv_path = tmp_path / "readings.csv"
        write_csv(csv_path, readings)
        replayed = subprocess.run(
            [IOTCAST, "replay", "--csv", str(csv_path), "--speed", "0", "--log-level", "DEBUG",
             "--mqtt-url", broker.url("device"), "--mqtt-ca-file", str(broker.ca_file)],
            capture_output=True, text=True, timeout=120, env=iam.env("admin"),
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stderr
        _publish_bad_payloads(broker)  # dead-lettered by the bridge
        iam.client(
            "kinesis", "admin"
        ).put_record(  # a poison record, dead-lettered by the processor
            StreamName=NAMES["TelemetryStream"], PartitionKey="poison", Data=b"\x00garbage{"
        )

        _wait(lambda: _scrape(pport, "iotcast_readings_learned_total") >= len(readings), 120,
              "the processor to learn every reading")  # fmt: skip
        _wait(lambda: _scrape(bport, "iotcast_bridge_dead_letters_total") >= 2, 30,
              "the bridge's dead letters")  # fmt: skip
        admin_s3 = iam.client("s3", "admin")
        store = CheckpointStore(admin_s3, NAMES["Bucket"], NAMES["App"], HMAC_KEY)

        def checkpointed() -> int:
            manifest = store.load_shard_manifest("shardId-000000000000")  # signature verified
            return sum(e.samples for e in manifest.devices.values()) if manifest else 0

        _wait(lambda: checkpointed() == len(readings), 60, "a signed manifest of every reading")

        def dead_letter_sources() -> set[str]:
            listed = admin_s3.list_objects_v2(Bucket=NAMES["Bucket"], Prefix="dead-letter/")
            return {
                orjson.loads(line).get("source")
                for obj in listed.get("Contents", [])
                for line in admin_s3.get_object(Bucket=NAMES["Bucket"], Key=obj["Key"])["Body"]
                .read()
                .splitlines()
            }

        _wait(lambda: {"bridge", "processor"} <= dead_letter_sources(), 30, "both dead letters")
        status = subprocess.run(
            [IOTCAST, "status", "--json", *common, "--scrape", f"http://127.0.0.1:{pport}/metrics",
             "--count-limit", "1000"],
            capture_output=True, text=True, timeout=120,
            env=iam.env("admin") | {"IOTCAST_HMAC_KEY": HMAC_KEY,
                                    "IOTCAST_PREDICTIONS_STREAM": NAMES["PredictionsStream"]},
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)  # the JSON summary, scanned below
        predictions = iam.client("kinesis", "admin")
        shard_it = predictions.get_shard_iterator(
            StreamName=NAMES["PredictionsStream"], ShardId="shardId-000000000000",
            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        assert predictions.get_records(ShardIterator=shard_it)["Records"]  # predictions written
        for proc in procs:
            assert proc.stop(grace=30) == 0, proc.log_tail(40)
    finally:
        for proc in procs:
            proc.stop()
        broker.stop()

    # Every call each process made is allowed by its policy as written (action and ARN).
    for user in ("bridge", "processor"):
        calls = iam.calls(user, since)
        assert calls, user
        refused = sorted({c for c in calls if not allowed(render(user), *c)})
        assert not refused, (user, refused)
        print(f"{user}: {len(calls)} calls, actions {sorted({a for a, _ in calls})}")
    for name in ("bridge.log", "processor.log"):
        text = (tmp_path / name).read_text(errors="replace")
        assert "AccessDenied" not in text, name

    # No secret in anything the run printed or logged.
    outputs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    outputs |= {"replay stdout": replayed.stdout, "replay stderr": replayed.stderr}
    outputs |= {"status --json": status.stdout, "status stderr": status.stderr}
    assert len(outputs["processor.log"]) > 1000 and "DEBUG" in outputs["bridge.log"]
    # The scan reads where a leak would be: DEBUG logs show each request's signed headers,
    # with the access key id (not secret) right beside where a secret key would sit.
    for user, name in (("bridge", "bridge.log"), ("processor", "processor.log")):
        assert f"Credential={iam.keys[user][0]}/" in outputs[name]
    secrets = {
        "HMAC key": HMAC_KEY,
        "bridge MQTT password": BRIDGE_MQTT_PASSWORD,
        "device MQTT password": DEVICE_MQTT_PASSWORD,
        **{f"{u} AWS secret key": iam.keys[u][1] for u in ("bridge", "processor", "admin")},
    }
    secrets |= {f"{k} (URL-encoded)": quote(v, safe="") for k, v in list(secrets.items())}
    leaks = [(what, where) for what, s in secrets.items() for where, text in outputs.items()
             if s in text]  # fmt: skip
    assert not leaks, leaks

"""The CloudFormation template deploys to a moto server, and the pipeline runs on what it made.

A moto server of our own (recording every request, IAM enforced once set up, as in
tests/test_security_iam.py) gets ``deploy/iotcast.template.json`` through its
CloudFormation API.  The bridge and a processor then run as child processes with the
command and environment of the task definitions the stack registered, against the
streams, bucket and lease table named by the stack's outputs, under IAM users holding
the policies the stack attached to the task roles.  Every request they made is checked,
action and resource ARN, against those policies as the stack wrote them.

moto's CloudFormation cannot create some resources of the template (:data:`NOT_BY_MOTO`,
also listed in deploy/README.md): it marks them complete without making anything.  The
test says which, asserts that nothing else is missing, and stands in for the one the
pipeline needs: the HMAC key's secret, created with the name the template gives it.
The others (auto scaling, its alarms, the bucket's TLS-only policy) are checked
statically in tests/test_deploy_template.py.
"""

from __future__ import annotations

import ast
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from string import Template

import pytest

from deploy.template import OUTPUT, POLICY_VARIABLES
from iotcast.stack import ManagedProcess, free_port, port_in_use
from stream.checkpoint import CheckpointStore
from telemetry.csvfile import write_csv
from telemetry.generate import Faults, generate
from tests.test_security_iam import (
    ACCOUNT,
    REGION,
    IamStack,
    _http_ok,
    _scrape,
    _wait,
    allowed,
    create_users,
    enforce_iam,
)

IOTCAST = str(Path(sys.executable).parent / "iotcast")
IAM_DIR = Path(__file__).resolve().parent.parent / "deploy" / "iam"
STACK = "iotcast-test"
APP = "stackapp"

# Resource types of the template that moto 5.2's CloudFormation does not implement.
NOT_BY_MOTO = {
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::IoT::TopicRule",
    "AWS::KinesisFirehose::DeliveryStream",  # the readings archive (test_archive.py: locally)
    "AWS::Logs::LogStream",
    "AWS::S3::BucketPolicy",
    "AWS::SecretsManager::Secret",
}


class DeployedStack(IamStack):
    """IamStack whose resources come from the template, and whose users get the roles' policies."""

    def _set_up(self) -> None:
        root = ("testing", "testing")
        ec2 = self.client("ec2", root)
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
        self.mqtt_secret = self.client("secretsmanager", root).create_secret(
            Name=f"iotcast/{APP}/mqtt-url", SecretString="mqtt://bridge:pw@broker:8883"
        )["ARN"]
        params = {
            "App": APP,
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/iotcast:test",
            "TelemetryStreamName": f"{APP}-telemetry",
            "PredictionsStreamName": f"{APP}-predictions",
            "ShardCount": "2",
            "VpcId": vpc,
            "Subnets": ",".join(subnets),
            "MqttUrlSecretArn": self.mqtt_secret,
        }
        self.template = json.loads(OUTPUT.read_text())
        cfn = self.client("cloudformation", root)
        cfn.create_stack(
            StackName=STACK,
            TemplateBody=OUTPUT.read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
        _wait(
            lambda: (
                not cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"].endswith(
                    "IN_PROGRESS"
                )
            ),
            60,
            "the stack",
        )
        self.stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in self.stack.get("Outputs", [])}
        self.resources = cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
        # What moto cannot make it lists as CREATE_COMPLETE with neither a logical nor a
        # physical id: the template's resources (IoT Core's rule is off) minus those it made.
        created = {r["LogicalResourceId"] for r in self.resources if r.get("PhysicalResourceId")}
        self.missing = {
            name: r["Type"]
            for name, r in self.template["Resources"].items()
            if r.get("Condition") != "IotCoreRule" and name not in created
        }
        # Stand-in for the secret moto cannot create: same name, a random key like CloudFormation's.
        self.hmac_key = secrets.token_hex(32)
        self.client("secretsmanager", root).create_secret(
            Name=f"iotcast/{APP}/hmac-key", SecretString=self.hmac_key
        )
        iam = self.client("iam", root)
        self.role_policies = {}
        for user, output in (
            ("bridge", "BridgeRoleArn"),
            ("processor", "ProcessorRoleArn"),
            ("retrain", "RetrainRoleArn"),
            ("firehose", "FirehoseRoleArn"),
        ):
            role = self.outputs[output].rsplit("/", 1)[-1]
            (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
            doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            # moto 5.2 stores a policy that CloudFormation gave it as an object in Python's
            # repr (single quotes), not JSON: read it as the literal it is.
            self.role_policies[user] = ast.literal_eval(doc) if isinstance(doc, str) else doc
        self.keys = create_users(iam, self.role_policies)
        enforce_iam(self.url)

    def task(self, output: str) -> tuple[list[str], dict[str, str]]:
        """The command and environment of a task definition the stack registered."""
        ecs = self.client("ecs", "admin")
        td = ecs.describe_task_definition(taskDefinition=self.outputs[output])["taskDefinition"]
        (container,) = td["containerDefinitions"]
        env = {e["name"]: e["value"] for e in container["environment"]}
        return list(container["command"]), env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    deployed = DeployedStack(tmp_path_factory.mktemp("stack"))
    yield deployed
    deployed.stop()


def test_moto_creates_the_stack_except_the_resources_it_does_not_implement(stack) -> None:
    assert stack.stack["StackStatus"] == "CREATE_COMPLETE", stack.stack.get("StackStatusReason")
    missing_types = set(stack.missing.values())
    print("not created by moto (no physical id):", sorted(stack.missing.items()))
    assert missing_types <= NOT_BY_MOTO, missing_types - NOT_BY_MOTO
    # IoT Core's rule is behind a parameter (off here); the rest of NOT_BY_MOTO is in the stack.
    assert missing_types == NOT_BY_MOTO - {"AWS::IoT::TopicRule"}
    o = stack.outputs
    assert o["LeaseTableName"] == f"kinesis-checkpoints-{APP}"
    admin = stack.client
    described = admin("kinesis", "admin").describe_stream_summary(
        StreamName=o["TelemetryStreamName"]
    )["StreamDescriptionSummary"]
    assert described["OpenShardCount"] == 2 and described["RetentionPeriodHours"] == 24
    s3 = admin("s3", "admin")
    # moto's CloudFormation applies a bucket's encryption (and tags) only: its versioning,
    # lifecycle rules and public access block are checked in tests/test_deploy_template.py.
    enc = s3.get_bucket_encryption(Bucket=o["BucketName"])["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    table = admin("dynamodb", "admin").describe_table(TableName=o["LeaseTableName"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "shard_id", "KeyType": "HASH"}]
    ecs = admin("ecs", "admin")
    services = ecs.describe_services(cluster=o["ClusterName"], services=["processor", "bridge"])
    assert {s["serviceName"] for s in services["services"]} == {"processor", "bridge"}
    logs = admin("logs", "admin").describe_log_groups(logGroupNamePrefix=f"/iotcast/{APP}/")
    assert {g["logGroupName"] for g in logs["logGroups"]} == {
        f"/iotcast/{APP}/processor",
        f"/iotcast/{APP}/bridge",
        f"/iotcast/{APP}/retrain",
        f"/iotcast/{APP}/firehose",
    }
    # the scheduled retrain: weekly, the retrain task in the stack's cluster
    events = admin("events", "admin")
    (rule,) = events.list_rules(NamePrefix=STACK)["Rules"] or events.list_rules()["Rules"]
    assert rule["ScheduleExpression"] == "rate(7 days)" and rule["State"] == "ENABLED"
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"].endswith(f"cluster/{o['ClusterName']}")
    assert target["EcsParameters"]["TaskDefinitionArn"] == o["RetrainTaskDefinition"]
    td = ecs.describe_task_definition(taskDefinition=o["RetrainTaskDefinition"])["taskDefinition"]
    assert td["containerDefinitions"][0]["command"] == [
        "retrain", "--from-s3", "--days", "28", "--promote",
    ]  # fmt: skip


def test_the_roles_hold_the_policy_documents_of_deploy_iam(stack) -> None:
    """One source of truth: the stack's role policies are deploy/iam/*.json, names bound."""
    names = {
        "Partition": "aws",
        "Region": REGION,
        "AccountId": ACCOUNT,
        "TelemetryStream": stack.outputs["TelemetryStreamName"],
        "PredictionsStream": stack.outputs["PredictionsStreamName"],
        "Bucket": stack.outputs["BucketName"],
        "App": APP,
    }
    assert set(names) == set(POLICY_VARIABLES)
    for user in ("bridge", "processor", "retrain", "firehose"):
        text = (IAM_DIR / f"{user}-policy.json").read_text()
        assert stack.role_policies[user] == json.loads(Template(text).substitute(names)), user


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bridge_and_processor_run_on_the_stack_under_its_roles_policies(
    stack, mosquitto, tmp_path
) -> None:
    since = stack.mark()
    procs: list[ManagedProcess] = []
    o = stack.outputs
    admin_env = stack.env("admin")
    try:
        command, env = stack.task("BridgeTaskDefinition")
        bport = free_port()
        bridge = ManagedProcess(
            "bridge",
            [IOTCAST, *command, "--endpoint-url", stack.url, "--metrics-port", str(bport),
             "--client-id", "stack-bridge"],
            bport, tmp_path / "bridge.log",
            # ECS would put the secret's value in IOTCAST_MQTT_URL; here: the test's broker.
            env=stack.env("bridge") | env | {"IOTCAST_MQTT_URL": f"mqtt://127.0.0.1:{mosquitto.port}"},
        )  # fmt: skip
        procs.append(bridge.start(ready=lambda: _http_ok(f"{bridge.url}/healthz"), timeout=60))
        command, env = stack.task("ProcessorTaskDefinition")
        assert command[0] == "process"
        pport = free_port()
        processor = ManagedProcess(
            "processor",
            [IOTCAST, *command, "--endpoint-url", stack.url, "--metrics-port", str(pport),
             "--checkpoint-seconds", "1", "--session-timeout", "10"],
            pport, tmp_path / "processor.log",
            env=stack.env("processor") | env | {"IOTCAST_HMAC_KEY": stack.hmac_key},
        )  # fmt: skip
        procs.append(processor.start(ready=lambda: port_in_use(pport), timeout=120))

        readings = list(generate(days=0.01, seed=17, faults=Faults.none()))[:200]
        csv_path = tmp_path / "readings.csv"
        write_csv(csv_path, readings)
        replayed = subprocess.run(
            [IOTCAST, "replay", "--csv", str(csv_path), "--speed", "0",
             "--mqtt-url", f"mqtt://127.0.0.1:{mosquitto.port}"],
            capture_output=True, text=True, timeout=120, env=admin_env,
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stderr
        _wait(
            lambda: _scrape(pport, "iotcast_readings_learned_total") >= len(readings),
            120,
            "the processor to learn every reading",
        )
        store = CheckpointStore(
            stack.client("s3", "admin"), o["BucketName"], o["App"], stack.hmac_key
        )

        def checkpointed() -> int:
            total = 0
            for shard in ("shardId-000000000000", "shardId-000000000001"):
                manifest = store.load_shard_manifest(shard)  # signature verified
                total += sum(e.samples for e in manifest.devices.values()) if manifest else 0
            return total

        _wait(lambda: checkpointed() == len(readings), 60, "signed manifests of every reading")
        kinesis = stack.client("kinesis", "admin")
        shard_ids = [
            s["ShardId"]
            for s in kinesis.list_shards(StreamName=o["PredictionsStreamName"])["Shards"]
        ]

        def predictions_written() -> bool:  # on any shard: the partition key decides which
            for shard_id in shard_ids:
                it = kinesis.get_shard_iterator(
                    StreamName=o["PredictionsStreamName"], ShardId=shard_id,
                    ShardIteratorType="TRIM_HORIZON",
                )["ShardIterator"]  # fmt: skip
                if kinesis.get_records(ShardIterator=it, Limit=10)["Records"]:
                    return True
            return False

        _wait(predictions_written, 60, "predictions in the predictions stream")
        for proc in procs:
            assert proc.stop(grace=30) == 0, proc.log_tail(40)
    finally:
        for proc in procs:
            proc.stop()
    time.sleep(0.5)  # moto appends the last recorded requests
    for user in ("bridge", "processor"):
        calls = stack.calls(user, since)
        assert calls, user
        refused = sorted({c for c in calls if not allowed(stack.role_policies[user], *c)})
        assert not refused, (user, refused)
        print(f"{user}: {len(calls)} calls, all allowed by the stack's role policy")
    for name in ("bridge.log", "processor.log"):
        assert "AccessDenied" not in (tmp_path / name).read_text(errors="replace"), name

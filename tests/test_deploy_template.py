"""deploy/iotcast.template.json: generated from deploy/iam, clean under cfn-lint and checkov.

What moto's CloudFormation does not create or apply (tests/test_deploy_stack.py) is
checked here, on the template: the processors' auto scaling and its alarms, the
bucket's versioning, lifecycle rules, public access block and TLS-only policy, and
the optional IoT Core rule.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "iotcast.template.json"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def _module():
    spec = importlib.util.spec_from_file_location(
        "deploy_template", ROOT / "deploy" / "template.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tpl() -> dict:
    return json.loads(TEMPLATE.read_text())


def test_the_committed_template_is_what_the_script_generates() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "template.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    failures, _ = doctest.testmod(_module())
    assert failures == 0


def test_cfn_lint_passes() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(TEMPLATE)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_passes_and_every_skip_says_why() -> None:
    if not CHECKOV.exists():
        pytest.fail(
            "checkov is not installed: ./dev setup puts it in .venv-checkov (it pins boto3 1.35, "
            "which cannot share .venv with aiobotocore's botocore 1.40): "
            "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -r "
            "deploy/checkov-requirements.txt"
        )
    done = subprocess.run(
        [str(CHECKOV), "-f", str(TEMPLATE), "--framework", "cloudformation", "--skip-download",
         "--output", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(done.stdout)
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]  # fmt: skip
    assert not failed, failed
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 30
    skipped = report["results"].get("skipped_checks", [])
    print(f"checkov: {report['summary']}")
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check["check_id"]


def test_the_roles_policies_come_from_deploy_iam(tpl) -> None:
    module = _module()
    roles = {
        "BridgeRole": "bridge",
        "ProcessorRole": "processor",
        "IotRuleRole": "iot-rule",
        "RetrainRole": "retrain",
        "FirehoseRole": "firehose",
    }
    for role, name in roles.items():
        (policy,) = tpl["Resources"][role]["Properties"]["Policies"]
        assert policy["PolicyDocument"] == module.policy_document(name)
        doc = json.loads((ROOT / "deploy" / "iam" / f"{name}-policy.json").read_text())
        assert [st["Action"] for st in policy["PolicyDocument"]["Statement"]] == [
            st["Action"] for st in doc["Statement"]
        ]


def test_processors_scale_on_iterator_age_bounded_by_the_shard_count(tpl) -> None:
    r = tpl["Resources"]
    target = r["ProcessorScaling"]["Properties"]
    assert target["MaxCapacity"] == {"Ref": "ShardCount"}
    assert target["MinCapacity"] == {"Ref": "ProcessorMinTasks"}
    assert "${ProcessorService.Name}" in target["ResourceId"]["Fn::Sub"]
    for alarm, policy, comparison in (
        ("IteratorAgeHigh", "ScaleOut", "GreaterThanThreshold"),
        ("IteratorAgeLow", "ScaleIn", "LessThanThreshold"),
    ):
        props = r[alarm]["Properties"]
        assert props["MetricName"] == "GetRecords.IteratorAgeMilliseconds"
        assert props["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": "TelemetryStream"}}]
        assert props["ComparisonOperator"] == comparison
        assert props["AlarmActions"] == [{"Ref": policy}]
    out = r["ScaleOut"]["Properties"]["StepScalingPolicyConfiguration"]["StepAdjustments"]
    back = r["ScaleIn"]["Properties"]["StepScalingPolicyConfiguration"]["StepAdjustments"]
    assert out[0]["ScalingAdjustment"] > 0 and back[0]["ScalingAdjustment"] == -1


def test_tasks_stop_gracefully_within_fargates_bounds_and_hold_no_secret(tpl) -> None:
    module = _module()
    assert 60 <= module.stop_timeout(tpl, "Processor") <= 120  # Fargate allows 120 s at most
    bridge = module.stop_timeout(tpl, "Bridge")
    command = tpl["Resources"]["BridgeTask"]["Properties"]["ContainerDefinitions"][0]["Command"]
    assert int(command[command.index("--stop-timeout") + 1]) < bridge  # flushes, then exits
    for task in ("ProcessorTask", "BridgeTask"):
        (container,) = tpl["Resources"][task]["Properties"]["ContainerDefinitions"]
        assert container["HealthCheck"]["Command"][0] == "CMD"
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        names = {e["Name"] for e in container["Environment"]}
        assert not names & {"IOTCAST_HMAC_KEY", "IOTCAST_MQTT_URL", "AWS_SECRET_ACCESS_KEY"}
        assert all("ValueFrom" in s for s in container["Secrets"])
    text = TEMPLATE.read_text()
    assert "mqtts://" not in text.replace("mqtts://bridge:PASSWORD@host:8883", "")


def test_the_bucket_keeps_versions_and_expires_dead_letters(tpl) -> None:
    props = tpl["Resources"]["Bucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-dead-letters"]["Prefix"] == "dead-letter/"
    assert rules["expire-dead-letters"]["ExpirationInDays"] == {"Ref": "DeadLetterDays"}
    # Model artifacts are never expired by age (a quiet device's current one may be old).
    assert "ExpirationInDays" not in rules["expire-noncurrent-versions"]
    deny = tpl["Resources"]["BucketTlsOnly"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def test_the_iot_core_rule_is_optional_and_keys_by_device(tpl) -> None:
    rule = tpl["Resources"]["IotTelemetryRule"]
    assert rule["Condition"] == "IotCoreRule"
    payload = rule["Properties"]["TopicRulePayload"]
    assert payload["Sql"] == "SELECT * FROM 'iot/+/telemetry'"
    (action,) = payload["Actions"]
    assert action["Kinesis"]["PartitionKey"] == "${topic(2)}"  # iot/<device id>/telemetry
    assert payload["ErrorAction"]["S3"]["Key"].startswith("dead-letter/iot-core/")


def test_the_capacity_model_runs_on_its_cited_inputs() -> None:
    raw = json.loads((ROOT / "deploy" / "capacity-inputs.json").read_text())
    for section in ("measured", "prices"):
        for name, item in raw[section].items():
            assert item["value"] is not None and item["source"], name
    for name, item in raw["measured"].items():
        assert ".venv/bin/python bench/" in item["source"] or "generate(" in item["source"], name
    spec = importlib.util.spec_from_file_location("capacity", ROOT / "deploy" / "capacity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "capacity.py"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    plans = json.loads(done.stdout)
    assert [p["devices"] for p in plans] == [1_000, 10_000, 100_000, 1_000_000]
    shards = [p["kinesis"]["telemetry_shards"] for p in plans]
    assert shards == sorted(shards) and all(
        p["processor"]["tasks"] <= p["kinesis"]["telemetry_shards"] for p in plans
    )


def test_the_archive_and_the_scheduled_retrain_read_and_write_where_the_code_does(tpl) -> None:
    from telemetry.archive import object_key, positions_key, readings_prefix

    r = tpl["Resources"]
    fh = r["ArchiveDeliveryStream"]["Properties"]
    assert fh["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert fh["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] == {
        "Fn::GetAtt": ["TelemetryStream", "Arn"]
    }
    s3 = fh["ExtendedS3DestinationConfiguration"]
    # Firehose's keys are the local archiver's: prefix, UTC hour folders, extension
    prefix = s3["Prefix"]["Fn::Sub"].replace("${App}", "a")
    key = object_key("a", 1594512094.0, "x")
    assert prefix == readings_prefix("a") + "!{timestamp:yyyy/MM/dd/HH}/"
    assert key.startswith(readings_prefix("a") + "2020/07/12/00/")
    assert key.endswith(s3["FileExtension"]) and s3["CompressionFormat"] == "GZIP"
    assert not s3["ErrorOutputPrefix"]["Fn::Sub"].startswith("archive/${App}/readings/")
    assert [p["Type"] for p in s3["ProcessingConfiguration"]["Processors"]] == [
        "AppendDelimiterToRecord"
    ]
    assert not positions_key("a").startswith(readings_prefix("a"))
    rules = {x["Id"]: x for x in r["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-readings-archive"]["Prefix"] == "archive/"

    (container,) = r["RetrainTask"]["Properties"]["ContainerDefinitions"]
    # made current at once: the processors, with --batch-expert, shadow it before weighing it
    assert container["Command"] == [
        "retrain", "--from-s3", "--days", {"Ref": "RetrainDays"}, "--promote",
    ]  # fmt: skip
    (processor,) = r["ProcessorTask"]["Properties"]["ContainerDefinitions"]
    assert "--batch-expert" in processor["Command"]
    assert r["RetrainTask"]["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": ["RetrainRole", "Arn"]}
    rule = r["RetrainScheduleRule"]["Properties"]
    assert rule["ScheduleExpression"] == {"Ref": "RetrainSchedule"}
    assert tpl["Parameters"]["RetrainSchedule"]["Default"] == "rate(7 days)"
    (target,) = rule["Targets"]
    assert target["EcsParameters"]["TaskDefinitionArn"] == {"Ref": "RetrainTask"}
    assert target["RoleArn"] == {"Fn::GetAtt": ["RetrainEventsRole", "Arn"]}
    (policy,) = r["RetrainEventsRole"]["Properties"]["Policies"]
    actions = sorted(st["Action"] for st in policy["PolicyDocument"]["Statement"])
    assert actions == ["ecs:RunTask", "iam:PassRole"]

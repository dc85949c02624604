"""Generate ``deploy/iotcast.template.json``, the CloudFormation template of one iotcast environment.

The template is written by this script so that the IAM policy documents in
``deploy/iam/*.json`` stay the one source of truth: their placeholders
(``${Partition}``, ``${Region}``, ``${AccountId}``, ``${TelemetryStream}``,
``${PredictionsStream}``, ``${Bucket}``, ``${App}``) become ``Fn::Sub`` variables bound to
the stack's own resources.  Edit a policy, the knobs below or this script, then::

    .venv/bin/python deploy/template.py            # rewrite deploy/iotcast.template.json
    .venv/bin/python deploy/template.py --check    # exit 1 if the committed file is stale

``tests/test_deploy_template.py`` runs ``--check``, cfn-lint and checkov.  deploy/README.md
says what the stack creates and how to deploy it.

>>> t = template()
>>> t["Resources"]["LeaseTable"]["Properties"]["TableName"]
{'Fn::Sub': 'kinesis-checkpoints-${App}'}
>>> stop_timeout(t, "Processor") <= 120  # Fargate's maximum
True
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["OUTPUT", "policy_document", "stop_timeout", "template"]

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "iotcast.template.json"
IAM = HERE / "iam"

# Seconds ECS waits after SIGTERM before SIGKILL (Fargate allows at most 120).  The processor's
# graceful stop (final checkpoint of every shard, then lease release) must fit in it:
# tests/test_processor_scale_in.py reads it from the template.  The bridge's own flush bound
# (--stop-timeout) is kept below the container's.
PROCESSOR_STOP_TIMEOUT = 110
BRIDGE_STOP_TIMEOUT = 40
BRIDGE_FLUSH_SECONDS = 30
PROCESSOR_METRICS_PORT = 9102
BRIDGE_METRICS_PORT = 9101

# Fn::Sub variables of the policy documents -> what they are in this stack.
POLICY_VARIABLES: dict[str, Any] = {
    "Partition": {"Ref": "AWS::Partition"},
    "Region": {"Ref": "AWS::Region"},
    "AccountId": {"Ref": "AWS::AccountId"},
    "TelemetryStream": {"Ref": "TelemetryStream"},
    "PredictionsStream": {"Ref": "PredictionsStream"},
    "Bucket": {"Ref": "Bucket"},
    "App": {"Ref": "App"},
}
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def _sub(text: str) -> Any:
    """``text`` with its placeholders bound to the stack (a plain string if it has none)."""
    names = sorted(set(_PLACEHOLDER.findall(text)))
    if not names:
        return text
    unknown = [n for n in names if n not in POLICY_VARIABLES]
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown} in {text!r}")
    pseudo = {"Partition", "Region", "AccountId"}
    if set(names) <= pseudo:  # Fn::Sub knows AWS::Partition etc. under their own names
        return {"Fn::Sub": re.sub(r"\$\{(Partition|Region|AccountId)\}", _pseudo, text)}
    variables = {n: POLICY_VARIABLES[n] for n in names if n not in pseudo}
    return {"Fn::Sub": [re.sub(r"\$\{(Partition|Region|AccountId)\}", _pseudo, text), variables]}


def _pseudo(match: re.Match[str]) -> str:
    return "${AWS::" + match.group(1) + "}"


def policy_document(name: str) -> dict[str, Any]:
    """``deploy/iam/<name>-policy.json`` with every resource ARN bound to the stack."""
    doc = json.loads((IAM / f"{name}-policy.json").read_text())
    out = copy.deepcopy(doc)
    for st in out["Statement"]:
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        bound = [_sub(r) for r in resources]
        st["Resource"] = bound if isinstance(st["Resource"], list) else bound[0]
    return out


def _param(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"Type": kind, "Description": description, **extra}


def _log_group(name: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Metadata": {
            "checkov": {
                "skip": [
                    {
                        "id": "CKV_AWS_158",
                        "comment": "CloudWatch Logs encrypts log data at rest by default; the "
                        "logs hold no secret (docs/security.md, secrets are never logged), so a "
                        "customer-managed KMS key adds cost without protecting anything more",
                    }
                ]
            }
        },
        "Properties": {
            "LogGroupName": {"Fn::Sub": f"/iotcast/${{App}}/{name}"},
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        },
    }


def _health_check(port: int, path: str) -> dict[str, Any]:
    probe = (
        "import sys, urllib.request; "
        f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4).status != 200)"
    )
    return {
        "Command": ["CMD", "python", "-c", probe],
        "Interval": 30,
        "Timeout": 5,
        "Retries": 3,
        "StartPeriod": 60,
    }


def _environment(extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    env = {
        "AWS_REGION": {"Ref": "AWS::Region"},
        "IOTCAST_APP": {"Ref": "App"},
        "IOTCAST_STREAM": {"Ref": "TelemetryStream"},
        "IOTCAST_PREDICTIONS_STREAM": {"Ref": "PredictionsStream"},
        "IOTCAST_BUCKET": {"Ref": "Bucket"},
        "IOTCAST_LOG_LEVEL": "INFO",
        **(extra or {}),
    }
    return [{"Name": k, "Value": v} for k, v in sorted(env.items())]


def _task_definition(
    family: str,
    role: str,
    command: list[str],
    cpu: str,
    memory: str,
    port: int,
    health_path: str,
    stop_timeout: int,
    secrets: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": {"Fn::Sub": f"iotcast-${{App}}-{family}"},
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": {"Ref": cpu},
            "Memory": {"Ref": memory},
            "ExecutionRoleArn": {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
            "TaskRoleArn": {"Fn::GetAtt": [role, "Arn"]},
            "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"},
            "ContainerDefinitions": [
                {
                    "Name": family,
                    "Image": {"Ref": "Image"},
                    "Essential": True,
                    "Command": command,
                    "Environment": _environment({"IOTCAST_METRICS_PORT": str(port)}),
                    "Secrets": secrets,
                    "PortMappings": [{"ContainerPort": port, "Protocol": "tcp"}],
                    "StopTimeout": stop_timeout,
                    "ReadonlyRootFilesystem": True,
                    "HealthCheck": _health_check(port, health_path),
                    "LogConfiguration": {
                        "LogDriver": "awslogs",
                        "Options": {
                            "awslogs-group": {"Ref": f"{family.capitalize()}Logs"},
                            "awslogs-region": {"Ref": "AWS::Region"},
                            "awslogs-stream-prefix": family,
                        },
                    },
                }
            ],
        },
    }


def _network() -> dict[str, Any]:
    return {
        "AwsvpcConfiguration": {
            "Subnets": {"Ref": "Subnets"},
            "SecurityGroups": [{"Ref": "TaskSecurityGroup"}],
            "AssignPublicIp": {"Ref": "AssignPublicIp"},
        }
    }


def _role(name: str, service: str, policy: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": description,
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": service},
                        "Action": "sts:AssumeRole",
                        "Condition": {
                            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
                        },
                    }
                ],
            },
            "Policies": [{"PolicyName": name, "PolicyDocument": policy}],
        },
    }


def template() -> dict[str, Any]:
    """The whole CloudFormation template, as a dict."""
    resources: dict[str, Any] = {
        **_streams(),
        **_bucket(),
        **_lease_table(),
        **_secret(),
        **_iam_roles(),
        **_cluster(),
        **_tasks(),
        **_services(),
        **_autoscaling(),
        **_iot_rule(),
        **_archive(),
        **_retrain(),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "iotcast: MQTT -> Kinesis -> per-device online models (River) on ECS "
        "Fargate, checkpoints in S3, shard leases in DynamoDB. Generated by deploy/template.py "
        "from deploy/iam/*.json: do not edit by hand.",
        "Metadata": _interface(),
        "Parameters": {**_stack_parameters(), **_task_parameters()},
        "Conditions": _conditions(),
        "Resources": resources,
        "Outputs": _outputs(),
    }


def _interface() -> dict[str, Any]:
    """How the console groups the parameters."""
    return {
        "AWS::CloudFormation::Interface": {
            "ParameterGroups": [
                {"Label": {"default": "Application"}, "Parameters": ["App", "Image"]},
                {
                    "Label": {"default": "Streams"},
                    "Parameters": [
                        "TelemetryStreamName",
                        "PredictionsStreamName",
                        "StreamMode",
                        "ShardCount",
                        "PredictionsShardCount",
                        "RetentionHours",
                    ],
                },
                {
                    "Label": {"default": "Network"},
                    "Parameters": ["VpcId", "Subnets", "AssignPublicIp", "MetricsCidr"],
                },
            ]
        }
    }


def _stack_parameters() -> dict[str, Any]:
    """Parameters of the application, its streams, bucket and logs."""
    return {
        "App": _param(
            "String",
            "Consumer group / application name (IOTCAST_APP): names the lease table "
            "kinesis-checkpoints-<App> and the S3 prefixes",
            Default="iotcast",
            AllowedPattern="[a-zA-Z0-9_.-]{1,64}",
        ),
        "Image": _param(
            "String",
            "Container image of iotcast (docker/Dockerfile), e.g. "
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/iotcast:1.4.0; a new tag rolls the fleet",
        ),
        "TelemetryStreamName": _param(
            "String", "Kinesis telemetry stream", Default="iot-telemetry"
        ),
        "PredictionsStreamName": _param(
            "String", "Kinesis predictions stream", Default="iot-predictions"
        ),
        "StreamMode": _param(
            "String",
            "PROVISIONED (ShardCount shards; reshard with `iotcast reshard`) or ON_DEMAND",
            Default="PROVISIONED",
            AllowedValues=["PROVISIONED", "ON_DEMAND"],
        ),
        "ShardCount": _param(
            "Number",
            "Telemetry shards (PROVISIONED); also the most processor tasks the auto scaling "
            "starts, since a shard is processed by one task at a time (docs/capacity.md)",
            Default=2,
            MinValue=1,
            MaxValue=10000,
        ),
        "PredictionsShardCount": _param(
            "Number",
            "Predictions shards (PROVISIONED): the processors write one record per horizon per "
            "reading with --predictions champion (docs/capacity.md)",
            Default=1,
            MinValue=1,
            MaxValue=10000,
        ),
        "RetentionHours": _param(
            "Number",
            "Hours Kinesis keeps records: how long processors may be down without losing data",
            Default=24,
            MinValue=24,
            MaxValue=8760,
        ),
        "DeadLetterDays": _param("Number", "Days dead letters stay in S3", Default=30, MinValue=1),
        "ArchiveDays": _param(
            "Number",
            "Days the readings archive (archive/<App>/readings/, Firehose) stays in S3; keep it "
            "above RetrainDays",
            Default=35,
            MinValue=1,
        ),
        "ArchiveBufferSeconds": _param(
            "Number",
            "Firehose writes an archive object at least this often (or every 5 MB)",
            Default=300,
            MinValue=0,
            MaxValue=900,
        ),
        "NoncurrentDays": _param(
            "Number",
            "Days overwritten shard manifests and other noncurrent object versions are kept "
            "(S3 versioning: the recovery window of a bad rollout)",
            Default=30,
            MinValue=1,
        ),
        "LogRetentionDays": _param(
            "Number",
            "Days the tasks' logs are kept",
            Default=30,
            AllowedValues=[1, 3, 5, 7, 14, 30, 60, 90, 180, 365, 400, 545, 731, 1827, 3653],
        ),
    }


def _task_parameters() -> dict[str, Any]:
    """Parameters of the network, the tasks and the ingest (bridge or IoT Core)."""
    return {
        "VpcId": _param("AWS::EC2::VPC::Id", "VPC of the tasks"),
        "Subnets": _param(
            "List<AWS::EC2::Subnet::Id>",
            "Subnets of the tasks; they need a route to the AWS APIs (NAT gateway or VPC "
            "endpoints) and, for the bridge, to the MQTT broker",
        ),
        "AssignPublicIp": _param(
            "String",
            "ENABLED only in public subnets without a NAT gateway",
            Default="DISABLED",
            AllowedValues=["ENABLED", "DISABLED"],
        ),
        "MetricsCidr": _param(
            "String",
            "Addresses allowed to scrape the tasks' Prometheus /metrics (ports 9101-9102)",
            Default="10.0.0.0/8",
            AllowedPattern=r"\d+\.\d+\.\d+\.\d+/\d+",
        ),
        "ProcessorCpu": _param(
            "String", "vCPU units of a processor task (docs/capacity.md)", Default="1024"
        ),
        "ProcessorMemory": _param(
            "String", "MiB of a processor task (docs/capacity.md)", Default="4096"
        ),
        "ProcessorMinTasks": _param(
            "Number", "Processor tasks when the stream keeps up", Default=1, MinValue=1
        ),
        "ScaleOutIteratorAgeSeconds": _param(
            "Number",
            "Add a processor task while the oldest unread record is older than this",
            Default=60,
            MinValue=1,
        ),
        "ScaleInIteratorAgeSeconds": _param(
            "Number",
            "Remove one while it stays below this (15 minutes)",
            Default=5,
            MinValue=1,
        ),
        "CheckpointSeconds": _param(
            "Number",
            "Processor --checkpoint-seconds: every changed device is written to S3 this often; "
            "S3 PUT traffic against records replayed after a crash (docs/capacity.md)",
            Default=300,
            MinValue=1,
        ),
        "CheckpointRecords": _param(
            "Number",
            "Processor --checkpoint-every: ... or after this many readings of a shard (a busy "
            "shard would otherwise checkpoint every few seconds; docs/capacity.md)",
            Default=1000000,
            MinValue=1,
        ),
        "BridgeCpu": _param("String", "vCPU units of the bridge task", Default="512"),
        "BridgeMemory": _param("String", "MiB of the bridge task", Default="1024"),
        "MqttUrlSecretArn": _param(
            "String",
            "ARN of a Secrets Manager secret holding the bridge's broker URL with its "
            "password (mqtts://bridge:PASSWORD@host:8883); empty: no bridge (devices on IoT Core)",
            Default="",
        ),
        "RetrainSchedule": _param(
            "String",
            "EventBridge schedule of the retrain task (iotcast retrain --from-s3): rate(7 days) "
            "or cron(0 3 ? * MON *)",
            Default="rate(7 days)",
            AllowedPattern=r"(rate|cron)\(.+\)",
        ),
        "RetrainDays": _param(
            "Number",
            "Days of the readings archive the retrain task trains on (--days)",
            Default=28,
            MinValue=1,
        ),
        "RetrainCpu": _param("String", "vCPU units of the retrain task", Default="1024"),
        "RetrainMemory": _param("String", "MiB of the retrain task", Default="4096"),
        "EnableIotCoreRule": _param(
            "String",
            "true: an AWS IoT Core topic rule puts iot/+/telemetry into the stream "
            "(partition key: the device id), in place of the bridge",
            Default="false",
            AllowedValues=["true", "false"],
        ),
    }


def _conditions() -> dict[str, Any]:
    """``Provisioned`` streams, ``DeployBridge`` and ``IotCoreRule``."""
    return {
        "Provisioned": {"Fn::Equals": [{"Ref": "StreamMode"}, "PROVISIONED"]},
        "DeployBridge": {"Fn::Not": [{"Fn::Equals": [{"Ref": "MqttUrlSecretArn"}, ""]}]},
        "IotCoreRule": {"Fn::Equals": [{"Ref": "EnableIotCoreRule"}, "true"]},
    }


def _stream(name: str, shards: str) -> dict[str, Any]:
    """A Kinesis stream named by parameter ``name``, with ``shards`` shards when provisioned."""
    return {
        "Type": "AWS::Kinesis::Stream",
        "Properties": {
            "Name": {"Ref": name},
            "StreamModeDetails": {"StreamMode": {"Ref": "StreamMode"}},
            "ShardCount": {"Fn::If": ["Provisioned", {"Ref": shards}, {"Ref": "AWS::NoValue"}]},
            "RetentionPeriodHours": {"Ref": "RetentionHours"},
            "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
        },
    }


def _streams() -> dict[str, Any]:
    """The telemetry and predictions streams."""
    return {
        "TelemetryStream": _stream("TelemetryStreamName", "ShardCount"),
        "PredictionsStream": _stream("PredictionsStreamName", "PredictionsShardCount"),
    }


def _bucket() -> dict[str, Any]:
    """The checkpoint and dead-letter bucket, and its TLS-only policy."""
    return {
        "Bucket": {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Metadata": {
                "checkov": {
                    "skip": [
                        {
                            "id": "CKV_AWS_18",
                            "comment": "Access logging needs a second bucket per environment; "
                            "every write comes from the two task roles and CloudTrail data "
                            "events can be enabled account-wide where an audit needs them",
                        }
                    ]
                }
            },
            "Properties": {
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {
                            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {
                    "Rules": [
                        {
                            "Id": "expire-dead-letters",
                            "Status": "Enabled",
                            "Prefix": "dead-letter/",
                            "ExpirationInDays": {"Ref": "DeadLetterDays"},
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                        },
                        {
                            "Id": "expire-readings-archive",
                            "Status": "Enabled",
                            "Prefix": "archive/",
                            "ExpirationInDays": {"Ref": "ArchiveDays"},
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                        },
                        {
                            # Pruned model bundles and versions (iotcast models prune) go for
                            # good a day later; current objects are never expired by age (a
                            # quiet device's current version may be old).
                            "Id": "expire-pruned-model-versions",
                            "Status": "Enabled",
                            "Prefix": "models/",
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                        },
                        {
                            "Id": "expire-noncurrent-versions",
                            "Status": "Enabled",
                            "NoncurrentVersionExpiration": {
                                "NoncurrentDays": {"Ref": "NoncurrentDays"}
                            },
                            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                        },
                    ]
                },
            },
        },
        "BucketTlsOnly": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "Bucket"},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyPlainHttp",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [
                                {"Fn::GetAtt": ["Bucket", "Arn"]},
                                {"Fn::Sub": "${Bucket.Arn}/*"},
                            ],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
    }


def _lease_table() -> dict[str, Any]:
    """The DynamoDB table of shard leases and checkpoints."""
    return {
        "LeaseTable": {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Metadata": {
                "checkov": {
                    "skip": [
                        {
                            "id": "CKV_AWS_119",
                            "comment": "Encrypted at rest with the AWS-owned key (SSE on); the "
                            "table holds shard ids, sequence numbers and process names, nothing "
                            "a customer-managed key would protect further",
                        }
                    ]
                }
            },
            "Properties": {
                "TableName": {"Fn::Sub": "kinesis-checkpoints-${App}"},
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "shard_id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "shard_id", "KeyType": "HASH"}],
                "SSESpecification": {"SSEEnabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                # presence items (process#<ref>) carry a ttl: expired processes clean up
                "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
            },
        },
    }


def _secret() -> dict[str, Any]:
    """The HMAC key that signs model manifests."""
    return {
        "HmacKey": {
            "Type": "AWS::SecretsManager::Secret",
            "Metadata": {
                "checkov": {
                    "skip": [
                        {
                            "id": "CKV_AWS_149",
                            "comment": "The AWS-managed key (aws/secretsmanager) encrypts it; "
                            "only the execution role may read it",
                        },
                    ]
                }
            },
            "Properties": {
                "Name": {"Fn::Sub": "iotcast/${App}/hmac-key"},
                "Description": "HMAC-SHA256 key that signs model manifests (IOTCAST_HMAC_KEY); "
                "generated by Secrets Manager, never in the template",
                "GenerateSecretString": {"PasswordLength": 64, "ExcludePunctuation": True},
            },
        },
    }


def _iam_roles() -> dict[str, Any]:
    """The bridge and processor task roles (deploy/iam/*.json) and the execution role."""
    return {
        "BridgeRole": _role(
            "iotcast-bridge",
            "ecs-tasks.amazonaws.com",
            policy_document("bridge"),
            "iotcast bridge task: deploy/iam/bridge-policy.json",
        ),
        "ProcessorRole": _role(
            "iotcast-processor",
            "ecs-tasks.amazonaws.com",
            policy_document("processor"),
            "iotcast processor task: deploy/iam/processor-policy.json",
        ),
        "ExecutionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": "ECS agent: pull the image, write the logs, read the secrets",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "ManagedPolicyArns": [
                    {
                        "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                        "AmazonECSTaskExecutionRolePolicy"
                    }
                ],
                "Policies": [
                    {
                        "PolicyName": "read-iotcast-secrets",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": "secretsmanager:GetSecretValue",
                                    "Resource": {
                                        "Fn::If": [
                                            "DeployBridge",
                                            [{"Ref": "HmacKey"}, {"Ref": "MqttUrlSecretArn"}],
                                            [{"Ref": "HmacKey"}],
                                        ]
                                    },
                                }
                            ],
                        },
                    }
                ],
            },
        },
    }


def _cluster() -> dict[str, Any]:
    """The ECS cluster and the tasks' security group."""
    return {
        "Cluster": {
            "Type": "AWS::ECS::Cluster",
            "Properties": {
                "ClusterName": {"Fn::Sub": "iotcast-${App}"},
                "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            },
        },
        "TaskSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "iotcast tasks: Prometheus scrapes in, HTTPS and MQTT out",
                "VpcId": {"Ref": "VpcId"},
                "SecurityGroupIngress": [
                    {
                        "Description": "Prometheus /metrics of the bridge and the processors",
                        "IpProtocol": "tcp",
                        "FromPort": BRIDGE_METRICS_PORT,
                        "ToPort": PROCESSOR_METRICS_PORT,
                        "CidrIp": {"Ref": "MetricsCidr"},
                    }
                ],
                "SecurityGroupEgress": [
                    {
                        "Description": "AWS APIs (Kinesis, S3, DynamoDB, Secrets Manager, ECR, logs)",
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "CidrIp": "0.0.0.0/0",
                    },
                    {
                        "Description": "MQTT over TLS to the broker (bridge)",
                        "IpProtocol": "tcp",
                        "FromPort": 8883,
                        "ToPort": 8883,
                        "CidrIp": "0.0.0.0/0",
                    },
                ],
            },
        },
    }


def _tasks() -> dict[str, Any]:
    """The processor and bridge log groups and task definitions."""
    return {
        "ProcessorLogs": _log_group("processor"),
        "BridgeLogs": {**_log_group("bridge"), "Condition": "DeployBridge"},
        "ProcessorTask": _task_definition(
            "processor",
            "ProcessorRole",
            [
                "process",
                # One worker per task: tasks scale out on the iterator age, and the task's
                # one /metrics port, health check and security group rule fit one process.
                "--workers",
                "1",
                "--checkpoint-seconds",
                {"Ref": "CheckpointSeconds"},
                "--checkpoint-every",
                {"Ref": "CheckpointRecords"},
                "--session-timeout",
                "60",
                # the weekly retrain's versions: shadowed, then weighed or refused (issue 28)
                "--batch-expert",
            ],
            "ProcessorCpu",
            "ProcessorMemory",
            PROCESSOR_METRICS_PORT,
            "/metrics",
            PROCESSOR_STOP_TIMEOUT,
            [{"Name": "IOTCAST_HMAC_KEY", "ValueFrom": {"Ref": "HmacKey"}}],
        ),
        "BridgeTask": {
            **_task_definition(
                "bridge",
                "BridgeRole",
                ["bridge", "--stop-timeout", str(BRIDGE_FLUSH_SECONDS)],
                "BridgeCpu",
                "BridgeMemory",
                BRIDGE_METRICS_PORT,
                "/healthz",
                BRIDGE_STOP_TIMEOUT,
                [{"Name": "IOTCAST_MQTT_URL", "ValueFrom": {"Ref": "MqttUrlSecretArn"}}],
            ),
            "Condition": "DeployBridge",
        },
    }


def _services() -> dict[str, Any]:
    """The processor and bridge ECS services."""
    return {
        "ProcessorService": {
            "Type": "AWS::ECS::Service",
            "Properties": {
                "ServiceName": "processor",
                "Cluster": {"Ref": "Cluster"},
                "LaunchType": "FARGATE",
                "TaskDefinition": {"Ref": "ProcessorTask"},
                "DesiredCount": {"Ref": "ProcessorMinTasks"},
                "NetworkConfiguration": _network(),
                "PropagateTags": "SERVICE",
                # Rolling: a new task joins (fair share hands it shards), then an old one stops
                # gracefully (final checkpoint, lease released); a failing image rolls back.
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 100,
                    "MaximumPercent": 200,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                },
            },
        },
        "BridgeService": {
            "Type": "AWS::ECS::Service",
            "Condition": "DeployBridge",
            "Properties": {
                "ServiceName": "bridge",
                "Cluster": {"Ref": "Cluster"},
                "LaunchType": "FARGATE",
                "TaskDefinition": {"Ref": "BridgeTask"},
                "DesiredCount": 1,
                "NetworkConfiguration": _network(),
                "PropagateTags": "SERVICE",
                # One bridge at a time: its MQTT client id (persistent session) is fixed, and a
                # second client with the same id would take the session over.
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 0,
                    "MaximumPercent": 100,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                },
            },
        },
    }


def _autoscaling() -> dict[str, Any]:
    """Processor auto scaling on the telemetry stream's iterator age."""
    return {
        "ProcessorScaling": {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": {
                "ServiceNamespace": "ecs",
                "ScalableDimension": "ecs:service:DesiredCount",
                "ResourceId": {"Fn::Sub": "service/${Cluster}/${ProcessorService.Name}"},
                "MinCapacity": {"Ref": "ProcessorMinTasks"},
                # A shard is read by one task at a time: tasks beyond the shard count idle.
                "MaxCapacity": {"Ref": "ShardCount"},
            },
        },
        "ScaleOut": {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": "processor-scale-out-on-iterator-age",
                "PolicyType": "StepScaling",
                "ScalingTargetId": {"Ref": "ProcessorScaling"},
                "StepScalingPolicyConfiguration": {
                    "AdjustmentType": "PercentChangeInCapacity",
                    "MinAdjustmentMagnitude": 1,
                    "Cooldown": 180,
                    "MetricAggregationType": "Maximum",
                    "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 50}],
                },
            },
        },
        "ScaleIn": {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": "processor-scale-in-when-caught-up",
                "PolicyType": "StepScaling",
                "ScalingTargetId": {"Ref": "ProcessorScaling"},
                "StepScalingPolicyConfiguration": {
                    "AdjustmentType": "ChangeInCapacity",
                    "Cooldown": 600,
                    "MetricAggregationType": "Maximum",
                    "StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": -1}],
                },
            },
        },
        "IteratorAgeHigh": _alarm(
            "the processors fall behind: add tasks",
            "GreaterThanThreshold",
            {"Fn::Sub": "${ScaleOutIteratorAgeSeconds}000"},
            3,
            "ScaleOut",
        ),
        "IteratorAgeLow": _alarm(
            "the processors keep up easily: remove a task",
            "LessThanThreshold",
            {"Fn::Sub": "${ScaleInIteratorAgeSeconds}000"},
            15,
            "ScaleIn",
        ),
    }


def _alarm(
    description: str, comparison: str, threshold: Any, periods: int, policy: str
) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": f"iotcast telemetry iterator age: {description}",
            "Namespace": "AWS/Kinesis",
            "MetricName": "GetRecords.IteratorAgeMilliseconds",
            "Dimensions": [{"Name": "StreamName", "Value": {"Ref": "TelemetryStream"}}],
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": periods,
            "DatapointsToAlarm": periods,
            "Threshold": threshold,
            "ComparisonOperator": comparison,
            # No GetRecords at all (every processor gone) is not "caught up".
            "TreatMissingData": "breaching"
            if comparison == "GreaterThanThreshold"
            else "notBreaching",
            "AlarmActions": [{"Ref": policy}],
        },
    }


def _iot_rule() -> dict[str, Any]:
    """The optional IoT Core topic rule into the telemetry stream, and its role."""
    return {
        "IotRuleRole": {
            **_role(
                "iotcast-iot-rule",
                "iot.amazonaws.com",
                policy_document("iot-rule"),
                "AWS IoT Core topic rule: deploy/iam/iot-rule-policy.json",
            ),
            "Condition": "IotCoreRule",
        },
        "IotTelemetryRule": {
            "Type": "AWS::IoT::TopicRule",
            "Condition": "IotCoreRule",
            "Properties": {
                "TopicRulePayload": {
                    "Description": "iot/<device>/telemetry -> the telemetry stream, device id as "
                    "partition key (what the bridge does, managed)",
                    "Sql": "SELECT * FROM 'iot/+/telemetry'",
                    "AwsIotSqlVersion": "2016-03-23",
                    "RuleDisabled": False,
                    "Actions": [
                        {
                            "Kinesis": {
                                "StreamName": {"Ref": "TelemetryStream"},
                                "PartitionKey": "${topic(2)}",
                                "RoleArn": {"Fn::GetAtt": ["IotRuleRole", "Arn"]},
                            }
                        }
                    ],
                    "ErrorAction": {
                        "S3": {
                            "BucketName": {"Ref": "Bucket"},
                            "Key": "dead-letter/iot-core/${parse_time('yyyy-MM-dd', timestamp())}/${newuuid()}.json",
                            "RoleArn": {"Fn::GetAtt": ["IotRuleRole", "Arn"]},
                        }
                    },
                }
            },
        },
    }


# Firehose's buffer size (MB) for the readings archive; `iotcast archive --max-mb` locally.
ARCHIVE_BUFFER_MB = 5


def _archive() -> dict[str, Any]:
    """The readings archive: a Firehose delivery stream from the telemetry stream to
    ``archive/<App>/readings/YYYY/MM/DD/HH/`` (each record's data as it is, a newline after
    each, gzipped: telemetry/archive.py), its role (deploy/iam/firehose-policy.json) and
    its error log."""
    return {
        "FirehoseRole": _role(
            "iotcast-firehose",
            "firehose.amazonaws.com",
            policy_document("firehose"),
            "Firehose archive of the telemetry stream: deploy/iam/firehose-policy.json",
        ),
        "FirehoseLogs": _log_group("firehose"),
        "FirehoseLogStream": {
            "Type": "AWS::Logs::LogStream",
            "Properties": {"LogGroupName": {"Ref": "FirehoseLogs"}, "LogStreamName": "S3Delivery"},
        },
        "ArchiveDeliveryStream": {
            "Type": "AWS::KinesisFirehose::DeliveryStream",
            "Properties": {
                "DeliveryStreamName": {"Fn::Sub": "iotcast-${App}-archive"},
                "DeliveryStreamType": "KinesisStreamAsSource",
                "KinesisStreamSourceConfiguration": {
                    "KinesisStreamARN": {"Fn::GetAtt": ["TelemetryStream", "Arn"]},
                    "RoleARN": {"Fn::GetAtt": ["FirehoseRole", "Arn"]},
                },
                "ExtendedS3DestinationConfiguration": {
                    "BucketARN": {"Fn::GetAtt": ["Bucket", "Arn"]},
                    "RoleARN": {"Fn::GetAtt": ["FirehoseRole", "Arn"]},
                    "Prefix": {"Fn::Sub": "archive/${App}/readings/!{timestamp:yyyy/MM/dd/HH}/"},
                    "ErrorOutputPrefix": {
                        "Fn::Sub": "archive/${App}/errors/!{firehose:error-output-type}/"
                        "!{timestamp:yyyy/MM/dd}/"
                    },
                    "BufferingHints": {
                        "SizeInMBs": ARCHIVE_BUFFER_MB,
                        "IntervalInSeconds": {"Ref": "ArchiveBufferSeconds"},
                    },
                    "CompressionFormat": "GZIP",
                    "FileExtension": ".records.gz",
                    # Lambda-free: a newline after each record (the reader does not need it:
                    # every record is self-delimiting, telemetry/archive.py).
                    "ProcessingConfiguration": {
                        "Enabled": True,
                        "Processors": [{"Type": "AppendDelimiterToRecord", "Parameters": []}],
                    },
                    "CloudWatchLoggingOptions": {
                        "Enabled": True,
                        "LogGroupName": {"Ref": "FirehoseLogs"},
                        "LogStreamName": {"Ref": "FirehoseLogStream"},
                    },
                },
            },
        },
    }


def _retrain() -> dict[str, Any]:
    """The scheduled retrain: a one-shot Fargate task (``iotcast retrain --from-s3``), its
    role (deploy/iam/retrain-policy.json), its logs, and the EventBridge rule (with the
    role it runs the task as) that starts it on ``RetrainSchedule``."""
    return {
        "RetrainRole": _role(
            "iotcast-retrain",
            "ecs-tasks.amazonaws.com",
            policy_document("retrain"),
            "iotcast retrain task: deploy/iam/retrain-policy.json",
        ),
        "RetrainLogs": _log_group("retrain"),
        "RetrainTask": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": {"Fn::Sub": "iotcast-${App}-retrain"},
                "RequiresCompatibilities": ["FARGATE"],
                "NetworkMode": "awsvpc",
                "Cpu": {"Ref": "RetrainCpu"},
                "Memory": {"Ref": "RetrainMemory"},
                "ExecutionRoleArn": {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
                "TaskRoleArn": {"Fn::GetAtt": ["RetrainRole", "Arn"]},
                "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"},
                "ContainerDefinitions": [
                    {
                        "Name": "retrain",
                        "Image": {"Ref": "Image"},
                        "Essential": True,
                        # --promote: the new version is current at once; the processors
                        # shadow it first, and refuse it if it is worse (issue 28)
                        "Command": [
                            "retrain",
                            "--from-s3",
                            "--days",
                            {"Ref": "RetrainDays"},
                            "--promote",
                        ],  # fmt: skip
                        "Environment": _environment(),
                        # signs the batch manifests, which the processors check (issue 28)
                        "Secrets": [{"Name": "IOTCAST_HMAC_KEY", "ValueFrom": {"Ref": "HmacKey"}}],
                        "ReadonlyRootFilesystem": True,
                        "LogConfiguration": {
                            "LogDriver": "awslogs",
                            "Options": {
                                "awslogs-group": {"Ref": "RetrainLogs"},
                                "awslogs-region": {"Ref": "AWS::Region"},
                                "awslogs-stream-prefix": "retrain",
                            },
                        },
                    }
                ],
            },
        },
        "RetrainEventsRole": _role(
            "iotcast-retrain-schedule",
            "events.amazonaws.com",
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "RunTheRetrainTaskInTheCluster",
                        "Effect": "Allow",
                        "Action": "ecs:RunTask",
                        "Resource": {
                            "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:"
                            "${AWS::AccountId}:task-definition/iotcast-${App}-retrain:*"
                        },
                        "Condition": {
                            "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["Cluster", "Arn"]}}
                        },
                    },
                    {
                        "Sid": "HandTheTaskItsRoles",
                        "Effect": "Allow",
                        "Action": "iam:PassRole",
                        "Resource": [
                            {"Fn::GetAtt": ["RetrainRole", "Arn"]},
                            {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
                        ],
                        "Condition": {
                            "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
                        },
                    },
                ],
            },
            "EventBridge: start the retrain task on its schedule",
        ),
        "RetrainScheduleRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": "iotcast retrain --from-s3: a new batch model version on schedule",
                "ScheduleExpression": {"Ref": "RetrainSchedule"},
                "State": "ENABLED",
                "Targets": [
                    {
                        "Id": "retrain",
                        "Arn": {"Fn::GetAtt": ["Cluster", "Arn"]},
                        "RoleArn": {"Fn::GetAtt": ["RetrainEventsRole", "Arn"]},
                        "EcsParameters": {
                            "TaskDefinitionArn": {"Ref": "RetrainTask"},
                            "TaskCount": 1,
                            "LaunchType": "FARGATE",
                            # EventBridge spells it AwsVpcConfiguration (ECS: Awsvpc...)
                            "NetworkConfiguration": {
                                "AwsVpcConfiguration": _network()["AwsvpcConfiguration"]
                            },
                        },
                    }
                ],
            },
        },
    }


def _outputs() -> dict[str, Any]:
    """What the stack hands to operators and to the tasks' configuration."""
    outputs = {
        "App": ({"Ref": "App"}, "IOTCAST_APP / --app"),
        "TelemetryStreamName": ({"Ref": "TelemetryStream"}, "IOTCAST_STREAM / --stream"),
        "PredictionsStreamName": ({"Ref": "PredictionsStream"}, "IOTCAST_PREDICTIONS_STREAM"),
        "BucketName": ({"Ref": "Bucket"}, "IOTCAST_BUCKET / --bucket"),
        "LeaseTableName": ({"Ref": "LeaseTable"}, "DynamoDB shard leases and checkpoints"),
        "HmacKeySecretArn": ({"Ref": "HmacKey"}, "IOTCAST_HMAC_KEY for operator commands"),
        "ClusterName": ({"Ref": "Cluster"}, "ECS cluster"),
        "ProcessorServiceName": (
            {"Fn::GetAtt": ["ProcessorService", "Name"]},
            "ECS service of the processors",
        ),
        "ProcessorTaskDefinition": ({"Ref": "ProcessorTask"}, "processor task definition"),
        "ProcessorRoleArn": ({"Fn::GetAtt": ["ProcessorRole", "Arn"]}, "processor task role"),
        "BridgeRoleArn": ({"Fn::GetAtt": ["BridgeRole", "Arn"]}, "bridge task role"),
        "RetrainTaskDefinition": ({"Ref": "RetrainTask"}, "retrain task definition"),
        "RetrainRoleArn": ({"Fn::GetAtt": ["RetrainRole", "Arn"]}, "retrain task role"),
        "RetrainScheduleRule": ({"Ref": "RetrainScheduleRule"}, "EventBridge rule of the retrain"),
        "ArchiveDeliveryStreamName": (
            {"Ref": "ArchiveDeliveryStream"},
            "Firehose delivery stream: telemetry stream -> archive/<App>/readings/",
        ),
        "FirehoseRoleArn": ({"Fn::GetAtt": ["FirehoseRole", "Arn"]}, "Firehose delivery role"),
    }
    out = {name: {"Description": desc, "Value": value} for name, (value, desc) in outputs.items()}
    out["BridgeTaskDefinition"] = {
        "Description": "bridge task definition",
        "Condition": "DeployBridge",
        "Value": {"Ref": "BridgeTask"},
    }
    return out


def stop_timeout(tpl: dict[str, Any], container: str) -> int:
    """The ``StopTimeout`` (seconds) of the ``Processor`` or ``Bridge`` task's container."""
    task = tpl["Resources"][f"{container}Task"]["Properties"]
    return int(task["ContainerDefinitions"][0]["StopTimeout"])


def render() -> str:
    return json.dumps(template(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run .venv/bin/python deploy/template.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(template()['Resources'])} resources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The template's references resolved to local names, and each role's statements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runctl.local.iam import template as template_module
from runctl.local.iam.enforcer import (
    LocalFunction,
    access_key_for,
    build_policy_set,
    local_names,
)
from runctl.local.iam.policy import Request, evaluate
from runctl.local.iam.template import LocalNames, resolve, source_hash

ACCOUNT, REGION = "123456789012", "us-east-1"
BUCKET_ARN = {"Fn::GetAtt": ["StorageBucket1", "Arn"]}
TEMPLATE = {
    "Resources": {
        "StorageBucket1": {"Type": "AWS::S3::Bucket", "Path": "", "Properties": {}},
        "StorageRunsTable1": {"Type": "AWS::DynamoDB::Table", "Path": "", "Properties": {}},
        "TrainRun1": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Path": "Runctl/Orchestration/TrainRun/Resource",
            "Properties": {},
        },
        "LaunchRole1": {
            "Type": "AWS::IAM::Role",
            "Path": "",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Statement": [{"Principal": {"Service": "lambda.amazonaws.com"}}]
                }
            },
        },
        "InstanceRole1": {
            "Type": "AWS::IAM::Role",
            "Path": "",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Statement": [{"Principal": {"Service": "ec2.amazonaws.com"}}]
                },
                "ManagedPolicyArns": [
                    {
                        "Fn::Join": [
                            "",
                            [
                                "arn:",
                                {"Ref": "AWS::Partition"},
                                ":iam::aws:policy/AmazonSSMManagedInstanceCore",
                            ],
                        ]
                    }
                ],
            },
        },
        "Launch1": {
            "Type": "AWS::Lambda::Function",
            "Path": "",
            "Properties": {
                "Handler": "lambdas.handlers.launch_instance.lambda_handler",
                "Role": {"Fn::GetAtt": ["LaunchRole1", "Arn"]},
                "Environment": {
                    "Variables": {
                        "BUCKET_NAME": {"Ref": "StorageBucket1"},
                        "RUNS_TABLE_NAME": {"Ref": "StorageRunsTable1"},
                    }
                },
            },
        },
        "LaunchPolicy1": {
            "Type": "AWS::IAM::Policy",
            "Path": "",
            "Properties": {
                "Roles": [{"Ref": "LaunchRole1"}],
                "PolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:GetObject",
                            "Resource": {"Fn::Join": ["", [BUCKET_ARN, "/runs/*"]]},
                        },
                        {
                            "Effect": "Allow",
                            "Action": "dynamodb:UpdateItem",
                            "Resource": {"Fn::GetAtt": ["StorageRunsTable1", "Arn"]},
                        },
                        {
                            "Effect": "Allow",
                            "Action": "states:DescribeExecution",
                            "Resource": {
                                "Fn::Sub": "arn:aws:states:${AWS::Region}:${AWS::AccountId}"
                                ":execution:${TrainRun1.Name}:*"
                            },
                        },
                        {
                            "Effect": "Allow",
                            "Action": "ec2:RunInstances",
                            "Resource": {"Fn::GetAtt": ["SecurityGroup1", "GroupId"]},
                        },
                    ]
                },
            },
        },
    }
}
FUNCTIONS = [
    LocalFunction(
        name="runctl-local-LaunchInstance",
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:runctl-local-LaunchInstance",
        handler="lambdas.handlers.launch_instance.lambda_handler",
        environment={"BUCKET_NAME": "runctl-local-bucket", "RUNS_TABLE_NAME": "runctl-local-runs"},
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/runctl-local-role",
    )
]
STATE_MACHINES = {
    "runctl-local-TrainRun": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:runctl-local-TrainRun"
}


def names() -> LocalNames:
    return local_names(
        TEMPLATE, account=ACCOUNT, region=REGION, functions=FUNCTIONS, state_machines=STATE_MACHINES
    )


def test_logical_ids_resolve_to_the_local_names_the_functions_environment_gives():
    statements = resolve(TEMPLATE["Resources"]["LaunchPolicy1"]["Properties"], names())
    resources = [item["Resource"] for item in statements["PolicyDocument"]["Statement"]]
    assert resources[:3] == [
        "arn:aws:s3:::runctl-local-bucket/runs/*",
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/runctl-local-runs",
        f"arn:aws:states:{REGION}:{ACCOUNT}:execution:runctl-local-TrainRun:*",
    ]
    # No local security group: a reference that matches nothing, and is reported.
    assert resources[3] == "arn:aws:runctl-local-unresolved:::SecurityGroup1.GroupId"


def test_each_function_gets_its_roles_statements_and_the_instance_role_its_own():
    local = names()
    policies = build_policy_set(TEMPLATE, local, FUNCTIONS)
    launch_key = policies.function_keys["lambdas.handlers.launch_instance.lambda_handler"]
    assert launch_key == access_key_for("LaunchRole1") and len(launch_key) == 20
    launch = policies.principals[launch_key]
    assert launch.arn.endswith(":assumed-role/LaunchRole1/runctl-local-LaunchInstance")
    allowed = Request("s3:GetObject", "arn:aws:s3:::runctl-local-bucket/runs/r1/result.json")
    assert evaluate(launch.statements, allowed).allowed
    elsewhere = Request("s3:GetObject", "arn:aws:s3:::runctl-local-bucket/code/a.tgz")
    assert not evaluate(launch.statements, elsewhere).allowed
    instance = policies.principals[policies.instance_key]
    # The AWS-managed policy the instance role attaches is known, and applied.
    assert evaluate(instance.statements, Request("ssm:UpdateInstanceInformation", "*")).allowed
    assert "SecurityGroup1.GroupId" in policies.unresolved


def test_a_local_function_the_template_lacks_is_reported_unenforced():
    extra = LocalFunction("runctl-local-Extra", "arn:x", "lambdas.handlers.x.h", {}, "arn:role")
    policies = build_policy_set(TEMPLATE, names(), [*FUNCTIONS, extra])
    assert policies.unenforced_functions == ["runctl-local-Extra"]
    assert "lambdas.handlers.x.h" not in policies.function_keys


def test_sub_and_join_and_pseudo_parameters():
    local = LocalNames(account=ACCOUNT, region=REGION)
    assert resolve({"Fn::Sub": "a-${AWS::AccountId}-${AWS::Region}-${!Literal}"}, local) == (
        f"a-{ACCOUNT}-{REGION}-${{Literal}}"
    )
    value = {"Fn::Sub": ["${X}/y", {"X": {"Fn::Join": [":", ["p", {"Ref": "AWS::Partition"}]]}}]}
    assert resolve(value, local) == "p:aws/y"


def test_the_extract_is_cached_per_source_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNCTL_IAM_CACHE", str(tmp_path))
    calls = []

    def fake_synth(region: str, root: Path) -> dict:
        calls.append(region)
        return TEMPLATE

    monkeypatch.setattr(template_module, "synthesize", fake_synth)
    assert template_module.load_template(REGION) == TEMPLATE
    assert json.loads(next(tmp_path.glob("template-*.json")).read_text()) == TEMPLATE
    assert template_module.load_template(REGION) == TEMPLATE
    assert calls == [REGION]  # the second load read the cache


def test_the_source_hash_follows_the_stack_code(tmp_path: Path):
    (tmp_path / "stacks").mkdir()
    (tmp_path / "app.py").write_text("app")
    (tmp_path / "stacks" / "a.py").write_text("one")
    before = source_hash(REGION, tmp_path)
    assert source_hash(REGION, tmp_path) == before
    assert source_hash("eu-west-1", tmp_path) != before
    (tmp_path / "stacks" / "a.py").write_text("two")
    assert source_hash(REGION, tmp_path) != before


def test_old_extracts_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNCTL_IAM_CACHE", str(tmp_path))
    for index in range(12):
        (tmp_path / f"template-old{index}.json").write_text("{}")
    monkeypatch.setattr(template_module, "synthesize", lambda region, root: TEMPLATE)
    template_module.load_template(REGION)
    assert len(list(tmp_path.glob("template-*.json"))) == 8

"""The client finds the stack by name (DescribeStacks) and says what to do when it cannot."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from runctl.cli import app
from runctl.client import Client, StackNotFound
from runctl.client.stack import DEFAULT_STACK_NAME

from .conftest import REGION, STACK_NAME


def test_the_default_stack_name_is_the_one_cdk_deploys():
    cdk_json = json.loads((Path(__file__).resolve().parents[3] / "cdk.json").read_text())
    assert cdk_json["context"]["runctl:stackName"] == DEFAULT_STACK_NAME


def test_outputs_are_read_from_the_stack(cloud):
    outputs = Client(stack_name=STACK_NAME).outputs

    assert outputs.bucket == cloud.stack.bucket
    assert outputs.runs_table == cloud.stack.table
    assert outputs.log_group == cloud.stack.log_group
    assert outputs.state_machine_arn == cloud.stack.state_machine_arn
    assert outputs.execution_arn("run-1").endswith(":execution:TrainRun:run-1")


def test_no_stack_deployed_is_one_line_saying_how_to_deploy(moto_cloud, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["runs", "list"])

    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: no runctl stack named 'Runctl' in {REGION}: deploy it with `npx cdk deploy`, "
        "or point at yours with stack_name/region in .runctl.toml"
    ]


def test_the_stack_name_comes_from_runctl_toml(cloud, tmp_path, monkeypatch):
    (tmp_path / ".runctl.toml").write_text('stack_name = "Elsewhere"\n')
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["runs", "list"])

    assert "no runctl stack named 'Elsewhere'" in result.output
    # ...and a flag overrides the file
    assert CliRunner().invoke(app, ["--stack", STACK_NAME, "runs", "list"]).exit_code == 0


def test_a_stack_without_runctl_outputs_is_not_taken_for_one(moto_cloud):
    template = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "unrelated"}}
        },
        "Outputs": {"BucketName": {"Value": "some-bucket"}},
    }
    boto3.client("cloudformation").create_stack(
        StackName="Unrelated", TemplateBody=json.dumps(template)
    )

    with pytest.raises(StackNotFound, match="has no output StateMachineArn, RunsTableName"):
        _ = Client(stack_name="Unrelated").outputs

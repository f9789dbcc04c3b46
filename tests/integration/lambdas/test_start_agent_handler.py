"""StartAgent handler: the agent's config in S3, the task token on the record, the start command."""

from __future__ import annotations

import json

import pytest

from lambdas.constants import agent_config_key
from lambdas.errors import RunNotLive
from lambdas.handlers import start_agent

TOKEN = "AQCEAAAAKgAAAA-task-token-" + "t" * 40


@pytest.fixture
def started(invoke, recorded_run, launched, fake_ssm, lambda_environment):
    return invoke(
        start_agent,
        {"run": recorded_run, "instance": launched, "task_token": TOKEN, "heartbeat_seconds": 300},
    )


def test_given_ready_instance_when_agent_started_then_config_is_written_where_agent_reads_it(
    started, recorded_run, launched, lambda_environment, aws
):
    bucket = lambda_environment["BUCKET_NAME"]
    stored = aws.s3.get_object(Bucket=bucket, Key=agent_config_key("run-1", 1))

    config = json.loads(stored["Body"].read())
    assert stored["ServerSideEncryption"] == "AES256"
    assert config["task_token"] == TOKEN
    assert config["spec"] == recorded_run["spec"]
    assert config["run_id"] == "run-1"
    assert config["attempt"] == 1
    assert config["heartbeat_seconds"] == 300
    assert config["bucket"] == bucket
    assert config["table_name"] == lambda_environment["RUNS_TABLE_NAME"]
    assert config["log_group"] == "/runctl/runs"
    assert config["region"] == "us-east-1"
    assert config["instance_id"] == launched["instance_id"]


def test_given_ready_instance_when_agent_started_then_token_is_stored_on_the_record(
    started, read_record
):
    item = read_record("run-1")

    assert item["task_token"] == TOKEN
    assert item["status"] == "LAUNCHING"  # the agent itself moves it to STAGING and RUNNING


def test_given_ready_instance_when_agent_started_then_command_names_the_config_uri(
    started, fake_ssm, launched, lambda_environment
):
    config_uri = f"s3://{lambda_environment['BUCKET_NAME']}/{agent_config_key('run-1', 1)}"

    (sent,) = fake_ssm.sent
    assert started == {"command_id": "cmd-1"}
    assert sent["InstanceIds"] == [launched["instance_id"]]
    assert sent["DocumentName"] == "AWS-RunShellScript"
    script = "\n".join(sent["Parameters"]["commands"])
    assert f"--config {config_uri}" in script
    assert TOKEN not in script  # the token travels in S3, not on a command line


def test_given_cancelled_run_when_agent_would_start_then_it_does_not(
    invoke, recorded_run, launched, fake_ssm, lambda_environment, aws
):
    aws.dynamodb.update_item(
        TableName=lambda_environment["RUNS_TABLE_NAME"],
        Key={"run_id": {"S": "run-1"}},
        UpdateExpression="SET #s = :c",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":c": {"S": "CANCELLED"}},
    )

    with pytest.raises(RunNotLive):
        invoke(
            start_agent,
            {
                "run": recorded_run,
                "instance": launched,
                "task_token": TOKEN,
                "heartbeat_seconds": 9,
            },
        )

    assert fake_ssm.sent == []

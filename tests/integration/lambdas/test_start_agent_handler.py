"""StartAgent handler: the agent's config in S3, the task token on the record, the start command,
and the confirmation that the agent process started (the command's output)."""

from __future__ import annotations

import json

import pytest

from lambdas.constants import agent_config_key
from lambdas.errors import AgentStartFailed, RunNotLive
from lambdas.handlers import start_agent
from lambdas.logic import agent_start
from lambdas.logic.agent_commands import AGENT_STARTED

TOKEN = "AQCEAAAAKgAAAA-task-token-" + "t" * 40


# What the start script prints once the agent wrote its pid file.
CONFIRMED = {"Status": "Success", "StandardOutputContent": f"{AGENT_STARTED} attempt 1 pid 4242\n"}


@pytest.fixture
def start(invoke, recorded_run, launched, fake_ssm, lambda_environment):
    def call():
        return invoke(
            start_agent,
            {
                "run": recorded_run,
                "instance": launched,
                "task_token": TOKEN,
                "heartbeat_seconds": 300,
            },
        )

    return call


@pytest.fixture
def started(start, fake_ssm):
    fake_ssm.invocation = CONFIRMED
    return start()


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


def test_given_the_agent_wrote_its_pid_when_started_then_the_start_is_confirmed_from_the_output(
    start, fake_ssm, launched, monkeypatch
):
    monkeypatch.setattr(agent_start, "CONFIRM_POLL_SECONDS", 0)  # polls back to back
    # Given the start command's answer: first not there yet, then running, then done
    answers = [None, {"Status": "InProgress"}, CONFIRMED]
    asked: list[str] = []

    def invocation(CommandId, InstanceId):
        fake_ssm.invocation = answers[min(len(asked), len(answers) - 1)]
        asked.append(CommandId)
        return original(CommandId=CommandId, InstanceId=InstanceId)

    original = fake_ssm.get_command_invocation
    fake_ssm.invocation = answers[0]
    fake_ssm.get_command_invocation = invocation

    # When StartAgent runs
    result = start()

    # Then it returned only after reading the confirmation, of the command it sent
    assert result == {"command_id": "cmd-1"}
    assert asked == ["cmd-1", "cmd-1", "cmd-1"]


def test_given_the_start_command_failed_when_started_then_agent_start_failed_says_why(
    start, fake_ssm, launched, read_record
):
    fake_ssm.invocation = {
        "Status": "Failed",
        "StandardOutputContent": "",
        "StandardErrorContent": "the agent did not start within 20 s\npython3: not found\n",
    }

    with pytest.raises(AgentStartFailed) as failed:
        start()

    message = str(failed.value)
    assert f"the agent did not start on {launched['instance_id']}: python3: not found" in message
    assert "cmd-1: Failed" in message
    # The token was stored first: the attempt is the run's current one until PlanNextAttempt
    assert read_record("run-1")["task_token"] == TOKEN


def test_given_success_without_the_pid_line_when_started_then_it_is_not_taken_as_started(
    start, fake_ssm
):
    # (moto's own GetCommandInvocation says Success with no output for any command)
    fake_ssm.invocation = {"Status": "Success", "StandardOutputContent": ""}

    with pytest.raises(AgentStartFailed, match="no output"):
        start()

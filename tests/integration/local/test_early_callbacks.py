"""In the emulator, a `.waitForTaskToken` task's token works from the moment the task is
scheduled, as on AWS: a SendTaskHeartbeat or SendTaskSuccess sent while the task's Lambda is still
running (StartAgent confirming the agent while a short script already finished) is taken."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runctl.local.emulator import REGION, Emulator

HANDLER = f"{__name__}.report_before_returning"


def report_before_returning(event: dict[str, Any], context: object) -> dict[str, str]:
    """A task Lambda that heartbeats and then reports the task's result itself, before it
    returns (what an agent on the instance may do while StartAgent is still confirming it)."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    token = event["token"]
    for _ in range(event.get("heartbeats", 0)):
        sfn.send_task_heartbeat(taskToken=token)
    if event.get("succeed", True):
        sfn.send_task_success(taskToken=token, output=json.dumps({"reported": event["value"]}))
    return {"invocation": "returned"}


@pytest.fixture(scope="module")
def sfn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with Emulator(Path(tmp_path_factory.mktemp("emulator"))):
        yield boto3.client("stepfunctions", region_name=REGION)


@pytest.fixture(scope="module")
def function_arn(sfn: Any) -> str:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("handler.py", "")
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="early-callbacks", AssumeRolePolicyDocument="{}")["Role"]
    return boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="early-callbacks",
        Runtime="python3.11",
        Role=role["Arn"],
        Handler=HANDLER,
        Code={"ZipFile": archive.getvalue()},
        Timeout=60,
    )["FunctionArn"]


def _run(sfn: Any, function_arn: str, payload: dict[str, Any], heartbeat_seconds: int) -> dict:
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {
                    "FunctionName": function_arn,
                    "Payload": {**payload, "token.$": "$$.Task.Token"},
                },
                "HeartbeatSeconds": heartbeat_seconds,
                "TimeoutSeconds": 120,
                "End": True,
            }
        },
    }
    iam = boto3.client("iam", region_name=REGION)
    name = f"early-{time.monotonic_ns()}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]
    machine = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=role["Arn"]
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    deadline = time.monotonic() + 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution never ended"
        time.sleep(0.1)
    return described


def test_a_success_sent_during_the_invocation_ends_the_task_with_its_output(sfn, function_arn):
    # Given a task whose Lambda reports success before it returns, with a heartbeat interval
    # (moto 5.2.5 alone waits for a heartbeat first and ends it in States.HeartbeatTimeout)
    described = _run(sfn, function_arn, {"value": 7, "heartbeats": 0}, heartbeat_seconds=2)

    # Then the task's result is the reported output, not the invocation's
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert json.loads(described["output"]) == {"reported": 7}


def test_a_heartbeat_sent_during_the_invocation_is_accepted(sfn, function_arn):
    # Given a Lambda that heartbeats twice before reporting (moto alone: InvalidToken)
    described = _run(sfn, function_arn, {"value": 3, "heartbeats": 2}, heartbeat_seconds=2)

    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert json.loads(described["output"]) == {"reported": 3}


def test_without_a_report_the_heartbeat_still_times_out(sfn, function_arn):
    # Given a Lambda that returns without reporting: nothing arrives within the interval
    described = _run(sfn, function_arn, {"value": 0, "succeed": False}, heartbeat_seconds=1)

    assert described["status"] == "FAILED"
    assert described["error"] == "States.HeartbeatTimeout", described.get("cause")

"""In the emulator, `states:startExecution.sync:2` behaves as on AWS: the ASL's PascalCase
parameters start the child, its output comes back PascalCase, a failed child fails the task with
States.TaskFailed and the child's DescribeExecution as the cause, and MaxConcurrency holds."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from runctl.local.emulator import REGION, Emulator

CHILD = {
    "StartAt": "Decide",
    "States": {
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Fail"}],
            "Default": "Done",
        },
        "Fail": {"Type": "Fail", "Error": "Runctl.ScriptFailed", "Cause": "exit 3"},
        "Done": {
            "Type": "Pass",
            "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"},
            "End": True,
        },
    },
}


def _parent(child_arn: str) -> dict:
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrencyPath": "$.parallel",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Child",
                    "States": {
                        "Child": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::states:startExecution.sync:2",
                            "Parameters": {
                                "StateMachineArn": child_arn,
                                "Name.$": "$.name",
                                "Input.$": "$.input",
                            },
                            "ResultSelector": {"status.$": "$.Status", "output.$": "$.Output"},
                            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                            "End": True,
                        },
                        "Caught": {"Type": "Pass", "End": True},
                    },
                },
                "End": True,
            }
        },
    }


@pytest.fixture(scope="module")
def sfn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with Emulator(Path(tmp_path_factory.mktemp("emulator"))):
        yield boto3.client("stepfunctions", region_name=REGION)


def _run(sfn, items: list[dict], parallel: int) -> tuple[dict, str]:
    iam = boto3.client("iam", region_name=REGION)
    suffix = str(len(sfn.list_state_machines()["stateMachines"]))
    role = iam.create_role(RoleName=f"sfn-{suffix}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    child = sfn.create_state_machine(
        name=f"child-{suffix}", definition=json.dumps(CHILD), roleArn=role
    )["stateMachineArn"]
    parent = sfn.create_state_machine(
        name=f"parent-{suffix}", definition=json.dumps(_parent(child)), roleArn=role
    )["stateMachineArn"]
    execution = sfn.start_execution(
        stateMachineArn=parent, input=json.dumps({"items": items, "parallel": parallel})
    )["executionArn"]
    deadline = time.monotonic() + 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the parent never ended"
        time.sleep(0.2)
    return described, child


def test_a_child_started_with_sync_2_returns_its_parsed_output(sfn):
    described, _ = _run(sfn, [{"name": "c-0", "input": {"n": 21, "fail": False}}], parallel=1)

    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == [{"status": "SUCCEEDED", "output": {"doubled": 42}}]


def test_a_failed_child_fails_the_task_with_its_description_as_cause(sfn):
    described, _ = _run(sfn, [{"name": "c-0", "input": {"n": 1, "fail": True}}], parallel=1)

    (caught,) = json.loads(described["output"])
    assert caught["Error"] == "States.TaskFailed"
    cause = json.loads(caught["Cause"])
    assert (cause["Status"], cause["Error"], cause["Cause"]) == (
        "FAILED",
        "Runctl.ScriptFailed",
        "exit 3",
    )


def test_map_concurrency_bounds_the_children_running_at_once(sfn):
    items = [{"name": f"c-{index}", "input": {"n": index, "fail": False}} for index in range(4)]

    described, child = _run(sfn, items, parallel=1)

    assert described["status"] == "SUCCEEDED"
    children = [
        sfn.describe_execution(executionArn=item["executionArn"])
        for item in sfn.list_executions(stateMachineArn=child)["executions"]
    ]
    spans = sorted((item["startDate"], item["stopDate"]) for item in children)
    assert len(spans) == 4
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))

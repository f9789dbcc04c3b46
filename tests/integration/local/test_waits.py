"""In the emulator, a Wait state lasts its seconds x the Emulator's wait_scale (local polls come
sooner; the ASL is unchanged), and a stopped execution still ends its wait at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import boto3
import pytest

from runctl.local import waits
from runctl.local.emulator import REGION, Emulator

WAIT_SECONDS = 8
SCALE = 0.25
_names = count()


@pytest.fixture(scope="module")
def sfn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with Emulator(Path(tmp_path_factory.mktemp("emulator")), wait_scale=SCALE):
        yield boto3.client("stepfunctions", region_name=REGION)


def _start(sfn: Any, seconds: int) -> str:
    definition = {
        "StartAt": "Pause",
        "States": {"Pause": {"Type": "Wait", "SecondsPath": "$.seconds", "End": True}},
    }
    name = f"waits-{next(_names)}"
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName=name, AssumeRolePolicyDocument="{}"
    )["Role"]
    machine = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=role["Arn"]
    )["stateMachineArn"]
    return sfn.start_execution(stateMachineArn=machine, input=json.dumps({"seconds": seconds}))[
        "executionArn"
    ]


def _ended(sfn: Any, execution: str) -> dict:
    deadline = time.monotonic() + 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution never ended"
        time.sleep(0.05)
    return described


def _waited(sfn: Any, execution: str) -> float:
    """Seconds between the Wait state's entry and exit in the execution's history."""
    events = sfn.get_execution_history(executionArn=execution)["events"]
    entered = next(e["timestamp"] for e in events if e["type"] == "WaitStateEntered")
    exited = next(e["timestamp"] for e in events if e["type"] == "WaitStateExited")
    return (exited - entered).total_seconds()


def test_a_wait_lasts_its_seconds_times_the_scale(sfn):
    execution = _start(sfn, WAIT_SECONDS)

    described = _ended(sfn, execution)

    # Then it waited about 8 x 0.25 = 2 s: not the 8 s the state says, nor no wait at all
    assert described["status"] == "SUCCEEDED"
    waited = _waited(sfn, execution)
    assert WAIT_SECONDS * SCALE * 0.9 <= waited < WAIT_SECONDS / 2, waited


def test_a_stopped_execution_ends_its_wait_at_once(sfn):
    execution = _start(sfn, 3600)

    sfn.stop_execution(executionArn=execution)

    assert _ended(sfn, execution)["status"] == "ABORTED"


@pytest.mark.parametrize("scale", [0, -1, 1.5])
def test_a_scale_outside_zero_to_one_is_refused(scale):
    with pytest.raises(ValueError, match="wait_scale must be in"):
        waits.WaitScale().set(scale)

"""The worst TrainRun and Sweep states, built from the largest RunSpec the model accepts, the
largest result the agent sends and the longest causes Step Functions passes on, stay under the
256 KiB that fails an execution with States.DataLimitExceeded (docs/architecture.md, "Payload
limits"). Sizes are counted as lambdas/models/bounds.py counts (never less than AWS does)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.models.bounds import json_size
from lambdas.models.run_spec import MAX_SPEC_JSON_BYTES, RunSpec
from lambdas.models.steps import (
    BootstrapInfo,
    FinalizeOutput,
    ImageInfo,
    InstanceInfo,
    PreviousAttempt,
    ReadyProbe,
    RunContext,
)
from lambdas.models.sweep_spec import MAX_SWEEP_ID_LENGTH, MAX_SWEEP_SPEC_JSON_BYTES
from tests.largest_payloads import QUOTE, largest_result, largest_spec, spec_size

MAX_PAYLOAD_BYTES = 262_144
# SendTaskFailure's and a Lambda error's cause: at most 32,768 characters.
LONGEST_CAUSE = QUOTE * 32_768
# What the states hold besides the payloads modelled here (ARNs, dates, AWS's own fields) is a
# few hundred bytes: every state is held to this, leaving that much room.
BUDGET = MAX_PAYLOAD_BYTES - 16 * 1024

BUCKET = "b" * 63
RUN_ID = "r" * 80
EXECUTION_ARN = f"arn:aws:states:ap-southeast-2:123456789012:execution:{'T' * 80}:{RUN_ID}"
CODE = {"s3_uri": f"s3://{BUCKET}/code/" + "a" * 64 + ".tar.gz", "sha256": "a" * 64}
DATA_PREFIX = f"s3://{BUCKET}/data/"
INSTANCE_TYPES = [f"{'x' * 30}{index:02d}.xlarge" for index in range(20)]


def data_entry(index: int, uri_chars: int) -> dict[str, str]:
    return {
        "s3_uri": DATA_PREFIX + QUOTE * (uri_chars - len(DATA_PREFIX)),
        "name": f"{index:02d}" * 64,
    }


def raw_spec() -> dict[str, Any]:
    base = {
        "code": CODE,
        "entry_point": "e" * 1024,
        "instance_types": INSTANCE_TYPES,
        "interpreter": "i" * 256,
        "experiment": "x" * 128,
    }
    return largest_spec(base, data_entry, len(DATA_PREFIX) + 1)


def run_context(attempt: int = 1) -> dict[str, Any]:
    return RunContext(
        run_id=RUN_ID,
        execution_arn=EXECUTION_ARN,
        attempt=attempt,
        spec=RunSpec.model_validate(raw_spec()),
        train_timeout_seconds=14 * 24 * 3600 + 600,
        avoid_placements=[f"{name}@ap-southeast-2a" for name in INSTANCE_TYPES[:10]],
    ).model_dump(mode="json")


CONFIG = {"first_poll_seconds": 45, "poll_seconds": 10, "heartbeat_seconds": 300}
INSTANCE = InstanceInfo(
    instance_id="i-0123456789abcdef0",
    instance_type=INSTANCE_TYPES[0],
    availability_zone="ap-southeast-2a",
    market="on-demand",
    launched_at="2026-12-03T10:42:11.123456+00:00",
    ready_deadline=1.8e9,
    image=ImageInfo(
        name="ami-0123456789abcdef0",
        interpreter="i" * 256,
        architecture="x86_64",
        layered=True,
        nvidia_gpus=16,
    ),
).model_dump(mode="json")
PROBE = ReadyProbe(ready=True, detail="previous attempt handed off its checkpoint: terminated")
BOOTSTRAP = BootstrapInfo(command_id="0" * 36, deadline=1.8e9).model_dump(mode="json")
PREVIOUS = PreviousAttempt(
    attempt=170,
    reason="spot-interrupted",
    instance_ids=["i-0123456789abcdef0"] * 2,
    await_handoff=True,
    release_deadline=1.8e9,
).model_dump(mode="json")


def largest_final() -> dict[str, Any]:
    return FinalizeOutput(
        run_id=RUN_ID,
        status="FAILED",
        end_reason="environment-failed",
        error="Runctl.EnvironmentFailed",
        cause=LONGEST_CAUSE,
        outputs_uri=f"s3://{BUCKET}/runs/{RUN_ID}/outputs/",
    ).model_dump(mode="json")


def attempt_state(**more: Any) -> dict[str, Any]:
    return {
        "config": CONFIG,
        "run": run_context(),
        "previous": PREVIOUS,
        "instance": INSTANCE,
        "probe": PROBE.model_dump(mode="json"),
        "bootstrap": BOOTSTRAP,
        **more,
    }


def next_plan() -> dict[str, Any]:
    return {
        "resume": True,
        "reason": "spot-interrupted",
        "detail": "",
        "run": run_context(attempt=171),
        "previous": PREVIOUS,
    }


def sent_result() -> str:
    return largest_result().to_json()


def sweep_item(caught: bool) -> dict[str, Any]:
    spec = raw_spec()
    item: dict[str, Any] = {
        "sweep_id": "s" * MAX_SWEEP_ID_LENGTH,
        "index": 999,
        "total_runs": 1000,
        "stop_on_failure": True,
        "tolerated_failure_percentage": 99.99999,
        "prepared": {"start": True, "run_id": RUN_ID, "spec": spec},
    }
    if caught:
        # The failed run's description, as the .sync:2 task's failure cause.
        description = {
            "ExecutionArn": EXECUTION_ARN,
            "StateMachineArn": EXECUTION_ARN,
            "Name": RUN_ID,
            "Status": "FAILED",
            "StartDate": "2026-12-03T10:42:11.123456+00:00",
            "StopDate": "2026-12-03T10:42:11.123456+00:00",
            "Input": spec,
            "InputDetails": {"Included": True},
            "Error": "Runctl.EnvironmentFailed",
            "Cause": largest_final()["cause"],
            "RedriveCount": 0,
            "RedriveStatus": "NOT_REDRIVABLE",
            "RedriveStatusReason": "Execution is RUNNING and cannot be redriven",
        }
        item["error"] = {"Error": "States.TaskFailed", "Cause": json.dumps(description)}
    return item


STATES = {
    "ValidateRun's output (raw input beside the RunContext)": lambda: {
        "input": raw_spec(),
        "config": CONFIG,
        "validated": {"run": run_context()},
    },
    "Train's input to StartAgent": lambda: {
        "FunctionName": EXECUTION_ARN,
        "Payload": {
            "task_token": "t" * 4096,
            "heartbeat_seconds": 300,
            "run": run_context(),
            "instance": INSTANCE,
        },
    },
    "FinalizeRun's output after a success": lambda: attempt_state(
        result=json.loads(sent_result()), final=largest_final()
    ),
    "PlanNextAttempt's output after the agent failed the task": lambda: attempt_state(
        error={"Error": "Runctl.ScriptFailed", "Cause": sent_result()}, next=next_plan()
    ),
    "PlanNextAttempt's output after a Lambda step failed": lambda: attempt_state(
        error={"Error": "BootstrapFailed", "Cause": LONGEST_CAUSE}, next=next_plan()
    ),
    "FinalizeRun's output after PlanNextAttempt failed too": lambda: attempt_state(
        error={"Error": "BootstrapFailed", "Cause": LONGEST_CAUSE},
        plan_error={"Error": "Lambda.Unknown", "Cause": LONGEST_CAUSE},
        final=largest_final(),
    ),
    "a Sweep item's run starting": lambda: sweep_item(caught=False),
    "a Sweep item after its run failed": lambda: sweep_item(caught=True),
    "ExpandSweep's input": lambda: {
        "spec": {"s": "x" * (MAX_SWEEP_SPEC_JSON_BYTES - 9)},
        "sweep_id": "s" * MAX_SWEEP_ID_LENGTH,
        "execution_arn": EXECUTION_ARN,
    },
}


def test_the_spec_used_is_the_largest_accepted_one():
    spec = RunSpec.model_validate(raw_spec())

    assert spec.instance_types == INSTANCE_TYPES
    assert MAX_SPEC_JSON_BYTES - 2 <= spec_size(raw_spec()) <= MAX_SPEC_JSON_BYTES


@pytest.mark.parametrize("state", list(STATES))
def test_every_state_stays_under_the_payload_limit_with_room_to_spare(state):
    size = json_size(STATES[state]())

    assert size <= BUDGET, f"{state}: {size:,} bytes, over {BUDGET:,} (limit {MAX_PAYLOAD_BYTES:,})"

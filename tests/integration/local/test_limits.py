"""In the emulator, the 256 KiB payload limit holds as on AWS: an oversized state output, task
result or state input (after Parameters) fails the execution with States.DataLimitExceeded, which
a Catch or Retry on States.ALL does not take; at exactly 262,144 bytes the state passes; and
SendTaskSuccess refuses an oversized output to its caller."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from runctl.local.emulator import REGION, Emulator
from runctl.local.limits import MAX_PAYLOAD_BYTES, payload_size

_names = count()
CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.caught", "Next": "Caught"}]
RETRY_ALL = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2}]


@pytest.fixture(scope="module")
def sfn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with Emulator(Path(tmp_path_factory.mktemp("emulator"))):
        yield boto3.client("stepfunctions", region_name=REGION)


def _start(sfn, definition: dict, execution_input: object) -> str:
    iam = boto3.client("iam", region_name=REGION)
    suffix = next(_names)
    role = iam.create_role(RoleName=f"limits-{suffix}", AssumeRolePolicyDocument="{}")["Role"]
    machine = sfn.create_state_machine(
        name=f"limits-{suffix}", definition=json.dumps(definition), roleArn=role["Arn"]
    )["stateMachineArn"]
    return sfn.start_execution(stateMachineArn=machine, input=json.dumps(execution_input))[
        "executionArn"
    ]


def _ended(sfn, execution: str) -> dict:
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution never ended"
        time.sleep(0.1)
    return described


def _run(sfn, definition: dict, execution_input: object = None) -> dict:
    return _ended(sfn, _start(sfn, definition, execution_input or {}))


def _string_of_json_size(size: int) -> str:
    """A string whose JSON (with its quotes) is exactly `size` bytes."""
    return "x" * (size - 2)


def _wrapped(inner: dict) -> dict:
    """`inner` as the only state of a Parallel branch that catches (and retries) States.ALL."""
    return {
        "StartAt": "Guarded",
        "States": {
            "Guarded": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "Inner", "States": {"Inner": inner}}],
                "Retry": RETRY_ALL,
                "Catch": CATCH_ALL,
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }


def test_a_pass_state_whose_output_passes_256_kib_fails_the_execution(sfn):
    # Given a Pass state whose result is one byte over the limit
    big = _string_of_json_size(MAX_PAYLOAD_BYTES + 1)

    # When it runs
    described = _run(
        sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": big, "End": True}}}
    )

    # Then the execution fails with AWS's error and wording
    assert described["status"] == "FAILED"
    assert described["error"] == "States.DataLimitExceeded"
    assert "'P' returned a result with a size exceeding" in described["cause"]


def test_an_output_of_exactly_262144_bytes_passes(sfn):
    exact = _string_of_json_size(MAX_PAYLOAD_BYTES)
    assert payload_size(exact) == MAX_PAYLOAD_BYTES

    described = _run(
        sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": exact, "End": True}}}
    )

    assert described["status"] == "SUCCEEDED"


def test_the_size_is_counted_as_compact_utf8_json(sfn):
    # Given an object whose compact JSON fits, but whose `json.dumps` default (", " and ": ",
    # \\u escapes) would not: 40,000 two-byte characters and 10,000 small keys
    value = {"text": "é" * 40_000, **{f"k{index}": 1 for index in range(10_000)}}
    assert payload_size(value) <= MAX_PAYLOAD_BYTES < len(json.dumps(value))

    described = _run(
        sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": value, "End": True}}}
    )

    assert described["status"] == "SUCCEEDED"


def test_a_catch_and_retry_on_states_all_do_not_take_it(sfn):
    # Given an oversized Pass inside a Parallel that retries and catches States.ALL
    big = _string_of_json_size(MAX_PAYLOAD_BYTES + 1)

    described = _run(sfn, _wrapped({"Type": "Pass", "Result": big, "End": True}))

    # Then the error is neither caught nor turned into another one: the execution fails with it
    assert described["status"] == "FAILED"
    assert described["error"] == "States.DataLimitExceeded"


def test_a_catch_naming_it_does_take_it(sfn):
    big = _string_of_json_size(MAX_PAYLOAD_BYTES + 1)
    definition = _wrapped({"Type": "Pass", "Result": big, "End": True})
    guarded = definition["States"]["Guarded"]
    guarded["Catch"] = [{**CATCH_ALL[0], "ErrorEquals": ["States.DataLimitExceeded"]}]
    del guarded["Retry"]

    described = _run(sfn, definition)

    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["caught"]["Error"] == "States.DataLimitExceeded"


def test_a_map_whose_collected_results_pass_256_kib_fails_even_under_a_catch(sfn):
    # Given a Map whose 300 items each return 1,000 bytes (the Sweep's old shape), caught on ALL
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Item",
                    "States": {"Item": {"Type": "Pass", "Result": "y" * 1000, "End": True}},
                },
                "ResultPath": "$.results",
                "Catch": CATCH_ALL,
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }

    described = _run(sfn, definition, {"items": list(range(300))})

    assert described["status"] == "FAILED"
    assert described["error"] == "States.DataLimitExceeded"


def test_a_state_input_that_parameters_make_too_large_fails(sfn):
    # Given a 150 KB input that a Task's Parameters copy twice (the input itself is fine)
    half = "z" * 150_000
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:s3:listBuckets",
        "Parameters": {"a.$": "$.half", "b.$": "$.half"},
        "End": True,
    }

    described = _run(sfn, _wrapped(task), {"half": half})

    assert described["status"] == "FAILED"
    assert described["error"] == "States.DataLimitExceeded"
    assert "after Parameters processing" in described["cause"]


def test_a_callback_task_result_over_the_limit_fails_and_send_task_success_refuses_more(sfn):
    # Given a task waiting for its token, whose ResultPath adds the result to a 200 KB input
    definition = _wrapped(
        {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl.$": "$.queue", "MessageBody.$": "$$.Task.Token"},
            "ResultPath": "$.result",
            "End": True,
        }
    )
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName=f"tokens-{next(_names)}")["QueueUrl"]
    execution = _start(sfn, definition, {"queue": queue, "pad": "p" * 200_000})
    deadline = time.monotonic() + 30
    while not (messages := sqs.receive_message(QueueUrl=queue).get("Messages")):
        assert time.monotonic() < deadline, "no task token arrived"
    token = messages[0]["Body"]

    # When the worker first sends an output over 256 KiB, then one of 100 KB
    with pytest.raises(ClientError) as refused:
        sfn.send_task_success(taskToken=token, output=json.dumps("o" * MAX_PAYLOAD_BYTES))
    sfn.send_task_success(taskToken=token, output=json.dumps("o" * 100_000))

    # Then the first is refused by the API, and the second makes the state output too large
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    described = _ended(sfn, execution)
    assert described["status"] == "FAILED"
    assert described["error"] == "States.DataLimitExceeded"

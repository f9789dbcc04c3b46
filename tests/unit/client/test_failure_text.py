"""A failed execution's (error, cause) as one line: Lambda JSON causes from local mode (the bridge
that stands in for Lambda) and from AWS, plain Fail-state causes, nested and broken ones."""

from __future__ import annotations

import json

import pytest

from lambdas.logic.failure_text import (
    FAILURE_LINE_WIDTH,
    failure_line,
    failure_trace,
    read_failure,
)
from tests.unit.client.handlers_for_tests import local_mode_cause

# What Step Functions on AWS puts in the cause of a Python Lambda's unhandled RunSpecInvalid.
AWS_CAUSE = json.dumps(
    {
        "errorMessage": "data.0.s3_uri: no objects under s3://my-datasets/imagenet/",
        "errorType": "RunSpecInvalid",
        "requestId": "7c1f3a52-1d2e-4f0b-9a51-3c8c5d0e6b21",
        "stackTrace": [
            '  File "/opt/python/aws_lambda_powertools/middleware_factory/factory.py", line 135,'
            " in wrapper\n    response = middleware()\n",
            '  File "/var/task/lambdas/handlers/validate_run.py", line 19, in lambda_handler\n'
            '    return validate_run(event, lambda_env(), wiring.s3()).model_dump(mode="json")\n',
            '  File "/var/task/lambdas/logic/validation.py", line 68, in _check_data_exists\n'
            '    raise RunSpecInvalid(f"data.{index}.s3_uri: no objects under {item.s3_uri}")\n',
        ],
    }
)


def test_given_a_local_mode_lambda_failure_when_shown_then_one_line_without_the_trace():
    cause = local_mode_cause()

    line = failure_line("RunSpecInvalid", cause)

    assert line == "RunSpecInvalid: entry_point: bad"
    assert "\n" not in line


def test_given_a_local_mode_lambda_failure_when_its_trace_is_asked_then_the_traceback():
    trace = failure_trace(local_mode_cause())

    assert trace is not None
    assert trace.startswith("Traceback (most recent call last):")
    assert "raises_runspec_invalid" in trace
    assert trace.rstrip().endswith("RunSpecInvalid: entry_point: bad")


def test_given_an_aws_lambda_failure_when_shown_then_error_type_and_message_only():
    line = failure_line("RunSpecInvalid", AWS_CAUSE)

    assert line == "RunSpecInvalid: data.0.s3_uri: no objects under s3://my-datasets/imagenet/"
    assert "stackTrace" not in line and "requestId" not in line


def test_given_an_aws_lambda_failure_when_its_trace_is_asked_then_each_frame_on_its_lines():
    trace = failure_trace(AWS_CAUSE)

    assert trace is not None
    lines = trace.splitlines()
    assert lines[0].startswith('  File "/opt/python/aws_lambda_powertools/')
    assert '  File "/var/task/lambdas/logic/validation.py", line 68, in _check_data_exists' in lines
    assert len(lines) == 6


def test_given_a_fail_state_plain_cause_when_shown_then_it_passes_unchanged():
    cause = "script exited with code 1: ValueError: loss is NaN at step 7"

    assert failure_line("Runctl.ScriptFailed", cause) == f"Runctl.ScriptFailed: {cause}"
    assert failure_trace(cause) is None


@pytest.mark.parametrize(
    "cause",
    [
        "{not json: the step said so}",
        '{"reason": "spot-interrupted", "notice_time": "2026-11-23T12:27:00Z"}',
        '["a", "list"]',
        '"a JSON string"',
    ],
)
def test_given_a_cause_that_is_no_lambda_error_when_shown_then_it_passes_unchanged(cause):
    assert failure_line("Runctl.Interrupted", cause) == f"Runctl.Interrupted: {cause}"


def test_given_a_lambda_error_without_a_message_when_shown_then_its_type_alone():
    assert failure_line("Lambda.Unknown", '{"errorType": "Runtime.ExitError"}') == (
        "Runtime.ExitError"
    )


def test_given_an_aws_lambda_timeout_when_shown_then_its_message_without_a_type():
    cause = json.dumps({"errorMessage": "Task timed out after 60.00 seconds"})

    assert failure_line("States.Timeout", cause) == (
        "States.Timeout: Task timed out after 60.00 seconds"
    )


def test_given_a_child_execution_failure_nested_in_the_cause_when_shown_then_the_innermost():
    # A .sync StartExecution task's cause is the failed child execution's description
    cause = json.dumps(
        {
            "ExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:TrainRun:run-1",
            "Status": "FAILED",
            "Error": "RunSpecInvalid",
            "Cause": AWS_CAUSE,
        }
    )

    failure = read_failure("States.TaskFailed", cause)

    assert failure.name == "RunSpecInvalid"
    assert failure.message == "data.0.s3_uri: no objects under s3://my-datasets/imagenet/"
    assert failure.trace is not None and "_check_data_exists" in failure.trace


def test_given_an_error_message_that_is_itself_a_lambda_error_when_shown_then_unwrapped():
    cause = json.dumps({"errorType": "Wrapped", "errorMessage": AWS_CAUSE})

    assert failure_line("Wrapped", cause).startswith("RunSpecInvalid: data.0.s3_uri: ")


def test_given_a_multi_line_message_when_shown_then_one_line():
    cause = json.dumps(
        {"errorType": "ValidationError", "errorMessage": "1 validation error\nrun_id\n  missing"}
    )

    assert failure_line("ValidationError", cause) == (
        "ValidationError: 1 validation error run_id missing"
    )


def test_given_a_very_long_message_when_shown_then_cut_with_an_ellipsis_at_the_width():
    problems = "; ".join(f"hyperparameters.h{n}: value is too long" for n in range(30))
    cause = json.dumps(
        {"errorType": "RunSpecInvalid", "errorMessage": f"RunSpec is invalid: {problems}"}
    )

    line = failure_line("RunSpecInvalid", cause)

    assert len(line) == FAILURE_LINE_WIDTH
    assert line.endswith("…")
    assert line.startswith("RunSpecInvalid: RunSpec is invalid: hyperparameters.h0: value is")
    assert failure_line("RunSpecInvalid", cause, width=None).endswith("h29: value is too long")


def test_given_a_width_narrower_than_the_field_name_when_cut_then_the_field_name_is_kept():
    cause = "data.12.s3_uri: cannot list s3://a-long-bucket-name/and/a/prefix/ (AccessDenied)"

    line = failure_line("RunSpecInvalid", cause, width=20)

    assert line == "RunSpecInvalid: data.12.s3_uri:…"


def test_given_no_error_and_no_cause_when_shown_then_nothing():
    assert failure_line(None, None) == ""
    assert failure_line("States.Runtime", None) == "States.Runtime"

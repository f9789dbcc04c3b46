"""decide_outcome: how the run ended, from the caught error and the agent's result; and
run_end_fields, what FinalizeRun writes of it on the run item."""

from __future__ import annotations

import json

import pytest

from lambdas.constants import ERROR_AGENT_FAILED, ERROR_SCRIPT_FAILED
from lambdas.logic.finalizing import decide_outcome, error_name, run_end_fields
from lambdas.models.bounds import json_size
from lambdas.models.run_record import EndReason, RunStatus
from lambdas.models.steps import FINAL_CAUSE_JSON_BYTES, AgentResult, FinalizeInput, StepError

# How long the attempt has run when FinalizeRun runs: past the Train timeout unless a test says.


@pytest.fixture
def run(make_run):
    return make_run(limits={"max_runtime_seconds": 7200})


def _finalize_input(run, error: str | None = None, cause: str | None = None, result=None):
    return FinalizeInput(
        run=run,
        result=result,
        error=StepError(Error=error, Cause=cause) if error is not None else None,
    )


def test_given_result_and_no_error_when_decided_then_succeeded_completed(run):
    result = AgentResult(outcome="succeeded", exit_code=0, outputs_uri="s3://b/runs/run-1/outputs/")
    request = _finalize_input(run, result=result)

    outcome = decide_outcome(request, result)

    assert (outcome.status, outcome.end_reason) == (RunStatus.SUCCEEDED, EndReason.COMPLETED)
    assert (outcome.error, outcome.cause) == ("None", "")


def test_given_neither_result_nor_error_when_decided_then_internal_error(run):
    outcome = decide_outcome(_finalize_input(run), None)

    assert (outcome.status, outcome.end_reason) == (RunStatus.FAILED, EndReason.INTERNAL_ERROR)
    assert outcome.error == "Runctl.InternalError"


def test_given_script_failed_with_result_when_decided_then_cause_has_exit_code_and_last_line(run):
    result = AgentResult(
        outcome="script-failed",
        exit_code=3,
        stderr_tail="Traceback (most recent call last):\n  File x\nValueError: bad lr\n\n",
    )
    request = _finalize_input(run, ERROR_SCRIPT_FAILED, cause=None)

    outcome = decide_outcome(request, result)

    assert outcome.status is RunStatus.FAILED
    assert outcome.end_reason is EndReason.SCRIPT_FAILED
    assert outcome.error == ERROR_SCRIPT_FAILED == "Runctl.ScriptFailed"
    assert outcome.cause == "script exited with code 3: ValueError: bad lr"


def test_given_script_failed_with_empty_stderr_when_decided_then_cause_says_so(run):
    result = AgentResult(outcome="script-failed", exit_code=137, stderr_tail="")

    outcome = decide_outcome(_finalize_input(run, ERROR_SCRIPT_FAILED), result)

    assert outcome.cause == "script exited with code 137: (no stderr)"


def test_given_script_failed_without_result_when_decided_then_task_cause_is_used(run):
    outcome = decide_outcome(_finalize_input(run, ERROR_SCRIPT_FAILED, cause="exit 2"), None)

    assert outcome.end_reason is EndReason.SCRIPT_FAILED
    assert outcome.cause == "exit 2"


def test_given_agent_failed_with_message_when_decided_then_cause_has_the_message(run):
    result = AgentResult(outcome="agent-failed", message="cannot download code: AccessDenied")

    outcome = decide_outcome(_finalize_input(run, ERROR_AGENT_FAILED), result)

    assert outcome.end_reason is EndReason.AGENT_FAILED
    assert outcome.cause == "agent failed: cannot download code: AccessDenied"


def test_given_heartbeat_timeout_when_decided_then_instance_lost(run):
    outcome = decide_outcome(_finalize_input(run, "States.HeartbeatTimeout"), None)

    assert (outcome.status, outcome.end_reason) == (RunStatus.FAILED, EndReason.INSTANCE_LOST)
    assert outcome.error == "Runctl.InstanceLost"
    assert outcome.cause == "no heartbeat from the agent: the instance or its agent is gone"


def test_given_states_timeout_when_decided_then_limit_exceeded_naming_the_limit(run):
    outcome = decide_outcome(_finalize_input(run, "States.Timeout"), None)

    assert outcome.end_reason is EndReason.LIMIT_EXCEEDED
    assert outcome.error == "Runctl.LimitExceeded"
    assert outcome.cause == "the run exceeded its max runtime of 7200 s"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("CapacityUnavailable", EndReason.CAPACITY),
        ("InstanceStartTimeout", EndReason.START_TIMEOUT),
        ("InstanceLost", EndReason.INSTANCE_LOST),
        ("BootstrapFailed", EndReason.BOOTSTRAP_FAILED),
        ("AgentStartFailed", EndReason.AGENT_FAILED),
        (ERROR_AGENT_FAILED, EndReason.AGENT_FAILED),
        (ERROR_SCRIPT_FAILED, EndReason.SCRIPT_FAILED),
        ("States.HeartbeatTimeout", EndReason.INSTANCE_LOST),
        ("States.Timeout", EndReason.LIMIT_EXCEEDED),
    ],
)
def test_given_known_error_name_when_decided_then_it_maps_to_its_end_reason(run, error, reason):
    outcome = decide_outcome(_finalize_input(run, error, cause="x"), None)

    assert outcome.status is RunStatus.FAILED
    assert outcome.end_reason is reason
    assert outcome.error == error_name(reason)


def test_given_lambda_error_cause_json_when_decided_then_its_error_message_is_the_cause(run):
    cause = json.dumps(
        {
            "errorMessage": "no capacity for any allowed option: spot g5.xlarge in us-east-1a",
            "errorType": "CapacityUnavailable",
            "stackTrace": ["  File ...\n"],
        }
    )

    outcome = decide_outcome(_finalize_input(run, "CapacityUnavailable", cause=cause), None)

    assert outcome.end_reason is EndReason.CAPACITY
    assert outcome.cause == "no capacity for any allowed option: spot g5.xlarge in us-east-1a"


@pytest.mark.parametrize("cause", ["plain words", '["a json list"]', '{"no": "message"}'])
def test_given_other_cause_when_decided_then_it_is_shown_unchanged(run, cause):
    outcome = decide_outcome(_finalize_input(run, "InstanceLost", cause=cause), None)

    assert outcome.cause == cause


@pytest.mark.parametrize("error", ["States.TaskFailed", "KeyError", "Lambda.Unknown", "Runctl.X"])
def test_given_unknown_error_when_decided_then_internal_error_and_name_kept(run, error):
    outcome = decide_outcome(_finalize_input(run, error, cause=None), None)

    assert (outcome.status, outcome.end_reason) == (RunStatus.FAILED, EndReason.INTERNAL_ERROR)
    assert outcome.error == "Runctl.InternalError"
    assert outcome.cause == error  # no cause: the step's error name is the best we can say


def test_given_error_and_result_when_decided_then_the_error_wins(run):
    result = AgentResult(outcome="succeeded", exit_code=0)

    outcome = decide_outcome(_finalize_input(run, "States.Timeout", result=result), result)

    assert outcome.status is RunStatus.FAILED
    assert outcome.end_reason is EndReason.LIMIT_EXCEEDED


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        (EndReason.CAPACITY, "Runctl.Capacity"),
        (EndReason.START_TIMEOUT, "Runctl.StartTimeout"),
        (EndReason.BOOTSTRAP_FAILED, "Runctl.BootstrapFailed"),
        (EndReason.AGENT_FAILED, ERROR_AGENT_FAILED),
    ],
)
def test_given_end_reason_when_named_then_execution_error_is_runctl_camel_case(reason, name):
    assert error_name(reason) == name


def test_given_the_longest_cause_when_recorded_then_the_item_keeps_its_first_four_kib(run):
    # Given a Lambda's cause of 32,768 characters, 3 UTF-8 bytes each (~96 KB of the run item)
    cause = "中" * 32_768
    outcome = decide_outcome(_finalize_input(run, "States.TaskFailed", cause), None)

    # When FinalizeRun makes the fields it writes
    fields = run_end_fields(outcome, None, "2026-12-03T10:42:11+00:00", 60.0)

    # Then `error` is the cause's start, cut with an ellipsis within the execution's cause cap
    assert fields["error"].startswith("中中") and fields["error"].endswith("…")
    assert json_size(fields["error"]) <= FINAL_CAUSE_JSON_BYTES
    assert len(fields["error"].encode()) < 2100


def test_given_a_short_cause_when_recorded_then_the_item_keeps_it_whole(run):
    outcome = decide_outcome(_finalize_input(run, "States.TaskFailed", "no such bucket"), None)

    fields = run_end_fields(outcome, None, "2026-12-03T10:42:11+00:00", 60.0)

    assert fields["error"] == "no such bucket"

"""Invariants of statemachines/train_run.asl.json that no single run exercises: a state that
breaks one of them still passes every happy-path test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ASL = Path(__file__).resolve().parents[3] / "statemachines" / "train_run.asl.json"
# AWS's recommended set for transient Lambda service errors (Step Functions developer guide,
# "Handle Lambda service exceptions"; TooManyRequests is Lambda's throttle).
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
# After a client-side timeout StartAgent may have run: a retry would hand out a new task token
# while the agent it started keeps the old one, so Train does not retry it.
RAN_MAYBE = {"Lambda.ClientExecutionTimeoutException"}


def _states() -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = json.loads(ASL.read_text())["States"]
    return states


def _is_lambda_task(state: dict[str, Any]) -> bool:
    resource = str(state.get("Resource", ""))
    # Steps are substituted function ARNs (${...FunctionArn}) or the lambda:invoke integration.
    return state["Type"] == "Task" and (
        resource.endswith("FunctionArn}") or resource.startswith("arn:aws:states:::lambda:invoke")
    )


def _reachable_from(start: str, states: dict[str, dict[str, Any]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        todo += [state["Next"]] if "Next" in state else []
        todo += [choice["Next"] for choice in state.get("Choices", [])]
        todo += [state["Default"]] if "Default" in state else []
        todo += [catch["Next"] for catch in state.get("Catch", [])]
    return seen


def _catch_all_target(state: dict[str, Any]) -> str | None:
    for catch in state.get("Catch", []):
        if "States.ALL" in catch["ErrorEquals"]:
            return str(catch["Next"])
    return None


LAMBDA_TASKS = sorted(name for name, state in _states().items() if _is_lambda_task(state))
AFTER_RECORD_RUN = sorted(
    name
    for name in _reachable_from("RecordRun", _states())
    if _states()[name]["Type"] == "Task" and name != "FinalizeRun"
)


def test_given_the_asl_when_read_then_every_step_is_found_as_a_lambda_task():
    # Guards the two lists below: a resource spelled another way must not drop out of them.
    assert {"ValidateRun", "RecordRun", "LaunchInstance", "Train", "FinalizeRun"} <= set(
        LAMBDA_TASKS
    )
    assert {"RecordRun", "LaunchInstance", "Train", "PlanNextAttempt"} <= set(AFTER_RECORD_RUN)


@pytest.mark.parametrize("name", LAMBDA_TASKS)
def test_given_a_lambda_task_when_lambda_has_a_transient_error_then_it_is_retried_with_backoff(
    name,
):
    retries = _states()[name].get("Retry", [])

    expected = LAMBDA_SERVICE_ERRORS - (RAN_MAYBE if name == "Train" else set())
    covering = [
        retry
        for retry in retries
        if set(retry["ErrorEquals"]) >= expected or retry["ErrorEquals"] == ["States.ALL"]
    ]
    assert covering, f"{name} does not retry {sorted(expected)}"
    (retry,) = covering[:1]
    assert retry["MaxAttempts"] >= 2
    assert retry["BackoffRate"] > 1
    assert retry["IntervalSeconds"] >= 1


@pytest.mark.parametrize("name", AFTER_RECORD_RUN)
def test_given_a_task_after_record_run_when_it_fails_then_finalize_run_ends_the_run(name):
    # (FinalizeRun terminates the attempt's instance and records an end reason: a failure that
    # skips it leaks the instance and leaves the run without a reason)
    states = _states()

    target = _catch_all_target(states[name])

    assert target is not None, f"{name} has no States.ALL catch"
    if target == "PlanNextAttempt":
        assert name == "Train"
        target = _catch_all_target(states["PlanNextAttempt"])
    assert target == "FinalizeRun"


def test_given_train_when_the_agent_goes_silent_then_its_heartbeat_setting_ends_the_task():
    train = _states()["Train"]

    assert train["HeartbeatSecondsPath"] == "$.config.heartbeat_seconds"
    assert "HeartbeatSeconds" not in train
    # and the setting is the one deployed (Init puts the substituted value there)
    init = _states()["Init"]["Parameters"]["config"]
    assert init["heartbeat_seconds.$"] == "States.StringToJson('${HeartbeatSeconds}')"


def test_train_does_not_retry_an_invocation_that_may_have_started_the_agent():
    retried = {
        error for retry in _states()["Train"].get("Retry", []) for error in retry["ErrorEquals"]
    }

    assert not retried & RAN_MAYBE

"""PlanNextAttempt handler: after an attempt ended early, resume as attempt n+1 once, within the
interruption, retry and runtime budgets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from lambdas.constants import attempt_result_key
from lambdas.handlers import launch_instance, plan_next_attempt
from lambdas.logic.validation import TRAIN_TIMEOUT_MARGIN_SECONDS

HANDOFF_WAIT_SECONDS = 150  # the contract: two minutes' notice and a little slack


def _interrupted(reason: str = "spot-interrupted") -> dict:
    cause = {
        "reason": reason,
        "notice_time": "2026-11-23T11:59:00+00:00",
        "termination_time": "2026-11-23T12:01:00+00:00",
    }
    return {"Error": "Runctl.Interrupted", "Cause": json.dumps(cause)}


def _lambda_error(name: str, message: str) -> dict:
    cause = {"errorType": name, "errorMessage": message, "stackTrace": []}
    return {"Error": name, "Cause": json.dumps(cause)}


LOST = {"Error": "Runctl.InstanceLost", "Cause": "instance i-1 is terminated (no notice)"}
SCRIPT_FAILED = {"Error": "Runctl.ScriptFailed", "Cause": None}


@pytest.fixture
def plan(invoke, clock, lambda_environment):
    def call(run: dict, instance: dict | None, error: dict) -> dict:
        return dict(invoke(plan_next_attempt, {"run": run, "instance": instance, "error": error}))

    return call


@pytest.fixture
def start_run(make_run_context, record, invoke):
    """Record a run with these spec fields and launch its first attempt: (run, instance)."""

    def start(**spec) -> tuple[dict, dict]:
        run = record(make_run_context(**spec))
        return run, dict(invoke(launch_instance, {"run": run}))

    return start


@pytest.fixture
def fail_then_relaunch(plan, invoke):
    """Plan after `error` (it must resume), then launch the next attempt: (its run, instance)."""

    def go(run: dict, instance: dict, error: dict) -> tuple[dict, dict]:
        planned = plan(run, instance, error)
        assert planned["resume"] is True, planned
        return planned["run"], dict(invoke(launch_instance, {"run": planned["run"]}))

    return go


@pytest.fixture
def script_exited(aws, lambda_environment):
    """Write the attempt's result.json as the agent does when the script fails."""

    def write(run: dict, exit_code: int) -> None:
        body = {"outcome": "script-failed", "exit_code": exit_code, "stderr_tail": "boom\n"}
        aws.s3.put_object(
            Bucket=lambda_environment["BUCKET_NAME"],
            Key=attempt_result_key(run["run_id"], run["attempt"]),
            Body=json.dumps(body),
        )

    return write


def _launched_ago(instance: dict, now: datetime, seconds: float) -> dict:
    return {**instance, "launched_at": (now - timedelta(seconds=seconds)).isoformat()}


# ---------------------------------------------------------------- why the attempt ended


def test_given_spot_interruption_when_planned_then_attempt_2_resumes_and_the_record_advances(
    plan, recorded_run, launched, clock, read_record
):
    planned = plan(recorded_run, launched, _interrupted())

    assert planned["resume"] is True
    assert planned["reason"] == "spot-interrupted"
    assert planned["run"]["attempt"] == 2
    assert planned["run"]["run_id"] == recorded_run["run_id"]
    item = read_record("run-1")
    assert (item["attempt"], item["status"]) == (2, "RESUMING")
    assert item["attempts"]["1"]["end_reason"] == "spot-interrupted"
    assert item["attempts"]["1"]["ended_at"] == clock().isoformat()
    assert item["task_token"] is None


def test_given_spot_interruption_when_planned_then_previous_awaits_the_handoff(
    plan, recorded_run, launched, clock
):
    previous = plan(recorded_run, launched, _interrupted())["previous"]

    assert previous == {
        "attempt": 1,
        "reason": "spot-interrupted",
        "instance_ids": [launched["instance_id"]],
        "await_handoff": True,
        "release_deadline": clock().timestamp() + HANDOFF_WAIT_SECONDS,
    }


def test_given_rebalance_interruption_when_planned_then_reason_is_rebalance(
    plan, recorded_run, launched, read_record
):
    planned = plan(recorded_run, launched, _interrupted("rebalance"))

    assert (planned["resume"], planned["reason"]) == (True, "rebalance")
    assert planned["previous"]["await_handoff"] is True
    assert read_record("run-1")["attempts"]["1"]["end_reason"] == "rebalance"


@pytest.mark.parametrize(
    "error",
    [
        LOST,
        _lambda_error("InstanceLost", "instance i-1 is terminated before the run started"),
        {"Error": "States.HeartbeatTimeout", "Cause": None},
    ],
    ids=["agent-lost", "boot-lost", "heartbeat"],
)
def test_given_lost_instance_when_planned_then_resumes_as_instance_lost_without_handoff(
    plan, recorded_run, launched, clock, read_record, error
):
    instance = _launched_ago(launched, clock(), 600)

    planned = plan(recorded_run, instance, error)

    assert (planned["resume"], planned["reason"]) == (True, "instance-lost")
    assert planned["run"]["attempt"] == 2
    assert planned["previous"]["await_handoff"] is False
    assert planned["previous"]["release_deadline"] == clock().timestamp()
    item = read_record("run-1")
    assert (item["attempt"], item["status"]) == (2, "RESUMING")
    assert item["attempts"]["1"]["end_reason"] == "instance-lost"


def test_given_timeout_after_the_train_timeout_when_planned_then_no_resume(
    plan, recorded_run, launched, clock, read_record
):
    clock.advance(recorded_run["train_timeout_seconds"] + 1)
    instance = _launched_ago(launched, clock(), recorded_run["train_timeout_seconds"] + 1)

    planned = plan(recorded_run, instance, {"Error": "States.Timeout", "Cause": None})

    assert planned["resume"] is False
    assert planned["run"] is None
    item = read_record("run-1")
    assert (item["attempt"], item["status"]) == (1, "LAUNCHING")
    assert "end_reason" not in item["attempts"]["1"]


# ---------------------------------------------------------------- interruption budget


def test_given_two_preemptions_with_max_two_when_a_third_comes_then_budget_exhausted(
    plan, start_run, fail_then_relaunch, read_record
):
    run, instance = start_run(interruptions={"max_interruptions": 2})
    run, instance = fail_then_relaunch(run, instance, _interrupted())
    run, instance = fail_then_relaunch(run, instance, _interrupted("rebalance"))

    planned = plan(run, instance, _interrupted())

    assert planned["resume"] is False
    assert planned["reason"] == "spot-interrupted"
    assert planned["detail"] == "interruption budget exhausted (2 of 2)"
    item = read_record("run-1")
    assert (item["attempt"], item["status"]) == (3, "LAUNCHING")
    assert "end_reason" not in item["attempts"]["3"]


def test_given_a_lost_instance_with_max_one_when_preempted_then_budget_exhausted(
    plan, start_run, fail_then_relaunch
):
    run, instance = start_run(interruptions={"max_interruptions": 1})
    run, instance = fail_then_relaunch(run, instance, LOST)

    planned = plan(run, instance, _interrupted())

    assert planned["resume"] is False
    assert planned["detail"] == "interruption budget exhausted (1 of 1)"


def test_given_one_preemption_with_max_one_when_instance_lost_then_budget_exhausted(
    plan, start_run, fail_then_relaunch
):
    run, instance = start_run(interruptions={"max_interruptions": 1})
    run, instance = fail_then_relaunch(run, instance, _interrupted())

    planned = plan(run, instance, LOST)

    assert (planned["resume"], planned["reason"]) == (False, "instance-lost")
    assert planned["detail"] == "interruption budget exhausted (1 of 1)"


def test_given_no_interruption_budget_when_preempted_then_no_resume(plan, start_run, read_record):
    run, instance = start_run(interruptions={"max_interruptions": 0})

    planned = plan(run, instance, _interrupted())

    assert planned["resume"] is False
    assert planned["detail"] == "interruption budget exhausted (0 of 0)"
    assert read_record("run-1")["attempt"] == 1


# ---------------------------------------------------------------- agent that did not start

AGENT_START_FAILED = _lambda_error(
    "AgentStartFailed", "the agent did not start on i-1: python3: not found (command c: Failed)"
)


def test_given_agent_start_failed_when_planned_then_attempt_2_resumes_at_once_elsewhere(
    plan, start_run, clock, read_record
):
    run, instance = start_run(interruptions={"max_interruptions": 0})

    planned = plan(run, instance, AGENT_START_FAILED)

    # Not a preemption: it resumes even with no interruption budget, with nothing to wait for
    assert (planned["resume"], planned["reason"]) == (True, "agent-failed")
    assert planned["run"]["attempt"] == 2
    assert planned["previous"]["await_handoff"] is False
    assert planned["previous"]["release_deadline"] == clock().timestamp()
    placement = f"{instance['instance_type']}@{instance['availability_zone']}"
    assert planned["run"]["avoid_placements"] == [placement]
    item = read_record("run-1")
    assert (item["attempt"], item["status"]) == (2, "RESUMING")
    assert item["attempts"]["1"]["end_reason"] == "agent-failed"


def test_given_two_failed_agent_starts_when_a_third_fails_then_no_resume_and_says_so(
    plan, start_run, fail_then_relaunch, read_record
):
    run, instance = start_run()
    run, instance = fail_then_relaunch(run, instance, AGENT_START_FAILED)
    run, instance = fail_then_relaunch(run, instance, AGENT_START_FAILED)

    planned = plan(run, instance, AGENT_START_FAILED)

    assert (planned["resume"], planned["reason"]) == (False, "agent-failed")
    assert planned["detail"] == "the agent did not start on 3 instances"
    assert read_record("run-1")["attempt"] == 3


def test_given_failed_agent_starts_when_preempted_then_the_interruption_budget_is_whole(
    plan, start_run, fail_then_relaunch
):
    run, instance = start_run(interruptions={"max_interruptions": 1})
    run, instance = fail_then_relaunch(run, instance, AGENT_START_FAILED)

    planned = plan(run, instance, _interrupted())

    assert (planned["resume"], planned["reason"]) == (True, "spot-interrupted")


# ---------------------------------------------------------------- script failures


def test_given_retryable_exit_code_and_retries_left_when_planned_then_resumes(
    plan, start_run, script_exited, read_record
):
    run, instance = start_run(retries={"max_retries": 1, "on_exit_codes": [75]})
    script_exited(run, 75)

    planned = plan(run, instance, SCRIPT_FAILED)

    assert (planned["resume"], planned["reason"]) == (True, "script-failed")
    assert planned["run"]["attempt"] == 2
    # Not the placement's fault: nothing to avoid, nothing to wait for.
    assert planned["run"]["avoid_placements"] == []
    assert planned["previous"]["await_handoff"] is False
    assert read_record("run-1")["attempts"]["1"]["end_reason"] == "script-failed"


def test_given_exit_code_not_listed_when_planned_then_no_resume(
    plan, start_run, script_exited, read_record
):
    run, instance = start_run(retries={"max_retries": 3, "on_exit_codes": [75]})
    script_exited(run, 1)

    planned = plan(run, instance, SCRIPT_FAILED)

    assert (planned["resume"], planned["reason"]) == (False, "script-failed")
    assert planned["detail"] == "exit code 1 is not retried"
    assert read_record("run-1")["attempt"] == 1


def test_given_retries_exhausted_when_the_script_fails_again_then_no_resume(
    plan, start_run, fail_then_relaunch, script_exited
):
    run, instance = start_run(retries={"max_retries": 1, "on_exit_codes": [75]})
    script_exited(run, 75)
    run, instance = fail_then_relaunch(run, instance, SCRIPT_FAILED)
    script_exited(run, 75)

    planned = plan(run, instance, SCRIPT_FAILED)

    assert planned["resume"] is False
    assert planned["detail"] == "retry budget exhausted (1 of 1)"


def test_given_no_interruption_budget_when_script_fails_retryably_then_it_still_resumes(
    plan, start_run, script_exited
):
    run, instance = start_run(
        interruptions={"max_interruptions": 0}, retries={"max_retries": 1, "on_exit_codes": [75]}
    )
    script_exited(run, 75)

    assert plan(run, instance, SCRIPT_FAILED)["resume"] is True


def test_given_retried_script_failures_when_preempted_then_the_interruption_budget_is_whole(
    plan, start_run, fail_then_relaunch, script_exited
):
    run, instance = start_run(
        interruptions={"max_interruptions": 1}, retries={"max_retries": 1, "on_exit_codes": [75]}
    )
    script_exited(run, 75)
    run, instance = fail_then_relaunch(run, instance, SCRIPT_FAILED)

    assert plan(run, instance, _interrupted())["resume"] is True


def test_given_a_preemption_when_the_script_fails_retryably_then_the_retry_budget_is_whole(
    plan, start_run, fail_then_relaunch, script_exited
):
    run, instance = start_run(retries={"max_retries": 1, "on_exit_codes": [75]})
    run, instance = fail_then_relaunch(run, instance, _interrupted())
    script_exited(run, 75)

    assert plan(run, instance, SCRIPT_FAILED)["resume"] is True


# ---------------------------------------------------------------- how the next attempt runs


@pytest.mark.parametrize(("on_demand_after", "market"), [(1, "on-demand"), (2, "spot")])
def test_given_on_demand_after_when_preempted_once_then_next_market_follows_the_count(
    plan, start_run, on_demand_after, market
):
    run, instance = start_run(interruptions={"on_demand_after": on_demand_after})

    planned = plan(run, instance, _interrupted())

    assert planned["run"]["spec"]["market"] == market


def test_given_preempted_instance_when_planned_then_its_placement_is_avoided(
    plan, recorded_run, launched
):
    planned = plan(recorded_run, launched, _interrupted())

    placement = f"{launched['instance_type']}@{launched['availability_zone']}"
    assert planned["run"]["avoid_placements"] == [placement]


def test_given_time_used_when_planned_then_next_train_timeout_is_the_runtime_left(
    plan, start_run, clock
):
    run, instance = start_run(limits={"max_runtime_seconds": 3600})
    clock.advance(1000)

    planned = plan(run, instance, _interrupted())

    assert planned["run"]["train_timeout_seconds"] == 2600 + TRAIN_TIMEOUT_MARGIN_SECONDS


def test_given_no_runtime_left_when_planned_then_no_resume_limit_exceeded(
    plan, start_run, clock, read_record
):
    run, instance = start_run(limits={"max_runtime_seconds": 3600})
    clock.advance(3600)

    planned = plan(run, instance, _interrupted())

    assert (planned["resume"], planned["reason"]) == (False, "limit-exceeded")
    assert planned["detail"] == "no runtime left"
    assert read_record("run-1")["attempt"] == 1


# ---------------------------------------------------------------- exactly once


def test_given_plan_retried_for_the_same_failure_when_planned_again_then_same_plan_one_advance(
    plan, recorded_run, launched, read_record
):
    first = plan(recorded_run, launched, _interrupted())
    recorded = read_record("run-1")

    second = plan(recorded_run, launched, _interrupted())

    assert second == first
    assert second["run"]["attempt"] == 2
    assert read_record("run-1") == recorded
    assert recorded["attempt"] == 2


def test_given_cancelled_run_when_planned_then_no_resume_and_it_stays_cancelled(
    plan, recorded_run, launched, set_record_fields, read_record
):
    set_record_fields("run-1", status="CANCELLED")

    planned = plan(recorded_run, launched, _interrupted())

    assert (planned["resume"], planned["reason"]) == (False, "spot-interrupted")
    assert "not live" in planned["detail"]
    item = read_record("run-1")
    assert (item["attempt"], item["status"]) == (1, "CANCELLED")
    assert "end_reason" not in item["attempts"]["1"]

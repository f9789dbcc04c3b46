"""FinalizeRun after PlanNextAttempt said no: the run ends for the plan's reason, and its cause
says why it did not go on."""

from __future__ import annotations

import json

import pytest

from lambdas.handlers import launch_instance, plan_next_attempt
from tests.integration.lambdas.conftest import instance_state

INTERRUPTED = {"Error": "Runctl.Interrupted", "Cause": json.dumps({"reason": "spot-interrupted"})}
REBALANCE = {"Error": "Runctl.Interrupted", "Cause": json.dumps({"reason": "rebalance"})}


@pytest.fixture
def plan(invoke, clock, lambda_environment):
    def call(run: dict, instance: dict, error: dict) -> dict:
        return dict(invoke(plan_next_attempt, {"run": run, "instance": instance, "error": error}))

    return call


def test_given_interruption_budget_exhausted_when_finalized_then_failed_with_the_budget_detail(
    plan, finalize, make_run_context, record, invoke, read_record, aws
):
    run = record(make_run_context(interruptions={"max_interruptions": 1}))
    first = dict(invoke(launch_instance, {"run": run}))
    resumed = plan(run, first, INTERRUPTED)
    second = dict(invoke(launch_instance, {"run": resumed["run"]}))
    refused = plan(resumed["run"], second, INTERRUPTED)
    assert refused["resume"] is False

    output = finalize(
        {"run": resumed["run"], "instance": second, "error": INTERRUPTED, "next": refused}
    )

    assert (output["status"], output["end_reason"]) == ("FAILED", "spot-interrupted")
    assert output["error"] == "Runctl.SpotInterrupted"
    assert output["cause"].endswith("; interruption budget exhausted (1 of 1)")
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("FAILED", "spot-interrupted")
    assert "interruption budget exhausted (1 of 1)" in item["error"]
    assert item["attempts"]["2"]["end_reason"] == "spot-interrupted"
    # Every attempt's instance, the interrupted first one included.
    assert instance_state(aws, first["instance_id"]) == "terminated"
    assert instance_state(aws, second["instance_id"]) == "terminated"


def test_given_rebalance_budget_exhausted_when_finalized_then_end_reason_is_rebalance(
    plan, finalize, make_run_context, record, invoke, read_record
):
    run = record(make_run_context(interruptions={"max_interruptions": 0}))
    instance = dict(invoke(launch_instance, {"run": run}))
    error = {"Error": "Runctl.Interrupted", "Cause": json.dumps({"reason": "rebalance"})}
    refused = plan(run, instance, error)

    output = finalize({"run": run, "instance": instance, "error": error, "next": refused})

    assert (output["end_reason"], output["error"]) == ("rebalance", "Runctl.Rebalance")
    assert output["cause"] == (
        "the instance was taken back (rebalance); interruption budget exhausted (0 of 0)"
    )
    assert read_record("run-1")["end_reason"] == "rebalance"


def test_given_no_runtime_left_when_finalized_then_limit_exceeded_with_the_detail(
    plan, finalize, make_run_context, record, invoke, read_record, clock
):
    run = record(make_run_context(limits={"max_runtime_seconds": 3600}))
    instance = dict(invoke(launch_instance, {"run": run}))
    clock.advance(3600)
    refused = plan(run, instance, REBALANCE)

    output = finalize({"run": run, "instance": instance, "error": REBALANCE, "next": refused})

    assert (output["end_reason"], output["error"]) == ("limit-exceeded", "Runctl.LimitExceeded")
    # The kind of interruption is the agent's, not the plan's reason.
    assert output["cause"] == "the instance was taken back (rebalance); no runtime left"
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("FAILED", "limit-exceeded")
    assert item["error"] == output["cause"]


def test_given_plan_failed_after_a_rebalance_when_finalized_then_end_reason_is_rebalance(
    finalize, recorded_run, launched, read_record
):
    # PlanNextAttempt's Catch: $.plan_error is set and there is no $.next.
    plan_error = {"Error": "Lambda.Unknown", "Cause": "the Lambda timed out"}

    output = finalize(
        {"run": recorded_run, "instance": launched, "error": REBALANCE, "plan_error": plan_error}
    )

    assert (output["end_reason"], output["error"]) == ("rebalance", "Runctl.Rebalance")
    assert output["cause"] == "the instance was taken back (rebalance)"
    assert read_record("run-1")["end_reason"] == "rebalance"


def test_given_exit_code_not_retried_when_finalized_then_script_failed_with_the_detail(
    plan, finalize, recorded_run, launched, read_record
):
    error = {"Error": "Runctl.ScriptFailed", "Cause": None}
    refused = plan(recorded_run, launched, error)  # no result.json: exit code None

    output = finalize({"run": recorded_run, "instance": launched, "error": error, "next": refused})

    assert output["end_reason"] == "script-failed"
    assert output["cause"].endswith("; exit code None is not retried")
    assert read_record("run-1")["status"] == "FAILED"

"""attempt_end_reason: which caught errors are a reason to try the run again, and which reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lambdas.logic.next_attempt import attempt_end_reason
from lambdas.models.run_record import EndReason
from lambdas.models.steps import FinalizeInput, InstanceInfo, StepError

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def run(make_run):
    # Train timeout: 3600 + 600 s.
    return make_run(limits={"max_runtime_seconds": 3600})


def _request(run, error: str, cause: str | None = None, ran_for: float | None = 600.0):
    instance = None
    if ran_for is not None:
        instance = InstanceInfo(
            instance_id="i-0123456789abcdef0",
            instance_type="g5.xlarge",
            availability_zone="us-east-1a",
            market="spot",
            launched_at=(NOW - timedelta(seconds=ran_for)).isoformat(),
            ready_deadline=0.0,
        )
    return FinalizeInput(run=run, instance=instance, error=StepError(Error=error, Cause=cause))


def _reason(request: FinalizeInput) -> EndReason | None:
    return attempt_end_reason(request)


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (json.dumps({"reason": "spot-interrupted", "termination_time": None}), "spot-interrupted"),
        (json.dumps({"reason": "rebalance", "notice_time": "2026-11-23T11:59:00Z"}), "rebalance"),
        (None, "spot-interrupted"),
        ("not json at all", "spot-interrupted"),
        ("[1, 2]", "spot-interrupted"),
        (json.dumps({"reason": "something-else"}), "spot-interrupted"),
    ],
)
def test_given_interrupted_error_when_reason_read_then_cause_says_rebalance_or_spot(
    run, cause, expected
):
    assert _reason(_request(run, "Runctl.Interrupted", cause)) == EndReason(expected)


@pytest.mark.parametrize(
    "error", ["Runctl.InstanceLost", "InstanceLost", "States.HeartbeatTimeout"]
)
def test_given_lost_instance_error_when_reason_read_then_instance_lost(run, error):
    assert _reason(_request(run, error)) is EndReason.INSTANCE_LOST


@pytest.mark.parametrize("ran_for", [1.0, 3600.0 + 600, None])
def test_given_the_max_runtime_timeout_when_reason_read_then_not_a_reason_to_resume(run, ran_for):
    # States.Timeout is Train's TimeoutSeconds (the max runtime), however long the attempt ran;
    # a lost heartbeat is States.HeartbeatTimeout (so is it locally: runctl/local/callbacks.py).
    assert _reason(_request(run, "States.Timeout", ran_for=ran_for)) is None


def test_given_script_failure_when_reason_read_then_script_failed(run):
    assert _reason(_request(run, "Runctl.ScriptFailed")) is EndReason.SCRIPT_FAILED


@pytest.mark.parametrize(
    "error",
    [
        "Runctl.AgentFailed",
        "CapacityUnavailable",
        "InstanceStartTimeout",
        "BootstrapFailed",
        "RunNotLive",
        "States.TaskFailed",
    ],
)
def test_given_other_error_when_reason_read_then_not_a_reason_to_resume(run, error):
    assert _reason(_request(run, error)) is None

"""The reaper's pure decisions: which runctl instance to terminate, and when a run is over its
limit. Every rule, and the ones that keep an instance, must be able to fail on its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.constants import TAG_ATTEMPT, TAG_MANAGED, TAG_RUN_ID
from lambdas.integrations.ec2_fleet import ManagedInstance
from lambdas.logic.reaping import (
    EXECUTION_RUNNING,
    Action,
    decide,
    max_runtime_seconds,
    runtime_deadline,
)
from lambdas.models.run_record import RunRecord, RunStatus

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
GRACE = 600
OLD = NOW - timedelta(seconds=GRACE + 1)


def instance(
    run_id: str | None = "run-1",
    attempt: str | None = "1",
    launched: datetime = OLD,
) -> ManagedInstance:
    tags = {TAG_MANAGED: "true"}
    if run_id is not None:
        tags[TAG_RUN_ID] = run_id
    if attempt is not None:
        tags[TAG_ATTEMPT] = attempt
    return ManagedInstance("i-0123456789abcdef0", "running", launched, tags)


def record(status: RunStatus = RunStatus.RUNNING, attempt: int = 1, **fields: Any) -> RunRecord:
    values: dict[str, Any] = {
        "run_id": "run-1",
        "status": status,
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:TrainRun:run-1",
        "spec": {"limits": {"max_runtime_seconds": 3600}},
        "created_at": (NOW - timedelta(hours=1)).isoformat(),
        "updated_at": NOW.isoformat(),
        "attempt": attempt,
        **fields,
    }
    return RunRecord.model_validate(values)


# ---------------------------------------------------------------- terminate


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_given_final_run_when_decided_then_terminated(status: RunStatus) -> None:
    decision = decide(instance(), record(status), None, NOW, GRACE)

    assert decision.action is Action.TERMINATE
    assert status.value in decision.reason
    assert decision.cancel_run is False


def test_given_no_run_record_when_decided_then_terminated() -> None:
    decision = decide(instance(), None, None, NOW, GRACE)

    assert decision.action is Action.TERMINATE
    assert "no record of run run-1" in decision.reason


def test_given_no_run_id_tag_when_decided_then_terminated() -> None:
    decision = decide(instance(run_id=None), None, None, NOW, GRACE)

    assert decision.action is Action.TERMINATE
    assert "no run id" in decision.reason


def test_given_attempt_two_before_current_when_decided_then_terminated() -> None:
    decision = decide(instance(attempt="1"), record(attempt=3), EXECUTION_RUNNING, NOW, GRACE)

    assert decision.action is Action.TERMINATE
    assert "attempt 1" in decision.reason and "current attempt 3" in decision.reason


def test_given_live_run_and_no_valid_attempt_tag_when_decided_then_terminated() -> None:
    decision = decide(instance(attempt="x"), record(), EXECUTION_RUNNING, NOW, GRACE)

    assert decision.action is Action.TERMINATE


@pytest.mark.parametrize("status", ["ABORTED", "FAILED", "SUCCEEDED", "TIMED_OUT", "GONE"])
def test_given_execution_not_running_when_decided_then_terminated_and_run_cancelled(
    status: str,
) -> None:
    decision = decide(instance(), record(), status, NOW, GRACE)

    assert decision.action is Action.TERMINATE
    assert decision.cancel_run is True
    assert decision.reason == f"execution {status} without finishing the run"


# ---------------------------------------------------------------- keep


def test_given_instance_younger_than_the_grace_when_decided_then_kept_even_without_a_record() -> (
    None
):
    young = instance(launched=NOW - timedelta(seconds=GRACE - 1))

    decision = decide(young, None, None, NOW, GRACE)

    assert decision.action is Action.KEEP
    assert "grace" in decision.reason


def test_given_instance_exactly_grace_old_when_decided_then_judged() -> None:
    decision = decide(instance(launched=NOW - timedelta(seconds=GRACE)), None, None, NOW, GRACE)

    assert decision.action is Action.TERMINATE


@pytest.mark.parametrize("attempt", ["3", "2"], ids=["current", "previous"])
@pytest.mark.parametrize("status", [RunStatus.RUNNING, RunStatus.CHECKPOINTING, RunStatus.RESUMING])
def test_given_current_or_previous_attempt_of_live_running_run_when_decided_then_kept(
    attempt: str, status: RunStatus
) -> None:
    decision = decide(instance(attempt=attempt), record(status, attempt=3), "RUNNING", NOW, GRACE)

    assert decision.action is Action.KEEP
    assert decision.cancel_run is False


def test_given_attempt_newer_than_the_record_when_decided_then_kept() -> None:
    decision = decide(instance(attempt="4"), record(attempt=3), EXECUTION_RUNNING, NOW, GRACE)

    assert decision.action is Action.KEEP


def test_given_live_run_and_execution_not_looked_up_when_decided_then_kept() -> None:
    decision = decide(instance(), record(), None, NOW, GRACE)

    assert decision.action is Action.KEEP


# ---------------------------------------------------------------- limits


def test_given_spec_limit_when_deadline_computed_then_created_plus_limit_plus_margin() -> None:
    run = record(created_at="2026-11-23T10:00:00+00:00")

    assert runtime_deadline(run, margin_seconds=600) == datetime(2026, 11, 23, 11, 10, tzinfo=UTC)


def test_given_spec_without_limits_when_limit_read_then_the_runspec_default() -> None:
    assert max_runtime_seconds(record(spec={})) == 24 * 3600

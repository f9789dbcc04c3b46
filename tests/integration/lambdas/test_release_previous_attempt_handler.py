"""ReleasePreviousAttempt handler: wait (bounded) for an interrupted attempt's handoff.json, then
terminate that attempt's instance; never the current attempt's."""

from __future__ import annotations

import time

import pytest

from lambdas.constants import handoff_key
from lambdas.handlers import launch_instance, plan_next_attempt, release_previous_attempt


@pytest.fixture
def resumed(recorded_run, launched, interrupt_and_relaunch):
    """Attempt 1 was interrupted, attempt 2 launched: (plan, attempt 1's, attempt 2's instance)."""
    planned, second = interrupt_and_relaunch(recorded_run, launched)
    return planned, launched, second


@pytest.fixture
def release(invoke, lambda_environment):
    """One ReleasePreviousAttempt call for `plan`'s next attempt, its deadline moved if asked."""

    def call(plan: dict, deadline_in: float | None = None, **previous_fields) -> dict:
        previous = {**plan["previous"], **previous_fields}
        if deadline_in is not None:
            previous["release_deadline"] = time.time() + deadline_in
        return dict(invoke(release_previous_attempt, {"run": plan["run"], "previous": previous}))

    return call


@pytest.fixture
def hand_off(aws, lambda_environment):
    """Write attempt 1's handoff.json as its agent does once the last checkpoint is in S3."""

    def write() -> None:
        aws.s3.put_object(
            Bucket=lambda_environment["BUCKET_NAME"],
            Key=handoff_key("run-1", 1),
            Body=b'{"attempt": 1, "reason": "spot-interrupted", "checkpoint": null}',
        )

    return write


def _state(aws, instance: dict) -> str:
    reservations = aws.ec2.describe_instances(InstanceIds=[instance["instance_id"]])
    return str(reservations["Reservations"][0]["Instances"][0]["State"]["Name"])


def test_given_first_attempt_when_released_then_ready_and_its_instance_untouched(
    invoke, recorded_run, launched, lambda_environment, aws
):
    probe = invoke(release_previous_attempt, {"run": recorded_run, "previous": None})

    assert probe == {"ready": True, "detail": "first attempt", "wait_seconds": 1}
    assert _state(aws, launched) == "running"


def test_given_previous_checkpointing_before_the_deadline_when_released_then_not_ready(
    release, resumed, aws
):
    planned, previous, current = resumed

    probe = release(planned, deadline_in=60)

    assert probe["ready"] is False
    assert _state(aws, previous) == "running"
    assert _state(aws, current) == "running"


def test_given_handoff_written_when_released_then_ready_and_previous_terminated(
    release, resumed, hand_off, aws
):
    planned, previous, current = resumed
    hand_off()

    probe = release(planned, deadline_in=60)

    assert probe["ready"] is True
    assert "handed off" in probe["detail"]
    assert _state(aws, previous) == "terminated"
    assert _state(aws, current) == "running"


def test_given_no_handoff_past_the_deadline_when_released_then_ready_and_previous_terminated(
    release, resumed, aws
):
    planned, previous, current = resumed

    probe = release(planned, deadline_in=-1)

    assert probe["ready"] is True
    assert "deadline" in probe["detail"]
    assert _state(aws, previous) == "terminated"
    assert _state(aws, current) == "running"


def test_given_previous_not_awaiting_handoff_when_released_then_terminated_at_once(
    release, resumed, aws
):
    planned, previous, current = resumed

    probe = release(planned, deadline_in=600, await_handoff=False)

    assert probe["ready"] is True
    assert _state(aws, previous) == "terminated"
    assert _state(aws, current) == "running"


def test_given_lost_instance_plan_when_released_then_previous_terminated_at_once(
    invoke, recorded_run, launched, clock, lambda_environment, release, aws
):
    # The plan PlanNextAttempt makes for a lost instance, its deadline as it comes.
    planned = invoke(
        plan_next_attempt,
        {"run": recorded_run, "instance": launched, "error": {"Error": "Runctl.InstanceLost"}},
    )
    current = invoke(launch_instance, {"run": planned["run"]})

    probe = release(planned)

    assert probe["ready"] is True
    assert _state(aws, launched) == "terminated"
    assert _state(aws, current) == "running"


def test_given_previous_instance_already_gone_when_released_then_ready_without_waiting(
    release, resumed, aws
):
    planned, previous, current = resumed
    aws.ec2.terminate_instances(InstanceIds=[previous["instance_id"]])

    probe = release(planned, deadline_in=60)

    assert probe["ready"] is True
    assert _state(aws, current) == "running"


def test_given_release_repeated_after_termination_when_released_then_still_ready(
    release, resumed, hand_off, aws
):
    planned, _, current = resumed
    hand_off()
    release(planned, deadline_in=60)

    probe = release(planned, deadline_in=60)

    assert probe["ready"] is True
    assert _state(aws, current) == "running"

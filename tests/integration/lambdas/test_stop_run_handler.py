"""StopRun handler (`runctl stop`): marks the run, tells a working agent over SSM, and otherwise
leaves the run to end at its next step; StartAgent and PlanNextAttempt honour the mark."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import pytest

from lambdas.errors import RunNotFound, RunStopped
from lambdas.handlers import check_bootstrap, check_instance, launch_instance, start_agent, stop_run

TOKEN = "AQCEAAAAKgAAAA-task-token-" + "t" * 40


@pytest.fixture
def stop(invoke, lambda_environment, fake_ssm):
    def call(run_id: str = "run-1") -> dict[str, Any]:
        return dict(invoke(stop_run, {"run_id": run_id}))

    return call


def _notice_written(sent: dict[str, Any], home) -> dict[str, Any]:
    """Run the command's script as the instance would, in a scratch RUNCTL_HOME."""
    script = "\n".join(sent["Parameters"]["commands"])
    env = {**os.environ, "RUNCTL_HOME": str(home)}
    subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True)
    return dict(json.loads((home / "notice.json").read_text()))


def test_given_training_run_when_stopped_then_agent_gets_a_stop_notice(
    stop, recorded_run, launched, set_record_fields, fake_ssm, read_record, tmp_path
):
    set_record_fields("run-1", status="RUNNING", task_token=TOKEN)

    answer = stop()

    assert answer["action"] == "agent-asked-to-stop"
    assert launched["instance_id"] in answer["message"]
    (sent,) = fake_ssm.sent
    assert sent["InstanceIds"] == [launched["instance_id"]]
    notice = _notice_written(sent, tmp_path)
    assert notice["kind"] == "stop-requested"
    assert notice["notice_time"] == read_record("run-1")["stop_requested_at"]


def test_given_agent_being_started_when_stopped_then_it_gets_the_notice_before_it_runs(
    stop, recorded_run, launched, set_record_fields, fake_ssm, tmp_path
):
    # Given StartAgent stored the token and sent the start, but the agent has not yet written
    # STAGING: it will run, so it must find the notice when it first looks
    set_record_fields("run-1", status="LAUNCHING", task_token=TOKEN)

    answer = stop()

    assert answer["action"] == "agent-asked-to-stop"
    (sent,) = fake_ssm.sent
    assert sent["InstanceIds"] == [launched["instance_id"]]
    assert _notice_written(sent, tmp_path)["kind"] == "stop-requested"


def test_given_booting_run_when_stopped_then_marked_and_no_command_sent(
    stop, recorded_run, launched, fake_ssm, read_record
):
    answer = stop()

    assert answer["action"] == "stopping-before-training"
    assert "LAUNCHING" in answer["message"]
    assert fake_ssm.sent == []
    assert read_record("run-1")["stop_requested_at"]


def test_given_stop_asked_twice_then_the_first_time_is_kept(
    stop, recorded_run, launched, read_record, clock
):
    stop()
    first = read_record("run-1")["stop_requested_at"]
    clock.advance(30)

    stop()

    assert read_record("run-1")["stop_requested_at"] == first


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "CANCELLED"])
def test_given_finished_run_when_stopped_then_nothing_changes(
    stop, recorded_run, set_record_fields, fake_ssm, read_record, status
):
    set_record_fields("run-1", status=status)

    answer = stop()

    assert answer == {
        "run_id": "run-1",
        "action": "already-finished",
        "message": f"the run had already finished: {status}",
    }
    assert "stop_requested_at" not in read_record("run-1")
    assert fake_ssm.sent == []


def test_given_unknown_run_when_stopped_then_run_not_found(stop, runs_table):
    with pytest.raises(RunNotFound, match="no run 'run-nope'"):
        stop("run-nope")


def test_given_stop_before_the_agent_starts_when_start_agent_runs_then_run_stopped(
    stop, invoke, recorded_run, launched, fake_ssm, read_record
):
    stop()

    with pytest.raises(RunStopped, match="stopped on request before training began"):
        invoke(
            start_agent,
            {
                "run": recorded_run,
                "instance": launched,
                "task_token": TOKEN,
                "heartbeat_seconds": 300,
            },
        )

    assert fake_ssm.sent == []
    assert "task_token" not in read_record("run-1")


def test_given_stop_before_the_launch_when_launch_instance_runs_then_nothing_is_launched(
    stop, invoke, recorded_run, ec2_spy
):
    stop()

    with pytest.raises(RunStopped, match="stopped on request before training began"):
        invoke(launch_instance, {"run": recorded_run})

    assert ec2_spy.run_requests == []


def test_given_stop_during_the_boot_when_the_instance_is_polled_then_the_boot_ends_there(
    stop, invoke, recorded_run, launched, fake_ssm
):
    # Given an instance that is up (the stop wins over "ready")
    fake_ssm.online.add(launched["instance_id"])
    stop()

    with pytest.raises(RunStopped, match="stopped on request before training began"):
        invoke(check_instance, {"run": recorded_run, "instance": launched})


def test_given_stop_during_the_agent_install_when_it_is_polled_then_the_install_ends_there(
    stop, invoke, recorded_run, launched, fake_ssm
):
    fake_ssm.invocation = {"Status": "Success"}
    stop()

    with pytest.raises(RunStopped, match="stopped on request before training began"):
        invoke(
            check_bootstrap,
            {
                "run": recorded_run,
                "instance": launched,
                "bootstrap": {"command_id": "cmd-1", "deadline": launched["ready_deadline"]},
            },
        )


def _previous_handing_off(deadline_in: float) -> dict[str, Any]:
    """`$.previous` for an attempt replacing an interrupted one that may still be uploading."""
    return {
        "attempt": 1,
        "reason": "spot-interrupted",
        "instance_ids": ["i-0previous00000000"],
        "await_handoff": True,
        "release_deadline": time.time() + deadline_in,
    }


def test_given_stop_while_the_replaced_attempt_hands_off_then_its_boot_goes_on_until_the_deadline(
    stop, invoke, recorded_run, launched, fake_ssm, set_record_fields
):
    # Given attempt 2 booting while attempt 1's agent may still upload its newest checkpoint
    set_record_fields("run-1", attempt=2)
    resumed = {**recorded_run, "attempt": 2}
    stop()

    # When the boot is polled before the handoff deadline, it goes on (ending the run now would
    # terminate attempt 1's instance mid-upload)
    probe = invoke(
        check_instance,
        {"run": resumed, "instance": launched, "previous": _previous_handing_off(120)},
    )
    assert probe["ready"] is False

    # And once the deadline has passed, the stop ends it, naming the attempt
    with pytest.raises(RunStopped, match="before attempt 2 began training"):
        invoke(
            check_instance,
            {"run": resumed, "instance": launched, "previous": _previous_handing_off(-1)},
        )


def test_given_stop_while_the_replaced_attempt_hands_off_when_launching_then_it_still_launches(
    stop, invoke, recorded_run, set_record_fields, ec2_spy
):
    set_record_fields("run-1", attempt=2)
    stop()

    instance = invoke(
        launch_instance,
        {"run": {**recorded_run, "attempt": 2}, "previous": _previous_handing_off(120)},
    )

    assert instance["instance_id"]
    assert len(ec2_spy.run_requests) == 1

"""What `runctl status` says of a run the state machine has not recorded (or never will)."""

from __future__ import annotations

from runctl.client import RunState


def test_a_submitted_run_not_yet_recorded_is_starting():
    assert RunState("run-1", record=None, execution_status="RUNNING").status == "STARTING"


def test_a_run_refused_by_validation_says_why():
    state = RunState(
        "run-1",
        record=None,
        execution_status="FAILED",
        error="RunSpecInvalid",
        cause="entry_point: must be a relative path",
    )
    assert state.status == "FAILED"
    assert state.execution_failure == "RunSpecInvalid: entry_point: must be a relative path"


def test_an_execution_without_an_error_is_told_by_its_status():
    state = RunState("run-1", record=None, execution_status="ABORTED")
    assert state.execution_failure == "its execution is ABORTED"

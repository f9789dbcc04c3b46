"""Sweeps in local mode: the Sweep state machine runs each combination as a nested TrainRun
execution, at most max_parallel at once, then summarises; failures are tolerated up to a share,
or stop the rest gracefully; a cancelled sweep leaves no instance."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from lambdas.logic.sweeps import child_run_id
from lambdas.models.run_record import RunRecord, RunStatus
from lambdas.models.sweep_summary import SweepRunStatus, SweepVerdict
from runctl.local.session import LocalSession
from runctl.local.sweeps import LocalSweeps, SweepOutcome
from runctl.packaging import package_directory
from tests.e2e_local.conftest import EXAMPLES, assert_checkpointed_on_sigterm

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_sweeps")]

# A few quick steps per run: the sweep's mechanics are under test, not the training.
QUICK = {"steps": 20, "step_seconds": 0.01, "checkpoint_every": 10}
# Long enough to be running whenever the sweep is stopped (it is stopped, never waited for).
LONG = {"steps": 4000, "step_seconds": 0.05, "checkpoint_every": 50}
DIVERGING_LR = 5.0  # train_tiny.py's loss explodes by step 5 and it exits with code 3


@pytest.fixture(scope="module")
def sweeps(local_session: LocalSession) -> LocalSweeps:
    return LocalSweeps(local_session)


@pytest.fixture(scope="module")
def tiny_code(local_session: LocalSession, tmp_path_factory: pytest.TempPathFactory) -> dict:
    project = tmp_path_factory.mktemp("tiny")
    shutil.copy(EXAMPLES / "train_tiny.py", project / "train_tiny.py")
    package = package_directory(project)
    code_uri, _ = local_session.upload_code(package)
    return {"s3_uri": code_uri, "sha256": package.sha256}


def base_spec(code: dict, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    return {"code": code, "entry_point": "train_tiny.py", "hyperparameters": hyperparameters}


def records(session: LocalSession, sweep_id: str, count: int) -> list[RunRecord | None]:
    return [session.table.get(child_run_id(sweep_id, index)) for index in range(count)]


def execution_intervals(session: LocalSession, sweep_id: str, count: int) -> list[tuple]:
    """(start, stop) of each run's TrainRun execution, as Step Functions recorded them."""
    intervals = []
    for index in range(count):
        described = session.sfn.describe_execution(
            executionArn=session.execution_arn(child_run_id(sweep_id, index))
        )
        intervals.append((described["startDate"], described["stopDate"]))
    return intervals


def most_at_once(intervals: list[tuple]) -> int:
    # A stop sorts before a start at the same instant: the one run ended, the next began.
    events = sorted([(start, 1) for start, _ in intervals] + [(stop, -1) for _, stop in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_a_3x3_grid_runs_9_runs_2_at_a_time_and_names_the_best(local_session, sweeps, tiny_code):
    # Given a 3x3 grid over lr and batch size, at most 2 runs at once, best by lowest loss
    spec = {
        "base_spec": base_spec(tiny_code, QUICK),
        "grid": {"lr": [0.01, 0.05, 0.1], "batch_size": [8, 32, 64]},
        "max_parallel": 2,
        "objective": "loss:min",
    }

    # When the sweep runs to its end
    sweep_id = sweeps.start(spec)
    outcome = sweeps.wait(sweep_id, timeout_seconds=280)

    # Then 9 runs succeeded, each with its own combination
    assert outcome.execution_status == "SUCCEEDED", outcome.cause
    found = records(local_session, sweep_id, 9)
    assert all(record is not None and record.status is RunStatus.SUCCEEDED for record in found)
    combinations = {
        (record.spec["hyperparameters"]["lr"], record.spec["hyperparameters"]["batch_size"])
        for record in found
        if record is not None
    }
    assert combinations == {(lr, batch) for lr in (0.01, 0.05, 0.1) for batch in (8, 32, 64)}
    # never more than 2 executions at once, and 2 at once at some point
    assert most_at_once(execution_intervals(local_session, sweep_id, 9)) == 2
    # the best run is the one whose final loss the records say is lowest
    losses = {record.run_id: record.final_metrics["loss"] for record in found if record}
    assert outcome.summary is not None
    assert outcome.summary.best is not None
    assert outcome.summary.best.run_id == min(losses, key=losses.__getitem__)
    assert outcome.summary.best.objective_value == min(losses.values())
    assert outcome.summary.counts.succeeded == 9
    assert local_session.live_instances() == []


def test_one_failure_within_a_20_percent_tolerance_still_succeeds_and_is_listed(
    local_session, sweeps, tiny_code
):
    # Given 5 runs of which one diverges, and a tolerance of 20%
    lrs = [0.01, 0.05, 0.1, 0.2, DIVERGING_LR]
    spec = {
        "base_spec": base_spec(tiny_code, QUICK),
        "grid": {"lr": lrs},
        "max_parallel": 3,
        "objective": "loss:min",
        "tolerated_failure_percentage": 20,
    }

    # When the sweep runs
    outcome = sweeps.wait(sweeps.start(spec), timeout_seconds=240)

    # Then it succeeds, and its summary lists the failed run and why
    assert outcome.execution_status == "SUCCEEDED", outcome.cause
    summary = outcome.summary
    assert summary is not None and summary.verdict is SweepVerdict.SUCCEEDED
    assert (summary.counts.succeeded, summary.counts.failed) == (4, 1)
    (failed,) = [run for run in summary.runs if run.status is SweepRunStatus.FAILED]
    assert failed.swept == {"lr": DIVERGING_LR}
    assert failed.error is not None and "exit code 3" in failed.error
    assert summary.best is not None and summary.best.swept["lr"] != DIVERGING_LR
    assert local_session.live_instances() == []


def test_stop_on_failure_stops_the_running_run_skips_the_rest_and_leaves_no_instance(
    local_session, sweeps, tiny_code
):
    # Given 4 long runs, 2 at a time, of which the first diverges at once; stop on failure
    spec = {
        "base_spec": base_spec(tiny_code, LONG),
        "grid": {"lr": [DIVERGING_LR, 0.05, 0.01, 0.02]},
        "max_parallel": 2,
        "objective": "loss:min",
        "stop_on_failure": True,
    }

    # When the sweep runs
    sweep_id = sweeps.start(spec)
    outcome = sweeps.wait(sweep_id, timeout_seconds=240)

    # Then it fails with a clear error naming the failed run
    assert outcome.execution_status == "FAILED"
    assert outcome.error == "Runctl.SweepFailed"
    assert outcome.cause is not None
    assert outcome.cause.startswith("1 of 4 runs failed, more than the 0% tolerated")
    assert child_run_id(sweep_id, 0) in outcome.cause
    # the run beside it was stopped gracefully, the other two never started
    statuses = [run.status for run in outcome.summary.runs] if outcome.summary else []
    assert statuses == [
        SweepRunStatus.FAILED,
        SweepRunStatus.CANCELLED,
        SweepRunStatus.SKIPPED,
        SweepRunStatus.SKIPPED,
    ]
    assert records(local_session, sweep_id, 4)[2:] == [None, None]
    assert local_session.run_instance_ids(child_run_id(sweep_id, 2)) == set()
    # and no instance is left running
    assert local_session.live_instances() == []


def test_cancelling_a_sweep_stops_its_run_gracefully_and_leaves_no_instance(
    local_session, sweeps, tiny_code, wait_for_record
):
    # Given a sweep of 3 long runs, one at a time, whose first run is training
    spec = {"base_spec": base_spec(tiny_code, LONG), "grid": {"lr": [0.05, 0.01, 0.02]}}
    sweep_id = sweeps.start({**spec, "max_parallel": 1})
    first = child_run_id(sweep_id, 0)
    wait_for_record(
        local_session, first, lambda r: r.status is RunStatus.RUNNING and r.latest_metrics
    )

    # When the sweep is cancelled
    answer = sweeps.cancel(sweep_id)
    outcome: SweepOutcome = sweeps.wait(sweep_id, timeout_seconds=180)

    # Then the running run checkpointed and ended CANCELLED, the others never started
    assert answer.runs_asked_to_stop == [first]
    assert outcome.error == "Runctl.SweepCancelled"
    assert outcome.summary is not None
    assert [run.status for run in outcome.summary.runs] == [
        SweepRunStatus.CANCELLED,
        SweepRunStatus.SKIPPED,
        SweepRunStatus.SKIPPED,
    ]
    record = local_session.table.get(first)
    assert record is not None and record.end_reason is not None
    assert record.end_reason.value == "cancelled"
    assert_checkpointed_on_sigterm(local_session, first)
    assert local_session.live_instances() == []

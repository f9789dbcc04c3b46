"""SummarizeSweep's decisions: each run's outcome, the best run by the objective, the verdict."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from lambdas.constants import ERROR_SWEEP_CANCELLED, ERROR_SWEEP_FAILED
from lambdas.logic.sweep_results import best_run, build_summary, objective_value, run_result
from lambdas.models.run_record import RunRecord
from lambdas.models.sweep_spec import SweepPlan, SweepRun
from lambdas.models.sweep_summary import (
    CaughtError,
    RunStartFailure,
    SweepRunResult,
    SweepRunStatus,
    SweepStop,
    SweepVerdict,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RUN = SweepRun(index=3, run_id="sw-r003", swept={"lr": 0.1})


def record(status: str, **fields: Any) -> RunRecord:
    return RunRecord.model_validate(
        {
            "run_id": RUN.run_id,
            "status": status,
            "execution_arn": "arn:aws:states:us-east-1:1:execution:TrainRun:sw-r003",
            "spec": {},
            "created_at": NOW.isoformat(),
            "updated_at": NOW.isoformat(),
            **fields,
        }
    )


def never_started(run_id: str) -> None:
    return None


def result(index: int, status: SweepRunStatus, value: float | None = None) -> SweepRunResult:
    return SweepRunResult(
        index=index,
        run_id=f"sw-r{index:03d}",
        swept={"lr": index},
        status=status,
        objective_value=value,
        error="(script-failed, exit code 3): diverged" if status is SweepRunStatus.FAILED else None,
    )


def plan(total: int, tolerated: float = 0, objective: str | None = "loss:min") -> SweepPlan:
    return SweepPlan(
        sweep_id="sw",
        execution_arn="arn:aws:states:us-east-1:1:execution:Sweep:sw",
        max_parallel=2,
        objective=objective,
        tolerated_failure_percentage=tolerated,
        stop_on_failure=False,
        total_runs=total,
        base_spec={},
        runs=[],
    )


# ------------------------------------------------------------------------- a run's outcome


def test_a_finished_run_is_read_from_its_record():
    finished = record(
        "SUCCEEDED",
        end_reason="completed",
        final_metrics={"loss": 0.5, "step": 20},
        duration_seconds=12.5,
        cost={"total_usd": 0.25, "attempts": []},
    )

    line = run_result(RUN, finished, never_started, "loss")

    assert line.status is SweepRunStatus.SUCCEEDED
    assert (line.objective_value, line.cost_usd, line.duration_seconds) == (0.5, 0.25, 12.5)
    assert line.swept == {"lr": 0.1}


def test_a_failed_runs_error_says_why_with_its_exit_code():
    failed = record(
        "FAILED", end_reason="script-failed", exit_code=3, error="diverged at step 5\nloss inf"
    )

    line = run_result(RUN, failed, never_started, "loss")

    assert line.status is SweepRunStatus.FAILED
    assert line.error is not None
    assert line.error.startswith("(script-failed, exit code 3): diverged at step 5")


@pytest.mark.parametrize(
    ("execution", "status"),
    [
        (None, SweepRunStatus.SKIPPED),
        ({"status": "FAILED", "error": "RunSpecInvalid", "cause": "bad"}, SweepRunStatus.FAILED),
        ({"status": "ABORTED"}, SweepRunStatus.CANCELLED),
        ({"status": "TIMED_OUT"}, SweepRunStatus.FAILED),
        ({"status": "RUNNING"}, SweepRunStatus.RUNNING),
    ],
)
def test_without_a_record_the_execution_tells(execution, status):
    line = run_result(RUN, None, lambda run_id: execution, "loss")

    assert line.status is status


def test_a_run_whose_start_failed_is_failed_with_the_error_its_item_caught():
    failure = RunStartFailure(run_id=RUN.run_id, error="StepFunctions.AccessDeniedException")

    line = run_result(RUN, None, never_started, "loss", lambda: failure)

    assert line.status is SweepRunStatus.FAILED
    assert line.error == (
        "(StepFunctions.AccessDeniedException): its TrainRun execution could not be started"
    )


def test_a_run_without_execution_or_recorded_failure_was_skipped():
    assert run_result(RUN, None, never_started, "loss", lambda: None).status is (
        SweepRunStatus.SKIPPED
    )


def test_a_live_record_whose_execution_was_stopped_by_hand_counts_as_cancelled():
    line = run_result(RUN, record("RUNNING"), lambda run_id: {"status": "ABORTED"}, "loss")

    assert line.status is SweepRunStatus.CANCELLED


def test_a_run_that_failed_validation_shows_the_executions_error():
    execution = {"status": "FAILED", "error": "RunSpecInvalid", "cause": "code.s3_uri: gone"}

    line = run_result(RUN, None, lambda run_id: execution, "loss")

    assert line.error == "(RunSpecInvalid): code.s3_uri: gone"


def test_a_run_whose_validation_lambda_raised_shows_its_message_without_the_stack_trace():
    # Given the execution's cause as moto and AWS give it for a Lambda's unhandled exception
    cause = json.dumps(
        {
            "errorType": "RunSpecInvalid",
            "errorMessage": "code.s3_uri: gone",
            "stackTrace": ["Traceback (most recent call last):\n", '  File "validation.py"\n'],
        }
    )
    execution = {"status": "FAILED", "error": "RunSpecInvalid", "cause": cause}

    line = run_result(RUN, None, lambda run_id: execution, "loss")

    assert line.error == "(RunSpecInvalid): code.s3_uri: gone"


def test_a_run_whose_execution_timed_out_without_an_error_says_so():
    line = run_result(RUN, None, lambda run_id: {"status": "TIMED_OUT"}, "loss")

    assert line.error == "(TIMED_OUT)"


# ------------------------------------------------------------------------- objective values


def test_the_objective_prefers_the_metrics_summary_last_value():
    summarized = record(
        "SUCCEEDED",
        final_metrics={"loss": 9.0},
        metrics_summary={"loss": {"last": 0.2, "min": 0.1, "max": 3.0, "count": 4}},
    )

    assert objective_value(summarized, "loss") == 0.2


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "low", True, None])
def test_a_value_that_is_not_a_finite_number_has_no_objective_value(value):
    assert objective_value(record("SUCCEEDED", final_metrics={"loss": value}), "loss") is None


def test_no_objective_means_no_value():
    assert objective_value(record("SUCCEEDED", final_metrics={"loss": 1.0}), None) is None


# ------------------------------------------------------------------------- best run


def test_the_best_run_is_the_lowest_value_for_min_and_the_highest_for_max():
    results = [
        result(0, SweepRunStatus.SUCCEEDED, 0.3),
        result(1, SweepRunStatus.SUCCEEDED, 0.1),
        result(2, SweepRunStatus.SUCCEEDED, 0.7),
    ]

    lowest = best_run(results, "loss:min")
    highest = best_run(results, "acc:max")

    assert lowest is not None and lowest.index == 1
    assert highest is not None and highest.index == 2


def test_failed_runs_and_runs_without_the_metric_are_never_best():
    results = [
        result(0, SweepRunStatus.FAILED, 0.01),
        result(1, SweepRunStatus.SUCCEEDED, None),
        result(2, SweepRunStatus.SUCCEEDED, 0.5),
    ]

    best = best_run(results, "loss:min")

    assert best is not None and best.index == 2


def test_a_tie_goes_to_the_earlier_run():
    results = [result(4, SweepRunStatus.SUCCEEDED, 0.2), result(1, SweepRunStatus.SUCCEEDED, 0.2)]

    best = best_run(results, "loss:min")

    assert best is not None and best.index == 1


def test_no_best_without_an_objective_or_a_ranked_run():
    assert best_run([result(0, SweepRunStatus.SUCCEEDED, 0.2)], None) is None
    assert best_run([result(0, SweepRunStatus.FAILED)], "loss:min") is None


# ------------------------------------------------------------------------- verdict


def test_failures_within_the_tolerance_succeed_and_are_counted():
    results = [result(i, SweepRunStatus.SUCCEEDED, 0.1 * (i + 1)) for i in range(4)]
    results.append(result(4, SweepRunStatus.FAILED))

    summary = build_summary(plan(5, tolerated=20), results, None, None, NOW)

    assert summary.verdict is SweepVerdict.SUCCEEDED
    assert summary.error is None
    assert (summary.counts.succeeded, summary.counts.failed) == (4, 1)
    assert summary.best is not None and summary.best.run_id == "sw-r000"
    assert "best sw-r000 (loss:min = 0.1)" in summary.message


def test_more_failures_than_tolerated_fail_the_sweep_listing_them():
    results = [result(0, SweepRunStatus.SUCCEEDED, 0.1), result(1, SweepRunStatus.SUCCEEDED, 1)]
    results += [result(2, SweepRunStatus.FAILED), result(3, SweepRunStatus.FAILED)]

    summary = build_summary(plan(4, tolerated=25), results, None, None, NOW)

    assert summary.verdict is SweepVerdict.FAILED
    assert summary.error == ERROR_SWEEP_FAILED
    assert summary.message.startswith("2 of 4 runs failed, more than the 25% tolerated")
    assert "sw-r002 (script-failed, exit code 3): diverged" in summary.message
    # The best run is still named in the summary for the runs that did succeed.
    assert summary.best is not None and summary.best.run_id == "sw-r000"


def test_a_stopped_sweep_says_the_rest_were_stopped_and_counts_the_skipped():
    results = [
        result(0, SweepRunStatus.FAILED),
        result(1, SweepRunStatus.CANCELLED),
        result(2, SweepRunStatus.SKIPPED),
    ]
    stop = SweepStop(reason="failures", requested_at=NOW.isoformat())

    summary = build_summary(plan(3), results, stop, None, NOW)

    assert summary.verdict is SweepVerdict.FAILED
    assert "so the rest were stopped" in summary.message
    assert (summary.counts.failed, summary.counts.cancelled, summary.counts.skipped) == (1, 1, 1)


def test_a_cancelled_sweep_is_cancelled_whatever_its_runs_did():
    results = [result(0, SweepRunStatus.SUCCEEDED, 0.1), result(1, SweepRunStatus.CANCELLED)]
    stop = SweepStop(reason="cancelled", requested_at=NOW.isoformat())

    summary = build_summary(plan(2), results, stop, None, NOW)

    assert (summary.verdict, summary.error) == (SweepVerdict.CANCELLED, ERROR_SWEEP_CANCELLED)
    assert summary.message == "cancelled: 1 of 2 runs succeeded, 1 cancelled"


def test_a_sweep_where_no_run_succeeded_fails_even_when_everything_is_tolerated():
    results = [result(0, SweepRunStatus.FAILED), result(1, SweepRunStatus.FAILED)]

    summary = build_summary(plan(2, tolerated=100), results, None, None, NOW)

    assert summary.verdict is SweepVerdict.FAILED
    assert summary.message.startswith("no run succeeded")


def test_a_failed_map_state_fails_the_sweep_with_its_error():
    results = [result(0, SweepRunStatus.SUCCEEDED, 0.1), result(1, SweepRunStatus.RUNNING)]
    caught = CaughtError(Error="Lambda.Unknown", Cause="PrepareSweepRun timed out")

    summary = build_summary(plan(2, tolerated=100), results, None, caught, NOW)

    assert summary.verdict is SweepVerdict.FAILED
    assert "Map state failed (Lambda.Unknown: PrepareSweepRun timed out)" in summary.message
    assert summary.counts.running == 1


def test_a_map_state_failed_by_a_lambda_error_names_it_without_the_stack_trace():
    results = [result(0, SweepRunStatus.SUCCEEDED, 0.1)]
    cause = json.dumps(
        {
            "errorMessage": "no sweep 'sw'",
            "errorType": "SweepNotFound",
            "requestId": "7c1f3a52",
            "stackTrace": ['  File "/var/task/lambdas/handlers/prepare_sweep_run.py"\n'],
        }
    )
    caught = CaughtError(Error="SweepNotFound", Cause=cause)

    summary = build_summary(plan(1, tolerated=100), results, None, caught, NOW)

    assert "Map state failed (SweepNotFound: no sweep 'sw')" in summary.message
    assert "stackTrace" not in summary.message


def test_the_total_cost_sums_the_priced_runs():
    priced = [result(0, SweepRunStatus.SUCCEEDED, 0.1), result(1, SweepRunStatus.SUCCEEDED, 0.2)]
    priced[0].cost_usd, priced[1].cost_usd = 0.25, 0.5

    summary = build_summary(plan(2), priced, None, None, NOW)
    unpriced = build_summary(plan(1), [result(0, SweepRunStatus.SUCCEEDED, 0.1)], None, None, NOW)

    assert summary.total_cost_usd == 0.75
    assert unpriced.total_cost_usd is None

"""SummarizeSweep: each run's outcome from its record (or its execution, when it has no final
record), the best run by the objective, and whether the sweep succeeded."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from lambdas.constants import ERROR_SWEEP_CANCELLED, ERROR_SWEEP_FAILED
from lambdas.dal.runs_table import RunsTable
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.failure_text import failure_line, read_failure
from lambdas.models.run_record import FINAL_STATUSES, RunRecord, RunStatus
from lambdas.models.sweep_spec import SweepPlan, SweepRun
from lambdas.models.sweep_summary import (
    CaughtError,
    RunStartFailure,
    SweepCounts,
    SweepDigest,
    SweepRunResult,
    SweepRunStatus,
    SweepState,
    SweepStop,
    SweepSummary,
    SweepVerdict,
)

# DescribeExecution of a run's TrainRun execution: its answer, or None when it never started.
DescribeExecution = Callable[[str], dict[str, Any] | None]

_FROM_RECORD = {
    RunStatus.SUCCEEDED: SweepRunStatus.SUCCEEDED,
    RunStatus.FAILED: SweepRunStatus.FAILED,
    RunStatus.CANCELLED: SweepRunStatus.CANCELLED,
}
# An execution that ended without a final record: stopped by hand (the reaper records it
# CANCELLED later), or failed before or while recording (ValidateRun, a broken FinalizeRun).
_FROM_EXECUTION = {
    "SUCCEEDED": SweepRunStatus.SUCCEEDED,
    "FAILED": SweepRunStatus.FAILED,
    "TIMED_OUT": SweepRunStatus.FAILED,
    "ABORTED": SweepRunStatus.CANCELLED,
    "RUNNING": SweepRunStatus.RUNNING,
}
_LISTED_FAILURES = 5
_ERROR_CHARACTERS = 300


def summarize_sweep(
    state: SweepState,
    table: RunsTable,
    describe_execution: DescribeExecution,
    files: SweepFiles,
    now: datetime,
) -> SweepDigest:
    """Write sweeps/<id>/summary.json and return its digest (the sweep's output)."""
    # The runs come from plan.json, not the state: the state stays the same size for any sweep.
    plan = files.plan(state.sweep_id)
    metric = _metric(plan.objective)
    results = [
        run_result(
            run,
            table.get(run.run_id),
            describe_execution,
            metric,
            partial(files.failure, plan.sweep_id, run.run_id),
        )
        for run in plan.runs
    ]
    summary = build_summary(plan, results, files.stop(plan.sweep_id), state.map_error, now)
    uri = files.put_summary(summary)
    return SweepDigest(
        sweep_id=summary.sweep_id,
        verdict=summary.verdict,
        error=summary.error,
        message=summary.message,
        summary_uri=uri,
        counts=summary.counts,
        best_run_id=summary.best.run_id if summary.best else None,
        best_objective_value=summary.best.objective_value if summary.best else None,
    )


def run_result(
    run: SweepRun,
    record: RunRecord | None,
    describe_execution: DescribeExecution,
    metric: str | None,
    start_failure: Callable[[], RunStartFailure | None] = lambda: None,
) -> SweepRunResult:
    """The run's line: the record says how it ended; without a final record, its execution;
    without an execution, the failure OnSweepRunFailed recorded (its start failed), else it was
    skipped. `start_failure` reads that file, only for such a run."""
    if record is not None and record.status in FINAL_STATUSES:
        return SweepRunResult(
            index=run.index,
            run_id=run.run_id,
            swept=run.swept,
            status=_FROM_RECORD[record.status],
            end_reason=record.end_reason.value if record.end_reason else None,
            error=_record_error(record),
            objective_value=objective_value(record, metric),
            final_metrics=record.final_metrics,
            cost_usd=record.cost.total_usd if record.cost else None,
            duration_seconds=record.duration_seconds,
        )
    execution = describe_execution(run.run_id)
    error = None
    if execution is not None:
        status = _FROM_EXECUTION.get(str(execution.get("status")), SweepRunStatus.FAILED)
        error = _execution_error(execution) if status is SweepRunStatus.FAILED else None
    elif (failure := start_failure()) is not None:
        status = SweepRunStatus.FAILED
        error = f"({failure.error}): its TrainRun execution could not be started"
    else:
        status = SweepRunStatus.SKIPPED
    return SweepRunResult(
        index=run.index, run_id=run.run_id, swept=run.swept, status=status, error=error
    )


def objective_value(record: RunRecord, metric: str | None) -> float | None:
    """The metric's last value: from the metrics summary when FinalizeRun made one, else from
    the agent's final metrics. None when missing or not a finite number."""
    if metric is None:
        return None
    summarized = record.metrics_summary.get(metric)
    value = summarized.last if summarized else record.final_metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def best_run(results: list[SweepRunResult], objective: str | None) -> SweepRunResult | None:
    """The succeeded run with the lowest (min) or highest (max) value; ties go to the earlier
    run."""
    if objective is None:
        return None
    ranked = [
        result
        for result in results
        if result.status is SweepRunStatus.SUCCEEDED and result.objective_value is not None
    ]
    if not ranked:
        return None
    sign = -1 if objective.endswith(":max") else 1
    return min(ranked, key=lambda result: (sign * (result.objective_value or 0.0), result.index))


def build_summary(
    plan: SweepPlan,
    results: list[SweepRunResult],
    stop: SweepStop | None,
    map_error: CaughtError | None,
    now: datetime,
) -> SweepSummary:
    counts = SweepCounts(total=plan.total_runs)
    for result in results:
        name = result.status.value.lower()
        setattr(counts, name, getattr(counts, name) + 1)
    best = best_run(results, plan.objective)
    verdict, error, message = judge(plan, results, counts, stop, map_error)
    if best is not None and verdict is SweepVerdict.SUCCEEDED:
        message += f"; best {best.run_id} ({plan.objective} = {best.objective_value:g})"
    costs = [result.cost_usd for result in results if result.cost_usd is not None]
    return SweepSummary(
        sweep_id=plan.sweep_id,
        execution_arn=plan.execution_arn,
        verdict=verdict,
        error=error,
        message=message,
        objective=plan.objective,
        best=best,
        counts=counts,
        tolerated_failure_percentage=plan.tolerated_failure_percentage,
        stop_on_failure=plan.stop_on_failure,
        stop=stop,
        total_cost_usd=sum(costs) if costs else None,
        runs=results,
        written_at=now.isoformat(),
    )


def judge(
    plan: SweepPlan,
    results: list[SweepRunResult],
    counts: SweepCounts,
    stop: SweepStop | None,
    map_error: CaughtError | None,
) -> tuple[SweepVerdict, str | None, str]:
    """(verdict, the sweep's error name or None, one line saying why)."""
    tally = _tally(counts)
    if stop is not None and stop.reason == "cancelled":
        return SweepVerdict.CANCELLED, ERROR_SWEEP_CANCELLED, f"cancelled: {tally}"
    if map_error is not None:
        why = failure_line(map_error.Error, map_error.Cause, width=_ERROR_CHARACTERS)
        return (
            SweepVerdict.FAILED,
            ERROR_SWEEP_FAILED,
            f"the sweep's Map state failed ({why}): {tally}",
        )
    failed = [result for result in results if result.status is SweepRunStatus.FAILED]
    if len(failed) * 100 > plan.tolerated_failure_percentage * plan.total_runs:
        listed = "; ".join(_failure_line(result) for result in failed[:_LISTED_FAILURES])
        more = (
            f"; and {len(failed) - _LISTED_FAILURES} more" if len(failed) > _LISTED_FAILURES else ""
        )
        stopped = ", so the rest were stopped" if stop is not None else ""
        return (
            SweepVerdict.FAILED,
            ERROR_SWEEP_FAILED,
            f"{len(failed)} of {plan.total_runs} runs failed, more than the "
            f"{plan.tolerated_failure_percentage:g}% tolerated{stopped} ({tally}): "
            f"{listed}{more}",
        )
    if counts.succeeded == 0:
        return SweepVerdict.FAILED, ERROR_SWEEP_FAILED, f"no run succeeded ({tally})"
    return SweepVerdict.SUCCEEDED, None, tally


def _tally(counts: SweepCounts) -> str:
    parts = [f"{counts.succeeded} of {counts.total} runs succeeded"]
    for name in ("failed", "cancelled", "skipped", "running"):
        if getattr(counts, name):
            parts.append(f"{getattr(counts, name)} {name}")
    return ", ".join(parts)


def _failure_line(result: SweepRunResult) -> str:
    return " ".join(f"{result.run_id} {result.error or 'failed'}".split())


def _record_error(record: RunRecord) -> str | None:
    if record.status is not RunStatus.FAILED:
        return None
    reason = record.end_reason.value if record.end_reason else "failed"
    exit_code = f", exit code {record.exit_code}" if record.exit_code is not None else ""
    detail = f": {record.error}" if record.error else ""
    return f"({reason}{exit_code}){detail}"[:_ERROR_CHARACTERS]


def _execution_error(execution: dict[str, Any]) -> str:
    """'(RunSpecInvalid): data.0.s3_uri: ...': a Lambda's JSON cause read, its trace left out."""
    failure = read_failure(execution.get("error"), execution.get("cause"))
    name = failure.name or str(execution.get("status"))  # (TIMED_OUT): no error was given
    if not failure.message:
        return f"({name})"
    return f"({name}): {failure.message}"[:_ERROR_CHARACTERS]


def _metric(objective: str | None) -> str | None:
    return objective.rpartition(":")[0] if objective else None

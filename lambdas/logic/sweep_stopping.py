"""Stopping a sweep: mark it stopped (so PrepareSweepRun starts no more runs), then stop each of
its live runs the way `runctl stop` does (checkpoint, upload, CANCELLED, instance terminated).

Two callers: OnSweepRunFailed, when a stop_on_failure sweep has more failed runs than it
tolerates; and StopSweep, when the user cancels the sweep. The Sweep execution then ends by
itself: running items wait for their runs to end CANCELLED, the others are skipped, and
SummarizeSweep writes the summary. The engine's own stop (a failing Map state, StopExecution on
the Sweep) is never relied on: on AWS it stops the runs' executions without FinalizeRun (their
instances wait for the reaper), and the emulator does not stop them at all.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from lambdas.dal.runs_table import RunsTable
from lambdas.errors import SweepStopIncomplete
from lambdas.integrations.ssm_commands import SsmCommands
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.stopping import stop_run
from lambdas.logic.sweeps import child_run_id
from lambdas.models.run_record import FINAL_STATUSES, RunStatus
from lambdas.models.sweep_summary import (
    RunStartFailure,
    StopSweepOutput,
    SweepRunFailedInput,
    SweepRunFailedOutput,
    SweepStop,
)
from lambdas.observability import logger

# A run's own outcome that does not count against the sweep's tolerance.
_NOT_FAILED = frozenset({RunStatus.SUCCEEDED, RunStatus.CANCELLED})


def stop_sweep(
    sweep_id: str,
    total_runs: int,
    stop: SweepStop,
    table: RunsTable,
    files: SweepFiles,
    commands: SsmCommands,
) -> StopSweepOutput:
    """Mark the sweep stopped (the first mark stands), then ask every live run to stop. A run
    that cannot be asked does not keep the others running; SweepStopIncomplete comes after."""
    standing = files.request_stop(sweep_id, stop)
    asked, problems = [], []
    for index in range(total_runs):
        run_id = child_run_id(sweep_id, index)
        record = table.get(run_id)
        if record is None or record.status in FINAL_STATUSES:
            continue
        try:
            answer = stop_run(run_id, table, commands, stop.requested_at)
        except ClientError as error:
            logger.exception("could not stop a sweep's run", extra={"run_id": run_id})
            problems.append(f"{run_id}: {error.response['Error']['Code']}")
            continue
        if answer.action != "already-finished":
            asked.append(run_id)
    if problems:
        raise SweepStopIncomplete(f"sweep {sweep_id}: could not stop {'; '.join(problems)}")
    return StopSweepOutput(
        sweep_id=sweep_id,
        stop=standing,
        runs_asked_to_stop=asked,
        message=f"sweep {sweep_id} starts no more runs; {_asked_to_stop(asked)}",
    )


def _asked_to_stop(asked: list[str]) -> str:
    if not asked:
        return "none of its runs was running"
    runs = "1 running run was" if len(asked) == 1 else f"{len(asked)} running runs were"
    return f"{runs} asked to stop (checkpoint, upload, CANCELLED): {', '.join(asked)}"


def on_sweep_run_failed(
    event: SweepRunFailedInput,
    table: RunsTable,
    files: SweepFiles,
    commands: SsmCommands,
    now: str,
) -> SweepRunFailedOutput:
    """A run ended without success: record what it was caught with (SummarizeSweep's only
    source for a run whose start failed), then, in a stop_on_failure sweep, stop the sweep once
    its failed runs are more than it tolerates. Cancelled runs are not failures."""
    files.put_failure(
        event.sweep_id,
        RunStartFailure(run_id=event.run_id, error=event.error.Error if event.error else None),
    )
    if not event.stop_on_failure:
        return SweepRunFailedOutput(stopping=False)
    if files.stop(event.sweep_id) is not None:
        return SweepRunFailedOutput(stopping=True)
    failed = 0
    for index in range(event.total_runs):
        run_id = child_run_id(event.sweep_id, index)
        record = table.get(run_id)
        if record is not None and record.status is RunStatus.FAILED:
            failed += 1
        elif run_id == event.run_id and (record is None or record.status not in _NOT_FAILED):
            # Failed before it was recorded (ValidateRun), or its execution ended without a
            # final record: a failure all the same.
            failed += 1
    if failed * 100 <= event.tolerated_failure_percentage * event.total_runs:
        return SweepRunFailedOutput(stopping=False, failed_runs=failed)
    stop = SweepStop(
        reason="failures",
        requested_at=now,
        detail=f"{failed} of {event.total_runs} runs failed "
        f"({event.tolerated_failure_percentage:g}% tolerated); the last was {event.run_id}",
    )
    stop_sweep(event.sweep_id, event.total_runs, stop, table, files, commands)
    return SweepRunFailedOutput(stopping=True, failed_runs=failed)


def cancel_sweep(
    sweep_id: str, table: RunsTable, files: SweepFiles, commands: SsmCommands, now: str
) -> StopSweepOutput:
    """StopSweep: the user's cancel. A sweep that had already stopped keeps its first reason;
    one that has its summary has ended, and is left as it is."""
    plan = files.plan(sweep_id)
    summary = files.summary(sweep_id)
    if summary is not None:
        return StopSweepOutput(
            sweep_id=sweep_id,
            stop=summary.stop,
            message=f"sweep {sweep_id} had already ended: {summary.verdict.value}",
        )
    stop = SweepStop(reason="cancelled", requested_at=now, detail="cancelled by the user")
    return stop_sweep(sweep_id, plan.total_runs, stop, table, files, commands)

"""StopRun: a user's graceful stop. A run whose agent works is stopped by the agent (SIGTERM,
grace, checkpoint and outputs uploaded, then the task ends with Runctl.Cancelled); a run with no
agent yet ends at its next step (LaunchInstance, a boot or bootstrap poll, StartAgent or
PlanNextAttempt sees the mark; `ensure_not_stopped`). Either way
FinalizeRun ends it CANCELLED and terminates its instances."""

from __future__ import annotations

from lambdas.constants import NOTICE_STOP_REQUESTED
from lambdas.dal.runs_table import RunsTable
from lambdas.errors import RunNotFound, RunStopped
from lambdas.integrations.ssm_commands import SsmCommands
from lambdas.logic.agent_commands import send_notice
from lambdas.models.run_record import FINAL_STATUSES, RunRecord, RunStatus
from lambdas.models.steps import PreviousAttempt, StopRunOutput

# With the attempt's task token stored, its agent works (STAGING, RUNNING) or is being started
# (LAUNCHING: StartAgent stored the token and sent the start; the agent reads notice.json on its
# first look, so a notice written before it runs still stops it). In CHECKPOINTING it is already
# ending the attempt for an interruption, and the next attempt will not start.
AGENT_WORKING = frozenset({RunStatus.LAUNCHING, RunStatus.STAGING, RunStatus.RUNNING})


def stop_run(run_id: str, table: RunsTable, commands: SsmCommands, now: str) -> StopRunOutput:
    record = table.get(run_id)
    if record is None:
        raise RunNotFound(f"no run {run_id!r}: `runctl runs list` shows the runs there are")
    if record.status in FINAL_STATUSES or not table.request_stop(run_id, now):
        return _finished(table.get(run_id) or record)
    # Read again after the mark: StartAgent stores the task token only while there is no mark,
    # so a token seen now belongs to an agent that will run (or runs) and must be told.
    marked = table.get(run_id) or record
    if marked.status in FINAL_STATUSES:
        return _finished(marked)
    if marked.task_token and marked.instance_id and marked.status in AGENT_WORKING:
        send_notice(
            commands,
            marked.instance_id,
            NOTICE_STOP_REQUESTED,
            marked.stop_requested_at or now,
            None,
            source="stop-run",
            comment=f"runctl stop {run_id}",
        )
        grace = marked.spec.get("interruptions", {}).get("grace_seconds", 90)
        return StopRunOutput(
            run_id=run_id,
            action="agent-asked-to-stop",
            message=(
                f"asked the agent on {marked.instance_id} to stop: the script gets SIGTERM and "
                f"up to {grace} s to checkpoint; the newest checkpoint and the outputs are "
                "uploaded, the instance is terminated, and the run ends CANCELLED"
            ),
        )
    return StopRunOutput(
        run_id=run_id,
        action="stopping-before-training",
        message=(
            f"the run is {marked.status.value}, with no training under way: it will not start or "
            "resume training; it ends CANCELLED at its next step and its instances are terminated"
        ),
    )


def ensure_not_stopped(table: RunsTable, run_id: str, attempt: int) -> None:
    """Raise RunStopped when the user asked to stop the run: each step that starts an attempt
    (launch, boot polls, bootstrap polls, StartAgent) looks, so a stop takes effect at the next
    one rather than after a long boot. FinalizeRun then ends the run CANCELLED and terminates
    its instances."""
    record = table.get(run_id)
    if record is not None and record.stop_requested_at is not None:
        began = "training began" if attempt == 1 else f"attempt {attempt} began training"
        raise RunStopped(f"run {run_id} was stopped on request before {began}")


def end_starting_attempt_if_stopped(
    table: RunsTable, run_id: str, attempt: int, previous: PreviousAttempt | None, now: float
) -> None:
    """ensure_not_stopped for the steps before StartAgent (launch, boot and bootstrap polls).
    Not while the attempt this one replaces may still be handing off its newest checkpoint
    (until ReleasePreviousAttempt's deadline): FinalizeRun would terminate that instance
    mid-upload, so a later step ends the run instead."""
    if previous is None or not previous.await_handoff or now >= previous.release_deadline:
        ensure_not_stopped(table, run_id, attempt)


def _finished(record: RunRecord) -> StopRunOutput:
    return StopRunOutput(
        run_id=record.run_id,
        action="already-finished",
        message=f"the run had already finished: {record.status.value}",
    )

"""PlanNextAttempt: after an attempt ended early, decide whether and how the run goes on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lambdas.constants import (
    ERROR_GPU_UNAVAILABLE,
    ERROR_INSTANCE_LOST,
    ERROR_INTERRUPTED,
    ERROR_SCRIPT_FAILED,
)
from lambdas.dal.runs_table import RunsTable
from lambdas.errors import AgentStartFailed
from lambdas.logic.finalizing import (
    interruption_reason,
    read_agent_result,
)
from lambdas.logic.validation import TRAIN_TIMEOUT_MARGIN_SECONDS
from lambdas.models.run_record import EndReason, RunRecord
from lambdas.models.steps import (
    FinalizeInput,
    NextAttemptPlan,
    PreviousAttempt,
    RunContext,
)

PREEMPTIONS = frozenset({EndReason.SPOT_INTERRUPTED, EndReason.REBALANCE, EndReason.INSTANCE_LOST})
LOST_INSTANCE_ERRORS = frozenset({ERROR_INSTANCE_LOST, "InstanceLost", "States.HeartbeatTimeout"})
# A GPU instance whose driver does not answer is worth one more instance, not more.
GPU_RETRIES = 1
# An agent that did not start (StartAgent's confirmation) is tried on another instance at once;
# twice more at most, since a fault that follows the run (a broken agent build) fails them all.
AGENT_START_RETRIES = 2
ERROR_AGENT_START_FAILED = AgentStartFailed.__name__  # a step fails with its class name
# Set-up failures worth another instance: (how many more, why the run stops after them).
SET_UP_RETRIES = {
    EndReason.ENVIRONMENT_FAILED: (GPU_RETRIES, "no working GPU on {} instances"),
    EndReason.AGENT_FAILED: (AGENT_START_RETRIES, "the agent did not start on {} instances"),
}
# AWS gives two minutes between the warning and the termination; a little slack on top.
HANDOFF_WAIT_SECONDS = 150


def attempt_end_reason(
    request: FinalizeInput, recorded_kind: str | None = None
) -> EndReason | None:
    """Why the attempt stopped, when it is a reason to try again (None: it is not).
    `recorded_kind`: the notice the agent wrote on the run item with CHECKPOINTING."""
    assert request.error is not None
    name = request.error.Error
    if name == ERROR_INTERRUPTED:
        return interruption_reason(request.error.Cause, recorded_kind)
    if name in LOST_INSTANCE_ERRORS:
        return EndReason.INSTANCE_LOST
    if name == ERROR_SCRIPT_FAILED:
        return EndReason.SCRIPT_FAILED
    if name == ERROR_GPU_UNAVAILABLE:
        return EndReason.ENVIRONMENT_FAILED
    if name == ERROR_AGENT_START_FAILED:
        return EndReason.AGENT_FAILED
    return None


def _count(record: RunRecord, reasons: frozenset[EndReason]) -> int:
    return sum(1 for item in record.attempts.values() if item.end_reason in reasons)


def plan_next_attempt(
    request: FinalizeInput,
    table: RunsTable,
    s3: Any,
    bucket: str,
    now: datetime,
) -> NextAttemptPlan:
    run = request.run
    spec = run.spec
    record = table.get(run.run_id)
    recorded_kind = record.interrupted_by if record else None
    reason = attempt_end_reason(request, recorded_kind)
    if reason is None:
        return NextAttemptPlan(resume=False, reason="", detail="not a reason to try again")
    if record is None:
        return NextAttemptPlan(resume=False, reason=reason.value, detail="no run record")
    if record.stop_requested_at is not None:
        return NextAttemptPlan(
            resume=False,
            reason=EndReason.CANCELLED.value,
            detail=f"stopped on request ({reason.value} ended the attempt)",
        )
    if record.attempt == run.attempt + 1:
        # A retry of this step after its write went through: the same decision again.
        return _resume(run, request, reason, record, now)

    if reason is EndReason.SCRIPT_FAILED:
        result = read_agent_result(s3, bucket, run.run_id, run.attempt)
        exit_code = result.exit_code if result else None
        retried = _count(record, frozenset({EndReason.SCRIPT_FAILED}))
        if exit_code not in spec.retries.on_exit_codes:
            return NextAttemptPlan(
                resume=False, reason=reason.value, detail=f"exit code {exit_code} is not retried"
            )
        if retried >= spec.retries.max_retries:
            return NextAttemptPlan(
                resume=False,
                reason=reason.value,
                detail=f"retry budget exhausted ({retried} of {spec.retries.max_retries})",
            )
    elif reason in SET_UP_RETRIES:
        # Only these failures resume with this reason, so every earlier attempt that ended with
        # it was one of them.
        limit, says = SET_UP_RETRIES[reason]
        tried = _count(record, frozenset({reason}))
        if tried >= limit:
            return NextAttemptPlan(resume=False, reason=reason.value, detail=says.format(tried + 1))
    else:
        used = _count(record, PREEMPTIONS)
        if used >= spec.interruptions.max_interruptions:
            return NextAttemptPlan(
                resume=False,
                reason=reason.value,
                detail=(
                    f"interruption budget exhausted ({used} of "
                    f"{spec.interruptions.max_interruptions})"
                ),
            )
    elapsed = (now - datetime.fromisoformat(record.created_at)).total_seconds()
    if elapsed >= spec.limits.max_runtime_seconds:
        return NextAttemptPlan(
            resume=False, reason=EndReason.LIMIT_EXCEEDED.value, detail="no runtime left"
        )
    if not table.advance_attempt(run.run_id, run.attempt, reason.value, now.isoformat()):
        return NextAttemptPlan(resume=False, reason=reason.value, detail="the run is not live")
    updated = table.get(run.run_id) or record
    return _resume(run, request, reason, updated, now)


def _resume(
    run: RunContext,
    request: FinalizeInput,
    reason: EndReason,
    record: RunRecord,
    now: datetime,
) -> NextAttemptPlan:
    spec = run.spec
    preemptions = _count(record, PREEMPTIONS)
    on_demand_after = spec.interruptions.on_demand_after
    if on_demand_after is not None and preemptions >= on_demand_after:
        spec = spec.model_copy(update={"market": "on-demand"})
    elapsed = (now - datetime.fromisoformat(record.created_at)).total_seconds()
    remaining = max(int(spec.limits.max_runtime_seconds - elapsed), 1)
    avoid = list(run.avoid_placements)
    if request.instance is not None and reason is not EndReason.SCRIPT_FAILED:
        avoid.append(f"{request.instance.instance_type}@{request.instance.availability_zone}")
    next_run = run.model_copy(
        update={
            "attempt": run.attempt + 1,
            "spec": spec,
            "train_timeout_seconds": remaining + TRAIN_TIMEOUT_MARGIN_SECONDS,
            "avoid_placements": avoid[-10:],
        }
    )
    interrupted = reason in {EndReason.SPOT_INTERRUPTED, EndReason.REBALANCE}
    previous = PreviousAttempt(
        attempt=run.attempt,
        reason=reason.value,
        instance_ids=[request.instance.instance_id] if request.instance else [],
        await_handoff=interrupted,
        release_deadline=now.timestamp() + (HANDOFF_WAIT_SECONDS if interrupted else 0),
    )
    return NextAttemptPlan(
        resume=True,
        reason=reason.value,
        detail=f"attempt {run.attempt} ended: {reason.value}; starting attempt {run.attempt + 1}",
        run=next_run,
        previous=previous,
    )

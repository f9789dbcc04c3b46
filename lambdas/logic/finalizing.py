"""FinalizeRun: terminate the attempt's instance, decide how the run ended, record it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from lambdas.constants import (
    ERROR_AGENT_FAILED,
    ERROR_CANCELLED,
    ERROR_ENVIRONMENT_FAILED,
    ERROR_GPU_UNAVAILABLE,
    ERROR_INSTANCE_LOST,
    ERROR_INTERRUPTED,
    ERROR_SCRIPT_FAILED,
    attempt_result_key,
)
from lambdas.dal.runs_table import RunsTable
from lambdas.integrations.ec2_fleet import Ec2Fleet
from lambdas.integrations.metrics_files import MetricsFiles
from lambdas.logic.metrics_summary import MetricsSummariser
from lambdas.logic.pricing import PriceLookup, run_cost
from lambdas.models.bounds import fit_head
from lambdas.models.run_record import EndReason, RunRecord, RunStatus
from lambdas.models.steps import (
    FINAL_CAUSE_JSON_BYTES,
    AgentResult,
    FinalizeInput,
    FinalizeOutput,
)
from lambdas.observability import logger

# A step error name -> why the run stopped. Names are the Lambdas' exception classes, the agent's
# Runctl.* errors and Step Functions' own States.* errors.
END_REASON_BY_ERROR = {
    ERROR_SCRIPT_FAILED: EndReason.SCRIPT_FAILED,
    ERROR_AGENT_FAILED: EndReason.AGENT_FAILED,
    ERROR_ENVIRONMENT_FAILED: EndReason.ENVIRONMENT_FAILED,
    ERROR_GPU_UNAVAILABLE: EndReason.ENVIRONMENT_FAILED,
    "States.HeartbeatTimeout": EndReason.INSTANCE_LOST,
    "States.Timeout": EndReason.LIMIT_EXCEEDED,
    "CapacityUnavailable": EndReason.CAPACITY,
    "InstanceStartTimeout": EndReason.START_TIMEOUT,
    "InstanceLost": EndReason.INSTANCE_LOST,
    "BootstrapFailed": EndReason.BOOTSTRAP_FAILED,
    "ImageBuildFailed": EndReason.ENVIRONMENT_FAILED,  # before any instance was launched
    "AgentStartFailed": EndReason.AGENT_FAILED,  # StartAgent saw no agent process start
    ERROR_INSTANCE_LOST: EndReason.INSTANCE_LOST,
    ERROR_INTERRUPTED: EndReason.SPOT_INTERRUPTED,  # or rebalance: the cause says which
    ERROR_CANCELLED: EndReason.CANCELLED,  # the agent stopped the script on request
    "RunStopped": EndReason.CANCELLED,  # stopped on request before the agent started
}
STDERR_TAIL_CHARS = 4096


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    end_reason: EndReason
    error: str  # the execution's error name when it fails
    cause: str  # one readable sentence: why the run stopped


def decide_outcome(request: FinalizeInput, result: AgentResult | None) -> Outcome:
    """Pure: the run's final status and reason, from the state and the agent's result."""
    if request.error is None and request.result is not None:
        return Outcome(RunStatus.SUCCEEDED, EndReason.COMPLETED, "None", "")
    if request.error is None:
        reason = EndReason.INTERNAL_ERROR
        return Outcome(RunStatus.FAILED, reason, error_name(reason), "finalized without a result")
    name = request.error.Error
    reason = END_REASON_BY_ERROR.get(name, EndReason.INTERNAL_ERROR)
    if name == ERROR_INTERRUPTED:
        reason = interruption_reason(request.error.Cause)
    if request.next is not None and request.next.reason:
        reason = EndReason(request.next.reason)
    status = RunStatus.CANCELLED if reason is EndReason.CANCELLED else RunStatus.FAILED
    return Outcome(status, reason, error_name(reason), _cause(name, request, result))


def error_name(reason: EndReason) -> str:
    """The failed execution's error: Runctl.<Reason> (a Fail state may not use States.*)."""
    return "Runctl." + "".join(part.capitalize() for part in reason.value.split("-"))


def _cause(name: str, request: FinalizeInput, result: AgentResult | None) -> str:
    cause = _error_cause(name, request, result)
    if request.next is not None and not request.next.resume and request.next.detail:
        # Why the run did not go on: "interruption budget exhausted (3 of 3)", ...
        return f"{cause}; {request.next.detail}"
    return cause


def _error_cause(name: str, request: FinalizeInput, result: AgentResult | None) -> str:
    if name == ERROR_SCRIPT_FAILED and result is not None:
        tail = result.stderr_tail.strip().splitlines()[-1:] or ["(no stderr)"]
        return f"script exited with code {result.exit_code}: {tail[0]}"
    if name == ERROR_AGENT_FAILED and result is not None and result.message:
        return f"agent failed: {result.message}"
    if name in {ERROR_ENVIRONMENT_FAILED, ERROR_GPU_UNAVAILABLE} and result is not None:
        return f"environment failed: {result.message}"
    if name == ERROR_CANCELLED:
        detail = f": {result.message}" if result is not None and result.message else ""
        return f"stopped on request{detail}"
    if name == ERROR_INTERRUPTED:
        # The agent's cause says which; the plan's reason may be another (limit-exceeded).
        kind = interruption_reason(request.error.Cause if request.error else None)
        return f"the instance was taken back ({kind.value})"
    if name in {"States.HeartbeatTimeout", ERROR_INSTANCE_LOST}:
        return "no heartbeat from the agent: the instance or its agent is gone"
    if name == "States.Timeout":
        limit = request.run.spec.limits.max_runtime_seconds
        return f"the run exceeded its max runtime of {limit} s"
    return _readable_cause(request.error.Cause if request.error else None) or name


def interruption_reason(cause: str | None, recorded_kind: str | None = None) -> EndReason:
    """Runctl.Interrupted's cause is JSON {"reason": "spot-interrupted"|"rebalance", ...}; when
    it did not arrive (the emulator drops causes), what the agent wrote on the run item."""
    try:
        reason = json.loads(cause or "{}").get("reason")
    except (ValueError, AttributeError):
        reason = None
    reason = reason or recorded_kind
    return (
        EndReason.REBALANCE if reason == EndReason.REBALANCE.value else EndReason.SPOT_INTERRUPTED
    )


def _readable_cause(cause: str | None) -> str:
    """A Lambda error's cause is JSON with errorMessage; anything else is shown as it is."""
    if not cause:
        return ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return cause


def read_agent_result(s3: Any, bucket: str, run_id: str, attempt: int) -> AgentResult | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=attempt_result_key(run_id, attempt))["Body"].read()
    except ClientError as error:
        if error.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return None
        raise
    try:
        return AgentResult.model_validate_json(body)
    except ValidationError:
        # A torn or foreign result must not stop the run from being finalized.
        logger.warning("unreadable agent result", extra={"run_id": run_id, "attempt": attempt})
        return None


def finalize_run(
    request: FinalizeInput,
    fleet: Ec2Fleet,
    table: RunsTable,
    s3: Any,
    bucket: str,
    now: datetime,
    prices: PriceLookup,
) -> FinalizeOutput:
    run = request.run
    record = table.get(run.run_id)
    # RecordRun refused a run id another execution owns (RunAlreadyExists): the record, the tagged
    # instances and result.json under that id are that execution's run, not this one's to end.
    if record is not None and record.execution_arn != run.execution_arn:
        return _finalize_foreign(request, fleet)
    # Terminate first: whatever else fails below, no instance outlives its run.
    # Every attempt's: a previous, interrupted attempt may still be checkpointing.
    instance_ids = {item.instance_id for item in fleet.attempt_instances(run.run_id)}
    if request.instance is not None:
        instance_ids.add(request.instance.instance_id)
    fleet.terminate(sorted(instance_ids))

    result = request.result or read_agent_result(s3, bucket, run.run_id, run.attempt)
    outcome = decide_outcome(request, result)
    stamp = now.isoformat()
    duration = (now - datetime.fromisoformat(record.created_at)).total_seconds() if record else None
    fields = run_end_fields(outcome, result, stamp, duration)
    # A run that never launched has no attempt entry to annotate.
    attempt_fields = (
        {"ended_at": stamp, "end_reason": outcome.end_reason.value}
        if record is not None and str(run.attempt) in record.attempts
        else None
    )
    summary = run_summary_fields(record, MetricsFiles(s3, bucket), prices, now) if record else {}
    write_run_end(table, run.run_id, run.attempt, stamp, fields, summary, attempt_fields)
    return FinalizeOutput(
        run_id=run.run_id,
        status=outcome.status.value,
        end_reason=outcome.end_reason.value,
        error=outcome.error,
        cause=outcome.cause,
        outputs_uri=result.outputs_uri if result else None,
    )


def run_end_fields(
    outcome: Outcome, result: AgentResult | None, stamp: str, duration: float | None
) -> dict[str, Any]:
    """The run item's fields that say how the run ended. `error` is the cause cut as the
    execution's is (FINAL_CAUSE_JSON_BYTES): a Lambda's or the agent's cause can be 32,768
    characters, too many for the item beside everything else."""
    fields: dict[str, Any] = {
        "status": outcome.status.value,
        "end_reason": outcome.end_reason.value,
        "task_token": None,
        "ended_at": stamp,
        "duration_seconds": duration,
        "error": fit_head(outcome.cause, FINAL_CAUSE_JSON_BYTES) or None,
    }
    if result is not None:
        fields |= {
            "exit_code": result.exit_code,
            "outputs_uri": result.outputs_uri,
            "final_metrics": result.final_metrics,
        }
        if outcome.status is not RunStatus.SUCCEEDED:
            fields["stderr_tail"] = result.stderr_tail[-STDERR_TAIL_CHARS:]
    return fields


def write_run_end(
    table: RunsTable,
    run_id: str,
    attempt: int,
    stamp: str,
    fields: dict[str, Any],
    summary: dict[str, Any],
    attempt_fields: dict[str, Any] | None,
) -> bool:
    """The run's final write, with its cost and metrics summary when the item can take them;
    False when the run had moved on (finished, or on another attempt)."""
    try:
        return table.update_live(run_id, attempt, stamp, fields | summary, attempt_fields)
    except ClientError as error:
        # The summary could push the item past DynamoDB's 400 KB: end the run without it.
        if not summary or error.response["Error"]["Code"] != "ValidationException":
            raise
        logger.warning("run item cannot take its cost and metrics summary", exc_info=True)
        return table.update_live(run_id, attempt, stamp, fields, attempt_fields)


def run_summary_fields(
    record: RunRecord, metrics_files: MetricsFiles, prices: PriceLookup, now: datetime
) -> dict[str, Any]:
    """`cost` and `metrics_summary` for the final write. Each is best effort: a price or metrics
    file that cannot be read must not keep the run from ending, so a failure is logged and that
    field left out."""
    fields: dict[str, Any] = {}
    # Any exception: whatever went wrong here, the run must still be recorded as ended.
    try:
        fields["cost"] = run_cost(record, prices, now).model_dump(mode="json")
    except Exception:
        logger.warning("could not price the run", extra={"run_id": record.run_id}, exc_info=True)
    try:
        summariser = MetricsSummariser()
        attempts = [attempt.number for attempt in record.attempts.values()]
        bad_lines = summariser.add_lines(metrics_files.lines(record.run_id, attempts))
        summary = summariser.summary()  # may leave out more names: the log names them too
        if bad_lines or summariser.skipped_names:
            logger.warning(
                "metrics left out of the summary",
                extra={
                    "run_id": record.run_id,
                    "bad_lines": bad_lines,
                    "skipped_names": sorted(summariser.skipped_names)[:20],
                },
            )
        fields["metrics_summary"] = {
            name: metric.model_dump(mode="json") for name, metric in summary.items()
        }
    except Exception:
        logger.warning(
            "could not summarise the run's metrics", extra={"run_id": record.run_id}, exc_info=True
        )
    return fields


def _finalize_foreign(request: FinalizeInput, fleet: Ec2Fleet) -> FinalizeOutput:
    """End this execution only: its own instance, if it has one; no record, tag or S3 lookups."""
    if request.instance is not None:
        fleet.terminate([request.instance.instance_id])
    outcome = decide_outcome(request, None)
    return FinalizeOutput(
        run_id=request.run.run_id,
        status=outcome.status.value,
        end_reason=outcome.end_reason.value,
        error=outcome.error,
        cause=outcome.cause,
    )

"""ReapOrphans: terminate runctl instances no live run owns; end runs over their max runtime.

Safe beside a running state machine: an instance of a live run's current attempt, or of the one
before it (it may still be checkpointing while the next one starts), is never touched while that
run's execution is RUNNING and under its limit; every write is conditional on the run still being
live at the attempt it was read at, and a failed condition means someone else moved it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from lambdas.constants import TAG_ATTEMPT, TAG_RUN_ID
from lambdas.dal.runs_table import RunsTable
from lambdas.integrations.ec2_fleet import Ec2Fleet, ManagedInstance
from lambdas.integrations.metrics_files import MetricsFiles
from lambdas.logic.finalizing import error_name, run_summary_fields, write_run_end
from lambdas.logic.pricing import PriceLookup
from lambdas.models.run_record import FINAL_STATUSES, EndReason, RunRecord, RunStatus
from lambdas.models.run_spec import Limits
from lambdas.observability import logger

DEFAULT_GRACE_SECONDS = 600
# A run may stage and upload for a while after its script's max runtime (the Train state allows
# the same), so the reaper gives it this long before stopping it.
LIMIT_MARGIN_SECONDS = 600
EXECUTION_RUNNING = "RUNNING"
# Step Functions has forgotten the execution (closed ones are kept 90 days): it is not running.
EXECUTION_GONE = "GONE"


class Action(StrEnum):
    KEEP = "keep"
    TERMINATE = "terminate"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    # The run's execution ended without finishing the run: record it CANCELLED as well.
    cancel_run: bool = False


def _keep(reason: str) -> Decision:
    return Decision(Action.KEEP, reason)


def _terminate(reason: str, cancel_run: bool = False) -> Decision:
    return Decision(Action.TERMINATE, reason, cancel_run)


def _attempt_tag(instance: ManagedInstance) -> int | None:
    try:
        return int(instance.tags[TAG_ATTEMPT])
    except (KeyError, ValueError):
        return None


def decide(
    instance: ManagedInstance,
    record: RunRecord | None,
    execution_status: str | None,
    now: datetime,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
) -> Decision:
    """Pure: keep or terminate one runctl instance, and why. `record` is its run (None: none
    recorded); `execution_status` that run's execution status (None: not looked up)."""
    age = (now - instance.launch_time).total_seconds()
    if age < grace_seconds:
        # LaunchInstance may not have recorded it yet: its run record cannot be trusted.
        return _keep(f"launched {age:.0f} s ago, within the {grace_seconds} s grace")
    run_id = instance.tags.get(TAG_RUN_ID)
    if not run_id:
        return _terminate("runctl-managed but tagged with no run id")
    if record is None:
        return _terminate(f"no record of run {run_id}")
    if record.status in FINAL_STATUSES:
        return _terminate(f"run {run_id} is {record.status.value}")
    attempt = _attempt_tag(instance)
    if attempt is None:
        return _terminate(f"run {run_id} is live but the instance has no valid attempt tag")
    if attempt < record.attempt - 1:
        return _terminate(
            f"attempt {attempt} of run {run_id} is older than its current attempt "
            f"{record.attempt} and the one before it"
        )
    if execution_status is None:
        return _keep(f"attempt {attempt} of live run {run_id}: execution status unknown")
    if execution_status != EXECUTION_RUNNING:
        return _terminate(
            f"execution {execution_status} without finishing the run", cancel_run=True
        )
    return _keep(f"attempt {attempt} of live run {run_id} (current attempt {record.attempt})")


def max_runtime_seconds(record: RunRecord) -> int:
    limits = record.spec.get("limits") or {}
    return int(limits.get("max_runtime_seconds", Limits().max_runtime_seconds))


def runtime_deadline(record: RunRecord, margin_seconds: int = LIMIT_MARGIN_SECONDS) -> datetime:
    """Pure: when the reaper stops a live run, counted from its creation like its remaining
    runtime is (a resume does not extend it)."""
    created = datetime.fromisoformat(record.created_at)
    return created + timedelta(seconds=max_runtime_seconds(record) + margin_seconds)


class ReapIncomplete(Exception):
    """Some instances or runs could not be handled; the others were (see the log)."""


@dataclass
class ReapSummary:
    terminated: list[str] = field(default_factory=list)
    cancelled_runs: list[str] = field(default_factory=list)
    limit_exceeded_runs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "terminated": self.terminated,
            "cancelled_runs": self.cancelled_runs,
            "limit_exceeded_runs": self.limit_exceeded_runs,
        }


class Executions:
    """TrainRun executions' statuses, each described once per pass."""

    def __init__(self, sfn: Any) -> None:
        self.sfn = sfn
        self._status: dict[str, str] = {}

    def status(self, execution_arn: str) -> str:
        if execution_arn not in self._status:
            try:
                described = self.sfn.describe_execution(executionArn=execution_arn)
                self._status[execution_arn] = str(described["status"])
            except ClientError as error:
                if error.response["Error"]["Code"] != "ExecutionDoesNotExist":
                    raise
                self._status[execution_arn] = EXECUTION_GONE
        return self._status[execution_arn]

    def stop(self, execution_arn: str, error: str, cause: str) -> bool:
        """Stop a running execution; False when it had already ended or is unknown."""
        if self.status(execution_arn) != EXECUTION_RUNNING:
            return False
        try:
            self.sfn.stop_execution(executionArn=execution_arn, error=error, cause=cause)
        except ClientError as failure:
            if failure.response["Error"]["Code"] != "ExecutionDoesNotExist":
                raise
            self._status[execution_arn] = EXECUTION_GONE
            return False
        self._status[execution_arn] = "ABORTED"
        return True


class Reaper:
    """One pass: the live runs first (a run over its limit ends as limit-exceeded even if its
    execution also ended), then every runctl instance."""

    def __init__(
        self,
        fleet: Ec2Fleet,
        table: RunsTable,
        sfn: Any,
        now: datetime,
        grace_seconds: int = DEFAULT_GRACE_SECONDS,
        margin_seconds: int = LIMIT_MARGIN_SECONDS,
        *,
        metrics_files: MetricsFiles,
        prices: PriceLookup,
    ) -> None:
        self.fleet = fleet
        self.table = table
        self.metrics_files = metrics_files
        self.prices = prices
        self.executions = Executions(sfn)
        self.now = now
        self.grace_seconds = grace_seconds
        self.margin_seconds = margin_seconds
        self.summary = ReapSummary()
        self._records: dict[str, RunRecord | None] = {}
        self._ended: set[str] = set()  # runs this pass already tried to end

    def run(self) -> ReapSummary:
        for record in self.table.live_runs():
            self._guarded(record.run_id, self._check_run, record)
        for instance in self.fleet.managed_instances():
            self._guarded(instance.instance_id, self._reap_instance, instance)
        return self.summary

    def _guarded(self, subject: str, step: Callable[[Any], None], item: Any) -> None:
        # One instance or run AWS refuses to act on must not keep the reaper from the others.
        try:
            step(item)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            logger.exception("reaper could not handle", extra={"subject": subject, "code": code})
            self.summary.failures.append(f"{subject}: {code}")

    # ------------------------------------------------------------------ orphan instances

    def _record(self, run_id: str) -> RunRecord | None:
        if run_id not in self._records:
            self._records[run_id] = self.table.get(run_id)
        return self._records[run_id]

    def _reap_instance(self, instance: ManagedInstance) -> None:
        run_id = instance.tags.get(TAG_RUN_ID)
        record = self._record(run_id) if run_id else None
        status = None
        if record is not None and record.status not in FINAL_STATUSES:
            status = self.executions.status(record.execution_arn)
        decision = decide(instance, record, status, self.now, self.grace_seconds)
        extra = {"instance_id": instance.instance_id, "run_id": run_id, "reason": decision.reason}
        if decision.action is Action.KEEP:
            logger.debug("reaper keeps instance", extra=extra)
            return
        if decision.cancel_run and record is not None:
            self._cancel(record, status or EXECUTION_GONE)
        logger.info("reaper terminates instance", extra=extra)
        self._terminate([instance.instance_id])

    def _terminate(self, instance_ids: list[str]) -> None:
        fresh = [item for item in instance_ids if item not in self.summary.terminated]
        self.fleet.terminate(fresh)
        self.summary.terminated.extend(fresh)

    # ------------------------------------------------------------------ live runs

    def _check_run(self, record: RunRecord) -> None:
        if self.now > runtime_deadline(record, self.margin_seconds):
            self._end_over_limit(record)
            return
        status = self.executions.status(record.execution_arn)
        if status != EXECUTION_RUNNING:
            # Nothing else would end the record. Its instances go below, by the final run they
            # now belong to (a young one on a later pass); a run the scan missed, by decide().
            self._cancel(record, status)

    def _end_over_limit(self, record: RunRecord) -> None:
        """Stopping the execution skips its FinalizeRun, so the reaper does FinalizeRun's part:
        stop first (no new instance after this), terminate every attempt's instances, record."""
        cause = (
            f"the run exceeded its max runtime of {max_runtime_seconds(record)} s "
            f"(+{self.margin_seconds} s margin): stopped by the reaper"
        )
        reason = EndReason.LIMIT_EXCEEDED
        # The scan may be seconds old: a run that finished since must not see its execution
        # stopped on its way out.
        current = self.table.get(record.run_id)
        if current is None or current.status in FINAL_STATUSES:
            logger.info("run ended before the reaper stopped it", extra={"run_id": record.run_id})
            return
        record = current
        stopped = self.executions.stop(record.execution_arn, error_name(reason), cause)
        instance_ids = [item.instance_id for item in self.fleet.attempt_instances(record.run_id)]
        extra = {"run_id": record.run_id, "instance_ids": instance_ids, "stopped": stopped}
        logger.info(f"reaper ends run over its limit: {cause}", extra=extra)
        self._terminate(instance_ids)
        if self._end_run(record, RunStatus.FAILED, reason, cause):
            self.summary.limit_exceeded_runs.append(record.run_id)

    def _cancel(self, record: RunRecord, execution_status: str) -> None:
        if record.run_id in self._ended:
            return  # its other instances: one write per run and pass
        error = f"execution {execution_status} without finishing the run: reaped"
        logger.info(f"reaper cancels run: {error}", extra={"run_id": record.run_id})
        if self._end_run(record, RunStatus.CANCELLED, EndReason.CANCELLED, error):
            self.summary.cancelled_runs.append(record.run_id)

    def _end_run(self, record: RunRecord, status: RunStatus, reason: EndReason, error: str) -> bool:
        self._ended.add(record.run_id)
        stamp = self.now.isoformat()
        duration = (self.now - datetime.fromisoformat(record.created_at)).total_seconds()
        fields: dict[str, Any] = {
            "status": status.value,
            "end_reason": reason.value,
            "error": error,
            "task_token": None,
            "ended_at": stamp,
            "duration_seconds": duration,
        }
        # As FinalizeRun would have: the cost and metrics summary go with the end.
        summary = run_summary_fields(record, self.metrics_files, self.prices, self.now)
        written = write_run_end(
            self.table,
            record.run_id,
            record.attempt,
            stamp,
            fields,
            summary,
            # An attempt not yet launched has no entry to annotate.
            attempt_fields=(
                {"ended_at": stamp, "end_reason": reason.value}
                if str(record.attempt) in record.attempts
                else None
            ),
        )
        if not written:
            logger.info(
                "run moved on before the reaper's write: skipped",
                extra={"run_id": record.run_id, "wanted": status.value},
            )
        return written


def reap(
    fleet: Ec2Fleet,
    table: RunsTable,
    sfn: Any,
    now: datetime,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    margin_seconds: int = LIMIT_MARGIN_SECONDS,
    *,
    metrics_files: MetricsFiles,
    prices: PriceLookup,
) -> ReapSummary:
    """One reaper pass; what it terminated, cancelled and ended over the limit."""
    return Reaper(
        fleet,
        table,
        sfn,
        now,
        grace_seconds,
        margin_seconds,
        metrics_files=metrics_files,
        prices=prices,
    ).run()

"""The runctl SDK: one Client for a deployed stack, found by its CloudFormation outputs.

    client = Client()                                   # stack "Runctl", region from AWS config
    submission = client.submit(RunRequest(Path("train.py"), hyperparameters={"lr": 0.01}))
    outcome = client.follow(submission.run_id, on_event=print)
    client.compare([run_a, run_b]).differing_hyperparameters

Every method raises a RunctlError subclass (StackNotFound, NoCredentials, RunNotFound, ...) with a
one-line message, never a botocore exception.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lambdas.dal.runs_table import RunsTable
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.failure_text import failure_line, failure_trace
from lambdas.logic.sweeps import sweep_points
from lambdas.models.run_record import FINAL_STATUSES, RunRecord, RunStatus
from lambdas.models.run_spec import RunSpec
from lambdas.models.steps import StopRunOutput
from lambdas.models.sweep_spec import SweepSpec
from lambdas.models.sweep_summary import StopSweepOutput
from runctl.client.aws import AwsTarget, aws_errors
from runctl.client.follow import (
    LogLine,
    LogReader,
    RunEvent,
    RunFollower,
    RunOutcome,
    follow_execution,
)
from runctl.client.metrics import MetricSeries
from runctl.client.plotting import PlotResult
from runctl.client.reading import Comparison, RunDetails, RunReader
from runctl.client.stack import DEFAULT_STACK_NAME, StackOutputs, describe_stack_outputs
from runctl.client.store import AwsRunStore
from runctl.errors import AwsRequestFailed, RunNeverStarted, StackNotFound, StopUnavailable
from runctl.packaging import CodePackage, package_directory, upload_package
from runctl.run_request import RunPlan, RunRequest, new_run_id, plan_run
from runctl.source_info import source_info
from runctl.sweeps import (
    SweepOptions,
    SweepOutcome,
    SweepProgress,
    SweepWatcher,
    cancel_sweep,
    describe_sweep,
    list_sweeps,
    prepare_sweep,
    start_sweep,
    wait_for_sweep,
)


@dataclass(frozen=True)
class Submission:
    run_id: str
    spec: RunSpec
    code_uri: str
    uploaded_bytes: int  # 0 when the same code was uploaded before
    files: int
    plan: RunPlan
    context_uploaded_bytes: int = 0  # the build context's; 0 when unchanged (or no build)


@dataclass(frozen=True)
class SweepSubmission:
    sweep_id: str
    spec: SweepSpec
    total_runs: int
    code_uri: str
    uploaded_bytes: int  # 0 when the same code was uploaded before
    files: int
    plan: RunPlan


@dataclass(frozen=True)
class RunState:
    """What is known of a run now: its record, or only its execution before RecordRun."""

    run_id: str
    record: RunRecord | None
    execution_status: str | None
    error: str | None = None
    cause: str | None = None

    @property
    def status(self) -> str:
        if self.record is not None:
            return self.record.status.value
        # Validation failed (no record is ever written) or RecordRun has not run yet.
        return "STARTING" if self.execution_status == "RUNNING" else str(self.execution_status)

    @property
    def execution_failure(self) -> str:
        """'RunSpecInvalid: entry_point: ...' (one line, no stack trace), or the execution's
        status when it gave no error."""
        if self.error or self.cause:
            return failure_line(self.error, self.cause)
        return f"its execution is {self.execution_status}"


# StopRun's answer: run_id, action (agent-asked-to-stop | stopping-before-training |
# already-finished) and a message for the user. One model for the Lambda and the client.
StopResult = StopRunOutput


class Client:
    """Submit, follow, stop and read back runs of one deployed runctl stack."""

    def __init__(
        self,
        stack_name: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
    ) -> None:
        self.stack_name = stack_name or DEFAULT_STACK_NAME
        self.target = AwsTarget(region=region, endpoint_url=endpoint_url, profile=profile)

    # --- AWS plumbing (created on first use, so a bad --hp fails before any AWS call) ---

    @cached_property
    def _session(self) -> Any:
        return self.target.session()

    def _client(self, service: str) -> Any:
        return self.target.client(self._session, service)

    @cached_property
    def outputs(self) -> StackOutputs:
        """The stack's outputs (DescribeStacks); StackNotFound says how to deploy it."""
        with aws_errors("finding the stack"):
            return describe_stack_outputs(
                self._client("cloudformation"), self.stack_name, self._session.region_name
            )

    @cached_property
    def _s3(self) -> Any:
        return self._client("s3")

    @cached_property
    def _sfn(self) -> Any:
        return self._client("stepfunctions")

    @cached_property
    def _logs(self) -> Any:
        return self._client("logs")

    @cached_property
    def _table(self) -> RunsTable:
        return RunsTable(self.outputs.runs_table, self._client("dynamodb"))

    @cached_property
    def reader(self) -> RunReader:
        store = AwsRunStore(self._table, self._s3, self.outputs.bucket)
        return RunReader(store, where=f"stack {self.stack_name!r}")

    # --- starting runs ---

    def submit(self, request: RunRequest, run_id: str | None = None) -> Submission:
        """Package the project, upload it unless already there, start the run."""
        plan = plan_run(request)  # every input mistake, before packaging or AWS
        package = package_directory(plan.project_root)
        with aws_errors("submitting the run"):
            code_uri, uploaded = self.upload_code(package)
            context, context_bytes = plan.upload_context(self.upload_code)
            spec = plan.spec(
                code_uri, package.sha256, source_info(plan.project_root), context=context
            )
            run_id = run_id or new_run_id()
            self._sfn.start_execution(
                stateMachineArn=self.outputs.state_machine_arn,
                name=run_id,
                input=json.dumps(spec.model_dump(mode="json", exclude_none=True)),
            )
        return Submission(run_id, spec, code_uri, uploaded, len(package.files), plan, context_bytes)

    def upload_code(self, package: CodePackage) -> tuple[str, int]:
        """Put the archive under its hash; the bytes uploaded (0 when it was there already)."""
        with aws_errors("uploading the code"):
            return upload_package(self._s3, self.outputs.bucket, package)

    # --- sweeps ---

    def submit_sweep(
        self, request: RunRequest, options: SweepOptions, sweep_id: str | None = None
    ) -> SweepSubmission:
        """Package and upload the project once, then start a Sweep of runs of it: the request
        is every run's base, `options` the grid, samples and policies."""
        prepared = prepare_sweep(request, options, sweep_id)
        state_machine = self._sweep_state_machine()
        with aws_errors("starting the sweep"):
            code_uri, uploaded = self.upload_code(prepared.package)
            context, _ = prepared.plan.upload_context(self.upload_code)
            spec = prepared.spec(code_uri, context=context)
            start_sweep(self._sfn, state_machine, spec, prepared.sweep_id)
        return SweepSubmission(
            prepared.sweep_id,
            spec,
            len(sweep_points(spec)),
            code_uri,
            uploaded,
            len(prepared.package.files),
            prepared.plan,
        )

    def sweep(self, sweep_id: str) -> SweepOutcome:
        """The sweep now: its status and, once it ended, its summary (SweepNotFound if none)."""
        with aws_errors("reading the sweep"):
            return describe_sweep(
                self._sfn, self._sweep_files, self._sweep_state_machine(), sweep_id
            )

    def follow_sweep(
        self,
        sweep_id: str,
        on_progress: Callable[[SweepProgress], None] = lambda progress: None,
        poll_seconds: float = 10.0,
        timeout_seconds: float = 7 * 24 * 3600,
    ) -> SweepOutcome:
        """Report the runs' progress until the sweep ends; then its outcome with the summary."""
        self.sweep(sweep_id)  # SweepNotFound before following nothing
        watcher = SweepWatcher(self._sweep_files, self._table, sweep_id)
        with aws_errors("following the sweep"):
            return wait_for_sweep(
                self._sfn,
                self._sweep_files,
                self._sweep_state_machine(),
                sweep_id,
                timeout_seconds,
                poll_seconds,
                on_poll=lambda: on_progress(watcher.poll()),
            )

    def cancel_sweep(self, sweep_id: str) -> StopSweepOutput:
        """No more runs of the sweep start, and its running ones stop gracefully."""
        self.sweep(sweep_id)  # SweepNotFound
        function = self.outputs.stop_sweep_function_name
        if function is None:
            raise self._needs_sweeps()
        with aws_errors("cancelling the sweep"):
            return cancel_sweep(
                self._sfn,
                self._sweep_files,
                self._sweep_state_machine(),
                self._client("lambda"),
                function,
                sweep_id,
            )

    def list_sweeps(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest sweeps first: name (the sweep id), status, startDate, stopDate."""
        with aws_errors("listing sweeps"):
            return list_sweeps(self._sfn, self._sweep_state_machine(), limit)

    @cached_property
    def _sweep_files(self) -> SweepFiles:
        return SweepFiles(self._s3, self.outputs.bucket)

    def _sweep_state_machine(self) -> str:
        if self.outputs.sweep_state_machine_arn is None:
            raise self._needs_sweeps()
        return self.outputs.sweep_state_machine_arn

    def _needs_sweeps(self) -> StackNotFound:
        return StackNotFound(
            f"stack {self.stack_name!r} has no Sweep state machine: deploy this version of "
            "runctl (`npx cdk deploy`) to run sweeps"
        )

    # --- one run ---

    def status(self, run_id: str) -> RunState:
        with aws_errors("reading the run"):
            record = self._table.get(run_id)
            try:
                described = self._sfn.describe_execution(
                    executionArn=self.outputs.execution_arn(run_id)
                )
            except self._sfn.exceptions.ExecutionDoesNotExist:
                described = None
        if record is None and described is None:
            self.reader.record(run_id)  # raises RunNotFound, worded for this stack
        return RunState(
            run_id=run_id,
            record=record,
            execution_status=described["status"] if described else None,
            error=described.get("error") if described else None,
            cause=described.get("cause") if described else None,
        )

    def follow(
        self,
        run_id: str,
        on_event: Callable[[RunEvent], None] = lambda event: None,
        poll_seconds: float = 2.0,
        timeout_seconds: float | None = None,
    ) -> RunOutcome:
        """Report status changes, attempts, metrics and log lines until the run ends."""
        self.status(run_id)  # RunNotFound before following nothing
        with aws_errors("following the run"):
            follower = RunFollower(
                self._table, self._logs, self.outputs.log_group, run_id, on_event
            )
            described = follow_execution(
                self._sfn,
                self.outputs.execution_arn(run_id),
                follower,
                timeout_seconds,
                poll_seconds,
            )
            outcome = RunOutcome(
                run_id=run_id,
                execution_status=described["status"],
                record=self._table.get(run_id),
                error=described.get("error"),
                cause=described.get("cause"),
            )
        on_event(RunEvent("end", outcome.status, {"outcome": outcome}))
        return outcome

    def logs(
        self, run_id: str, follow: bool = False, poll_seconds: float = 2.0
    ) -> Iterator[LogLine]:
        """Every attempt's log lines in order; with `follow`, new ones until the run ends."""
        with aws_errors("reading the logs"):
            reader = LogReader(self._logs, self.outputs.log_group, run_id)
            attempt = 1
            while True:
                state = self.status(run_id)
                record = state.record
                if record is None and state.execution_status != "RUNNING":
                    why = state.execution_failure
                    raise RunNeverStarted(
                        f"run {run_id} never started, so it has no logs ({why})",
                        trace=failure_trace(state.cause),
                    )
                if record is not None:  # (None: submitted, not yet recorded)
                    if attempt == 1:
                        yield from reader.read_build(record)
                    for number in range(attempt, record.attempt + 1):
                        yield from reader.read(number)
                    attempt = record.attempt
                    if record.status in FINAL_STATUSES:
                        return
                if not follow:
                    return
                time.sleep(poll_seconds)

    def stop(self, run_id: str) -> StopResult:
        """Ask the stack's StopRun function to stop the run gracefully (checkpoint, upload,
        finalize); its answer says what it did."""
        self.status(run_id)
        function = self.outputs.stop_function_name
        if function is None:
            raise StopUnavailable(
                f"stack {self.stack_name!r} has no StopRun function: deploy this version of "
                "runctl (`npx cdk deploy`) to stop runs from the CLI"
            )
        with aws_errors("stopping the run"):
            response = self._client("lambda").invoke(
                FunctionName=function,
                InvocationType="RequestResponse",
                Payload=json.dumps({"run_id": run_id}).encode(),
            )
            payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            detail = payload if not isinstance(payload, dict) else payload.get("errorMessage")
            kind = payload.get("errorType", "Error") if isinstance(payload, dict) else "Error"
            raise AwsRequestFailed(f"StopRun could not stop {run_id}: {kind}: {detail}")
        try:
            return StopResult.model_validate(payload)
        except ValidationError as error:
            raise AwsRequestFailed(f"StopRun answered something unexpected: {payload!r}") from error

    # --- reading runs back ---

    def list_runs(
        self, experiment: str | None = None, status: RunStatus | None = None
    ) -> list[RunRecord]:
        with aws_errors("listing runs"):
            return self.reader.list_runs(experiment=experiment, status=status)

    def show(self, run_id: str) -> RunDetails:
        with aws_errors("reading the run"):
            return self.reader.show(run_id)

    def metrics(self, run_id: str) -> MetricSeries:
        with aws_errors("reading the metrics"):
            return self.reader.metrics(run_id)

    def compare(self, run_ids: Sequence[str]) -> Comparison:
        with aws_errors("reading the runs"):
            return self.reader.compare(run_ids)

    def plot(self, run_ids: Sequence[str], path: Path) -> PlotResult:
        with aws_errors("reading the metrics"):
            return self.reader.plot(run_ids, path)

"""`runctl sweep` as functions: parse the sweep options into a SweepSpec over a base RunSpec,
check it as ExpandSweep will, start it, follow it, cancel it (runctl/render_sweeps.py shows it).

    spec = build_sweep_spec(
        base_spec,                                   # the RunSpec every run starts from
        grid=["lr=0.001,0.01,0.1", "batch=32,64"],   # --grid: every combination is a run
        objective="val_loss:min",
        max_parallel=2,
    )
    sweep_id = start_sweep(sfn, sweep_state_machine_arn, spec)   # checked first (SpecError)
    outcome = wait_for_sweep(sfn, SweepFiles(s3, bucket), sweep_state_machine_arn, sweep_id)
    print_sweep_outcome(outcome)                     # runctl/render_sweeps.py

`--random N` samples N runs: from the `--sample` space when given (combined with every grid
point), otherwise from the grid's values instead of crossing them (N distinct combinations).
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from lambdas.dal.runs_table import RunsTable
from lambdas.errors import SweepNotFound as SweepNotFoundInS3
from lambdas.errors import SweepSpecInvalid
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.sweeps import describe_problems, plan_sweep
from lambdas.models.run_record import FINAL_STATUSES, RunStatus
from lambdas.models.run_spec import HyperparameterValue, RunSpec
from lambdas.models.sweep_spec import OBJECTIVE_PATTERN, SweepPlan, SweepSpec
from lambdas.models.sweep_summary import StopSweepOutput, SweepSummary
from runctl.errors import AwsRequestFailed, RunctlError, SweepNotFound
from runctl.packaging import CodePackage, package_directory
from runctl.run_request import RunPlan, RunRequest, plan_run
from runctl.source_info import source_info
from runctl.specs import SpecError, parse_hyperparameter

# --sample NAME=KIND:ARGS
_RANGE_KINDS = ("uniform", "log_uniform", "int_uniform")


def new_sweep_id() -> str:
    """Sortable by start time; short enough that its runs' ids (`<id>-r000`) fit 80 chars."""
    return f"sweep-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def parse_grid(options: Sequence[str]) -> dict[str, list[HyperparameterValue]]:
    """['lr=0.001,0.01', 'batch=32,64'] -> {'lr': [0.001, 0.01], 'batch': [32, 64]}; each
    value is typed as --hp types it (numbers, true/false, else text)."""
    grid: dict[str, list[HyperparameterValue]] = {}
    for option in options:
        name, values = _name_and_rest(option, "--grid", "lr=0.001,0.01,0.1")
        if name in grid:
            raise SpecError(f"--grid {option!r}: {name} is already swept by another --grid")
        grid[name] = [_typed(name, value, "--grid", option) for value in values.split(",")]
    return grid


def parse_sample(options: Sequence[str]) -> dict[str, dict[str, list[Any]]]:
    """['lr=log_uniform:1e-4:1e-1', 'batch=choice:32,64'] -> the random search space."""
    space: dict[str, dict[str, list[Any]]] = {}
    for option in options:
        name, rest = _name_and_rest(option, "--sample", "lr=log_uniform:0.0001:0.1")
        kind, _, arguments = rest.partition(":")
        if kind == "choice" and arguments:
            values = [_typed(name, value, "--sample", option) for value in arguments.split(",")]
            space[name] = {"choice": values}
        elif kind in _RANGE_KINDS and arguments.count(":") == 1:
            bounds = [_typed(name, value, "--sample", option) for value in arguments.split(":")]
            space[name] = {kind: bounds}
        else:
            raise SpecError(
                f"--sample {option!r}: expected NAME=uniform:LOW:HIGH, log_uniform:LOW:HIGH, "
                "int_uniform:LOW:HIGH or choice:A,B,..."
            )
    return space


def parse_objective(text: str) -> str:
    """'val_loss:min' as it is, or SpecError."""
    if not OBJECTIVE_PATTERN.match(text):
        raise SpecError(f"--objective {text!r}: expected METRIC:min or METRIC:max")
    return text


def build_sweep_spec(
    base_spec: RunSpec | dict[str, Any],
    *,
    grid: Sequence[str] = (),
    samples: Sequence[str] = (),
    random: int | None = None,
    seed: int | None = None,
    max_parallel: int | None = None,
    objective: str | None = None,
    tolerated_failure_percentage: float | None = None,
    stop_on_failure: bool = False,
) -> SweepSpec:
    """The SweepSpec the options describe (the `runctl sweep` flags, one argument each)."""
    if random is None and (samples or seed is not None):
        raise SpecError("--sample and --seed need --random N (how many samples to draw)")
    if random is not None and not samples and not grid:
        raise SpecError(
            "--random N draws from --sample NAME=... (or from the --grid values): give one"
        )
    grid_values = parse_grid(grid)
    fields: dict[str, Any] = {
        "base_spec": base_spec,
        "grid": grid_values,
        "stop_on_failure": stop_on_failure,
    }
    if random is not None:
        space: dict[str, Any] = parse_sample(samples)
        if not space:
            # No --sample: draw the runs from the grid's values instead of crossing them.
            space = {name: {"choice": values} for name, values in grid_values.items()}
            fields["grid"] = {}
        fields["random"] = {"samples": random, "space": space, **_given(seed=seed)}
    fields.update(
        _given(
            max_parallel=max_parallel,
            objective=parse_objective(objective) if objective is not None else None,
            tolerated_failure_percentage=tolerated_failure_percentage,
        )
    )
    try:
        return SweepSpec.model_validate(fields)
    except ValidationError as error:
        raise SpecError(f"invalid sweep: {describe_problems(error)}") from error


@dataclass(frozen=True)
class SweepOptions:
    """The `runctl sweep` flags as typed; `spec` turns them into the SweepSpec over a base."""

    grid: tuple[str, ...] = ()
    samples: tuple[str, ...] = ()
    random: int | None = None
    seed: int | None = None
    max_parallel: int | None = None
    objective: str | None = None
    tolerated_failure_percentage: float | None = None
    stop_on_failure: bool = False

    def spec(self, base_spec: RunSpec | dict[str, Any]) -> SweepSpec:
        return build_sweep_spec(
            base_spec,
            grid=self.grid,
            samples=self.samples,
            random=self.random,
            seed=self.seed,
            max_parallel=self.max_parallel,
            objective=self.objective,
            tolerated_failure_percentage=self.tolerated_failure_percentage,
            stop_on_failure=self.stop_on_failure,
        )


@dataclass(frozen=True)
class PreparedSweep:
    """A sweep checked whole and its project packaged: only the code upload and the start are
    left (the cloud client and local mode each do those their way)."""

    sweep_id: str
    plan: RunPlan
    package: CodePackage
    options: SweepOptions

    def spec(
        self,
        code_uri: str,
        data_uris: Mapping[str, str] | None = None,
        context: tuple[str, str] | None = None,
    ) -> SweepSpec:
        """The SweepSpec to start, once the package is uploaded under `code_uri` (local data
        folders, in local mode, under `data_uris`; a build context as `context`)."""
        source = source_info(self.plan.project_root)
        return self.options.spec(
            self.plan.spec(code_uri, self.package.sha256, source, data_uris, context)
        )


def prepare_sweep(
    request: RunRequest,
    options: SweepOptions,
    sweep_id: str | None = None,
    local_data: bool = False,
) -> PreparedSweep:
    """Every check the sweep gets (its base RunSpec, its options, its size) with a stand-in for
    the code, then the project packaged: a wrong sweep is refused before anything is uploaded.
    `local_data`: local folders as --data are allowed (local mode uploads them)."""
    plan = plan_run(request, local_data)
    sweep_id = sweep_id or new_sweep_id()
    checked_sweep(options.spec(plan.pending_spec()), sweep_id)
    return PreparedSweep(sweep_id, plan, package_directory(plan.project_root), options)


def checked_sweep(spec: SweepSpec | dict[str, Any], sweep_id: str) -> SweepSpec:
    """The spec after every check ExpandSweep makes without AWS (each run's RunSpec, the sizes,
    the sweep id): a wrong sweep is refused before it starts."""
    try:
        parsed = spec if isinstance(spec, SweepSpec) else SweepSpec.model_validate(spec)
        plan_sweep(parsed, sweep_id)
    except ValidationError as error:
        raise SpecError(f"invalid sweep: {describe_problems(error)}") from error
    except SweepSpecInvalid as error:
        raise SpecError(f"invalid sweep: {error}") from error
    return parsed


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    execution_status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    error: str | None  # Runctl.SweepFailed, Runctl.SweepCancelled, SweepSpecInvalid, ...
    cause: str | None
    summary: SweepSummary | None  # None while running, or when it failed before it had runs

    @property
    def running(self) -> bool:
        return self.execution_status == "RUNNING"


def sweep_execution_arn(state_machine_arn: str, sweep_id: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{sweep_id}"


def start_sweep(
    sfn: Any, state_machine_arn: str, spec: SweepSpec | dict[str, Any], sweep_id: str | None = None
) -> str:
    """Check the sweep as ExpandSweep will (SpecError if wrong), then start the Sweep execution
    named `sweep_id` (a new id when None). Returns the sweep id."""
    sweep_id = sweep_id or new_sweep_id()
    checked = checked_sweep(spec, sweep_id)
    sfn.start_execution(
        stateMachineArn=state_machine_arn,
        name=sweep_id,
        input=checked.model_dump_json(exclude_unset=True),
    )
    return sweep_id


def describe_sweep(
    sfn: Any, files: SweepFiles, state_machine_arn: str, sweep_id: str
) -> SweepOutcome:
    """The sweep now: its execution's status and, once it has ended, its summary."""
    try:
        described = sfn.describe_execution(
            executionArn=sweep_execution_arn(state_machine_arn, sweep_id)
        )
    except sfn.exceptions.ExecutionDoesNotExist:
        raise SweepNotFound(
            f"no sweep {sweep_id!r}: `runctl sweeps list` shows the sweeps there are"
        ) from None
    running = described["status"] == "RUNNING"
    return SweepOutcome(
        sweep_id=sweep_id,
        execution_status=described["status"],
        error=described.get("error"),
        cause=described.get("cause"),
        summary=None if running else files.summary(sweep_id),
    )


def wait_for_sweep(
    sfn: Any,
    files: SweepFiles,
    state_machine_arn: str,
    sweep_id: str,
    timeout_seconds: float = 24 * 3600,
    poll_seconds: float = 5,
    on_poll: Callable[[], None] = lambda: None,
) -> SweepOutcome:
    """Until the Sweep execution ends (TimeoutError after `timeout_seconds`); then its summary.
    `on_poll` runs at every poll (progress displays)."""
    deadline = time.monotonic() + timeout_seconds
    while (outcome := describe_sweep(sfn, files, state_machine_arn, sweep_id)).running:
        on_poll()
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep {sweep_id} still running after {timeout_seconds} s")
        time.sleep(poll_seconds)
    on_poll()
    return outcome


@dataclass
class SweepProgress:
    """How far a sweep's runs are, from its plan and their records (for a live line)."""

    sweep_id: str
    total: int | None = None  # None until ExpandSweep has written the plan
    statuses: dict[str, RunStatus] = field(default_factory=dict)  # run id -> once recorded

    @property
    def finished(self) -> int:
        return sum(status in FINAL_STATUSES for status in self.statuses.values())

    def line(self) -> str:
        if self.total is None:
            return f"sweep {self.sweep_id}: planning"
        counts = Counter(self.statuses.values())
        finals = ", ".join(
            f"{counts[status]} {status.value.lower()}"
            for status in sorted(FINAL_STATUSES)
            if counts[status]
        )
        running = len(self.statuses) - self.finished
        return (
            f"sweep {self.sweep_id}: {self.finished} of {self.total} runs done"
            + (f" ({finals})" if finals else "")
            + f", {running} running"
        )


class SweepWatcher:
    """Polls a sweep's runs for SweepProgress: the plan once, then the runs not yet final (their
    statuses in one batched read per 100 runs)."""

    def __init__(self, files: SweepFiles, table: RunsTable, sweep_id: str) -> None:
        self.files = files
        self.table = table
        self.progress = SweepProgress(sweep_id)
        self._plan: SweepPlan | None = None

    def poll(self) -> SweepProgress:
        if self._plan is None:
            try:
                self._plan = self.files.plan(self.progress.sweep_id)
            except SweepNotFoundInS3:
                return self.progress  # ExpandSweep has not written it yet
            self.progress.total = self._plan.total_runs
        unfinished = [
            run.run_id
            for run in self._plan.runs
            if self.progress.statuses.get(run.run_id) not in FINAL_STATUSES
        ]
        self.progress.statuses.update(self.table.statuses(unfinished))
        return self.progress


def list_sweeps(sfn: Any, state_machine_arn: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest sweeps first: name (the sweep id), status, startDate, stopDate."""
    response = sfn.list_executions(stateMachineArn=state_machine_arn, maxResults=limit)
    return list(response["executions"])


def wait_for_plan(
    sfn: Any,
    files: SweepFiles,
    state_machine_arn: str,
    sweep_id: str,
    timeout_seconds: float = 120,
    poll_seconds: float = 1,
) -> bool:
    """Whether the sweep has a plan, once ExpandSweep has written it (True) or the sweep has
    ended without one (False): a cancel right after the start must not find "no such sweep"."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            files.plan(sweep_id)
            return True
        except SweepNotFoundInS3:
            if not describe_sweep(sfn, files, state_machine_arn, sweep_id).running:
                return False
        if time.monotonic() > deadline:
            raise RunctlError(
                f"sweep {sweep_id} has not planned its runs after {timeout_seconds:g} s: try "
                "again, or look at its execution in the Step Functions console"
            )
        time.sleep(poll_seconds)


def cancel_sweep(
    sfn: Any,
    files: SweepFiles,
    state_machine_arn: str,
    lambda_client: Any,
    function_name: str,
    sweep_id: str,
    poll_seconds: float = 1,
) -> StopSweepOutput:
    """Invoke the stack's StopSweep: no more runs start, the running ones stop gracefully. A
    sweep that just started is given the time to plan its runs first."""
    if not wait_for_plan(sfn, files, state_machine_arn, sweep_id, poll_seconds=poll_seconds):
        return StopSweepOutput(
            sweep_id=sweep_id,
            stop=None,
            message=f"sweep {sweep_id} ended before it planned any run: nothing to cancel",
        )
    return _invoke_stop_sweep(lambda_client, function_name, sweep_id)


def _invoke_stop_sweep(lambda_client: Any, function_name: str, sweep_id: str) -> StopSweepOutput:
    response = lambda_client.invoke(
        FunctionName=function_name, Payload=json.dumps({"sweep_id": sweep_id}).encode()
    )
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        detail = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise AwsRequestFailed(f"StopSweep could not cancel {sweep_id}: {detail}")
    return StopSweepOutput.model_validate(payload)


def _name_and_rest(option: str, flag: str, example: str) -> tuple[str, str]:
    name, separator, rest = option.partition("=")
    if not separator or not name or not rest:
        raise SpecError(f"{flag} {option!r}: expected NAME=..., for example {flag} {example}")
    return name, rest


def _typed(name: str, raw: str, flag: str, option: str) -> HyperparameterValue:
    if not raw:
        raise SpecError(f"{flag} {option!r}: an empty value in the list")
    return parse_hyperparameter(f"{name}={raw}")[1]


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


__all__ = [
    "PreparedSweep",
    "SweepOptions",
    "SweepOutcome",
    "SweepProgress",
    "SweepWatcher",
    "build_sweep_spec",
    "cancel_sweep",
    "checked_sweep",
    "describe_sweep",
    "list_sweeps",
    "new_sweep_id",
    "parse_grid",
    "parse_objective",
    "parse_sample",
    "prepare_sweep",
    "start_sweep",
    "sweep_execution_arn",
    "wait_for_sweep",
]

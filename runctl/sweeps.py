"""`runctl sweep` as functions: parse the sweep options into a SweepSpec over a base RunSpec,
check it as ExpandSweep will, start it, wait for it, cancel it, and show its summary as a table.

    spec = build_sweep_spec(
        base_spec,                                   # the RunSpec every run starts from
        grid=["lr=0.001,0.01,0.1", "batch=32,64"],   # --grid: every combination is a run
        objective="val_loss:min",
        max_parallel=2,
    )
    sweep_id = start_sweep(sfn, sweep_state_machine_arn, spec)   # checked first (SpecError)
    outcome = wait_for_sweep(sfn, SweepFiles(s3, bucket), sweep_state_machine_arn, sweep_id)
    console.print(sweep_summary_table(outcome.summary))

`--random N` samples N runs: from the `--sample` space when given (combined with every grid
point), otherwise from the grid's values instead of crossing them (N distinct combinations).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from rich.table import Table

from lambdas.errors import SweepSpecInvalid
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.sweeps import describe_problems, plan_sweep
from lambdas.models.run_spec import HyperparameterValue, RunSpec
from lambdas.models.sweep_spec import OBJECTIVE_PATTERN, SweepSpec
from lambdas.models.sweep_summary import StopSweepOutput, SweepRunStatus, SweepSummary
from runctl.client.costs import format_usd
from runctl.client.formatting import format_duration, format_value
from runctl.errors import AwsRequestFailed
from runctl.specs import SpecError, parse_hyperparameter

# --sample NAME=KIND:ARGS
_RANGE_KINDS = ("uniform", "log_uniform", "int_uniform")
_STATUS_STYLE = {
    SweepRunStatus.SUCCEEDED: "green",
    SweepRunStatus.FAILED: "bold red",
    SweepRunStatus.CANCELLED: "yellow",
    SweepRunStatus.SKIPPED: "dim",
    SweepRunStatus.RUNNING: "cyan",
}
_VERDICT_STYLE = {"succeeded": "bold green", "failed": "bold red", "cancelled": "bold yellow"}
_ERROR_WIDTH = 60


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
    summary: SweepSummary | None  # None when the sweep failed before it had runs


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


def wait_for_sweep(
    sfn: Any,
    files: SweepFiles,
    state_machine_arn: str,
    sweep_id: str,
    timeout_seconds: float = 24 * 3600,
    poll_seconds: float = 5,
) -> SweepOutcome:
    """Until the Sweep execution ends (TimeoutError after `timeout_seconds`); then its summary."""
    deadline = time.monotonic() + timeout_seconds
    arn = sweep_execution_arn(state_machine_arn, sweep_id)
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep {sweep_id} still running after {timeout_seconds} s")
        time.sleep(poll_seconds)
    return SweepOutcome(
        sweep_id=sweep_id,
        execution_status=described["status"],
        error=described.get("error"),
        cause=described.get("cause"),
        summary=files.summary(sweep_id),
    )


def cancel_sweep(lambda_client: Any, function_name: str, sweep_id: str) -> StopSweepOutput:
    """Invoke the stack's StopSweep: no more runs start, the running ones stop gracefully."""
    response = lambda_client.invoke(
        FunctionName=function_name, Payload=json.dumps({"sweep_id": sweep_id}).encode()
    )
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        detail = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise AwsRequestFailed(f"StopSweep could not cancel {sweep_id}: {detail}")
    return StopSweepOutput.model_validate(payload)


def sweep_summary_table(summary: SweepSummary) -> Table:
    """Every run (its swept values, status, objective value, cost, time, why it failed), the best
    one starred; the title says how the sweep ended."""
    verdict = summary.verdict.value
    table = Table(
        title=f"sweep {summary.sweep_id}: [{_VERDICT_STYLE[verdict]}]{verdict.upper()}[/] - "
        f"{summary.message}",
        title_justify="left",
        caption=_caption(summary),
        caption_justify="left",
    )
    names = list(dict.fromkeys(name for run in summary.runs for name in run.swept))
    table.add_column("run")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("status")
    if summary.objective:
        table.add_column(summary.objective, justify="right")
    table.add_column("cost", justify="right")
    table.add_column("time", justify="right")
    table.add_column("error", max_width=_ERROR_WIDTH, overflow="ellipsis", no_wrap=True)
    best_id = summary.best.run_id if summary.best else None
    for run in sorted(summary.runs, key=lambda item: item.index):
        marker = " *" if run.run_id == best_id else ""
        cells = [f"{run.run_id}{marker}"]
        cells += [_value(run.swept.get(name)) for name in names]
        cells.append(f"[{_STATUS_STYLE[run.status]}]{run.status.value}[/]")
        if summary.objective:
            cells.append(_value(run.objective_value))
        cost = format_usd(run.cost_usd) if run.cost_usd is not None else "-"
        cells += [cost, format_duration(run.duration_seconds), run.error or ""]
        table.add_row(*cells, style="bold" if run.run_id == best_id else None)
    return table


def _caption(summary: SweepSummary) -> str:
    parts = []
    if summary.best is not None:
        parts.append(f"* best by {summary.objective}: {summary.best.run_id}")
    if summary.total_cost_usd is not None:
        parts.append(f"total cost {format_usd(summary.total_cost_usd)} (EC2 instance time)")
    policy = f"{summary.tolerated_failure_percentage:g}% failures tolerated"
    parts.append(policy + (", stop on failure" if summary.stop_on_failure else ""))
    return "; ".join(parts)


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


def _value(value: Any) -> str:
    return "-" if value is None else format_value(value)


__all__ = [
    "SweepOutcome",
    "build_sweep_spec",
    "cancel_sweep",
    "checked_sweep",
    "new_sweep_id",
    "parse_grid",
    "parse_objective",
    "parse_sample",
    "start_sweep",
    "sweep_execution_arn",
    "sweep_summary_table",
    "wait_for_sweep",
]

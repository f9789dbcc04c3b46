"""`runctl local ...`: run a script through the real state machine on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from runctl.local.deploy import LocalSettings
from runctl.local.faults import Fault
from runctl.local.session import LocalSession, RunEvent, RunOutcome
from runctl.packaging import package_directory
from runctl.specs import SpecError, build_spec, parse_duration, parse_hyperparameter

local_app = typer.Typer(help="Run locally: same state machine and Lambdas, emulated AWS.")
console = Console(highlight=False)

_STATUS_STYLE = {"SUCCEEDED": "bold green", "FAILED": "bold red", "CANCELLED": "bold yellow"}


def _print_event(event: RunEvent) -> None:
    if event.kind == "status":
        console.print(f"[bold cyan]●[/] status [bold]{event.text}[/]")
    elif event.kind == "metric":
        values = "  ".join(f"{key}={value}" for key, value in event.data.items())
        console.print(f"  [magenta]metric[/] {values}")
    elif event.kind == "log":
        console.print(f"  {event.text}", markup=False, style="dim")


def _print_outcome(outcome: RunOutcome) -> None:
    record = outcome.record
    style = _STATUS_STYLE.get(outcome.status, "bold")
    console.print(f"\n[{style}]{outcome.status}[/] run {outcome.run_id}")
    if record is not None:
        if record.end_reason is not None:
            console.print(f"  why it stopped: {record.end_reason.value}")
        if record.duration_seconds is not None:
            console.print(f"  duration: {record.duration_seconds:.1f} s")
        if record.final_metrics:
            metrics = "  ".join(f"{k}={v}" for k, v in record.final_metrics.items())
            console.print(f"  final metrics: {metrics}")
        if record.outputs_uri:
            console.print(f"  outputs: {record.outputs_uri}")
        if record.error and outcome.status != "SUCCEEDED":
            console.print(f"  error: {record.error}", markup=False)
        if record.stderr_tail and outcome.status != "SUCCEEDED":
            console.print("  stderr (tail):", markup=False)
            console.print(record.stderr_tail.rstrip(), markup=False, style="red")
    elif outcome.cause:
        console.print(f"  {outcome.error}: {outcome.cause}", markup=False)
    if outcome.outputs_dir is not None:
        console.print(f"  local copy of outputs: {outcome.outputs_dir}")


@local_app.command("run")
def run(
    script: Annotated[Path, typer.Argument(help="the training script, inside your project")],
    script_args: Annotated[
        list[str] | None, typer.Argument(help="after --: passed to the script verbatim")
    ] = None,
    hp: Annotated[
        list[str] | None, typer.Option("--hp", help="hyperparameter key=value (repeatable)")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="experiment name")] = None,
    instance_type: Annotated[
        list[str] | None, typer.Option("--instance-type", help="in order of preference")
    ] = None,
    spot: Annotated[bool, typer.Option("--spot/--on-demand", help="market")] = True,
    max_runtime: Annotated[str | None, typer.Option(help="e.g. 30m, 6h")] = None,
    project_dir: Annotated[
        Path | None, typer.Option(help="what to package (default: the script's folder)")
    ] = None,
    hyperparameters_as_args: Annotated[
        bool, typer.Option(help="also pass each --hp as '--key value' to the script")
    ] = False,
    work_dir: Annotated[Path, typer.Option(help="local mode's scratch space")] = Path(
        ".runctl-local"
    ),
    interrupt_after: Annotated[
        list[float] | None,
        typer.Option(help="send a spot interruption warning N s after the start (repeatable)"),
    ] = None,
    rebalance_after: Annotated[
        list[float] | None,
        typer.Option(help="send a rebalance recommendation N s after the start (repeatable)"),
    ] = None,
    kill_instance_after: Annotated[
        list[float] | None,
        typer.Option(help="lose the instance without warning N s after the start (repeatable)"),
    ] = None,
) -> None:
    """Run SCRIPT through the TrainRun state machine on this machine and wait for it."""
    try:
        script = script.resolve(strict=True)
    except FileNotFoundError:
        _fail(f"script not found: {script}")
    root = (project_dir or script.parent).resolve()
    if not script.is_relative_to(root):
        _fail(f"{script} is not inside the project directory {root}")
    try:
        hyperparameters = dict(parse_hyperparameter(item) for item in hp or [])
        fields: dict[str, object] = {
            "code": {"s3_uri": "s3://placeholder-bucket/code/pending.tar.gz"},
            "entry_point": script.relative_to(root).as_posix(),
            "args": list(script_args or []),
            "hyperparameters": hyperparameters,
            "hyperparameters_as_args": hyperparameters_as_args,
            "market": "spot" if spot else "on-demand",
            "experiment": experiment,
        }
        if instance_type:
            fields["instance_types"] = instance_type
        if max_runtime:
            fields["limits"] = {"max_runtime_seconds": parse_duration(max_runtime)}
        build_spec(fields)  # fail fast, before starting the emulator
    except SpecError as error:
        _fail(str(error))

    package = package_directory(root)
    console.print(f"[bold]runctl local[/] packaging {root} ({len(package.files)} files)")
    with LocalSession(work_dir.resolve(), LocalSettings()) as session:
        code_uri, _ = session.upload_code(package)
        fields["code"] = {"s3_uri": code_uri, "sha256": package.sha256}
        spec = build_spec(fields)
        faults = [
            *(Fault("interrupt", seconds) for seconds in interrupt_after or []),
            *(Fault("rebalance", seconds) for seconds in rebalance_after or []),
            *(Fault("kill", seconds) for seconds in kill_instance_after or []),
        ]
        run_id = session.start(spec.model_dump(mode="json", exclude_none=True), faults=faults)
        console.print(f"started run [bold]{run_id}[/]")
        outcome = session.wait(run_id, on_event=_print_event)
    _print_outcome(outcome)
    if outcome.status != "SUCCEEDED":
        raise typer.Exit(code=1)


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code=2)

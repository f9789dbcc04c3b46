"""`runctl local ...`: run a script through the real state machine on this machine, and read
back the runs made that way (they are kept in the work dir's history)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from runctl.cli_options import run_options
from runctl.client.client import RunState
from runctl.client.reading import RunReader
from runctl.client.store import AwsRunStore
from runctl.local.history import LocalHistory
from runctl.packaging import package_directory
from runctl.render import FollowDisplay, console, print_outcome, print_state
from runctl.run_request import RunRequest, plan_run
from runctl.runs_commands import make_runs_app
from runctl.source_info import source_info

local_app = typer.Typer(
    help="Run locally: same state machine and Lambdas, emulated AWS.", no_args_is_help=True
)
LOCAL_HISTORY_WHERE = "local history"


@dataclass(frozen=True)
class LocalOptions:
    work_dir: Path

    def reader(self) -> RunReader:
        return RunReader(LocalHistory(self.work_dir), where=LOCAL_HISTORY_WHERE)


@local_app.callback()
def local_options(
    ctx: typer.Context,
    work_dir: Annotated[
        Path,
        typer.Option(envvar="RUNCTL_LOCAL_DIR", help="local mode's scratch space and history"),
    ] = Path(".runctl-local"),
) -> None:
    ctx.obj = LocalOptions(work_dir.resolve())


def _local(ctx: typer.Context) -> LocalOptions:
    options = ctx.find_object(LocalOptions)
    assert options is not None  # set by local_options, which runs before every local command
    return options


@local_app.command("run")
@run_options
def run(
    ctx: typer.Context,
    request: RunRequest,
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
    """Run SCRIPT through the TrainRun state machine on this machine and wait for it.

    Takes the same flags as `runctl submit`: change `local run` to `submit` to go to the cloud.
    """
    # The emulator (moto) takes a second to import: only `local run` pays for it.
    from runctl.local.deploy import LocalSettings
    from runctl.local.faults import Fault
    from runctl.local.session import LocalSession

    plan = plan_run(request)  # fail fast, before starting the emulator
    work_dir = _local(ctx).work_dir
    package = package_directory(plan.project_root)
    console.print(
        f"[bold]runctl local[/] packaging {plan.project_root} ({len(package.files)} files)",
        markup=True,
    )
    faults = [
        *(Fault("interrupt", seconds) for seconds in interrupt_after or []),
        *(Fault("rebalance", seconds) for seconds in rebalance_after or []),
        *(Fault("kill", seconds) for seconds in kill_instance_after or []),
    ]
    with LocalSession(work_dir, LocalSettings()) as session:
        code_uri, _ = session.upload_code(package)
        spec = plan.spec(code_uri, package.sha256, source_info(plan.project_root))
        run_id = session.start(spec.model_dump(mode="json", exclude_none=True), faults=faults)
        console.print(f"started run [bold]{run_id}[/]")
        with FollowDisplay() as display:
            outcome = session.wait(run_id, on_event=display.handle)
        if outcome.record is not None:
            store = AwsRunStore(session.table, session.s3, session.stack.bucket)
            LocalHistory(work_dir).save(outcome.record, store.metric_rows(outcome.record))
    print_outcome(outcome)
    if outcome.status != "SUCCEEDED":
        raise typer.Exit(code=1)


@local_app.command("status")
def status(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN")]) -> None:
    """How a local run ended (from the local history)."""
    record = _local(ctx).reader().record(run_id)
    print_state(RunState(run_id=run_id, record=record, execution_status=None))


local_app.add_typer(
    make_runs_app(lambda ctx: _local(ctx).reader(), where=LOCAL_HISTORY_WHERE), name="runs"
)

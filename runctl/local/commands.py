"""`runctl local ...`: run a script through the real state machine on this machine, and read
back the runs made that way (they are kept in the work dir's history)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lambdas.models.run_record import RunRecord
from runctl.cli_options import run_options, sweep_options
from runctl.client.client import RunState
from runctl.client.reading import RunReader
from runctl.client.store import AwsRunStore
from runctl.data_folders import DataFolder, scan_data_folder
from runctl.errors import EXIT_INTERRUPTED, NoContainerEngine, SweepNotFound
from runctl.local.history import LocalHistory
from runctl.packaging import CodePackage, package_directory
from runctl.render import FollowDisplay, console, print_outcome, print_state
from runctl.render_sweeps import (
    SweepDisplay,
    print_sweep_outcome,
    sweep_summaries_table,
    sweep_summary_table,
)
from runctl.run_request import RunPlan, RunRequest, plan_run
from runctl.runs_commands import Verbose, make_runs_app
from runctl.source_info import source_info
from runctl.sweeps import SweepOptions, SweepOutcome, prepare_sweep

if TYPE_CHECKING:
    from runctl.local.session import LocalSession
    from runctl.local.sweeps import LocalSweeps

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
    no_capacity: Annotated[
        list[str] | None,
        typer.Option(
            metavar="TYPE[:spot|:on-demand]",
            help="EC2 refuses this instance type (in this market; both without one) with "
            "InsufficientInstanceCapacity, HTTP 500, as AWS does (repeatable)",
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run SCRIPT through the TrainRun state machine on this machine and wait for it.

    Takes the same flags as `runctl submit`: change `local run` to `submit` to go to the cloud.
    """
    # The emulator (moto) takes a second to import: only `local run` pays for it.
    from runctl.local.capacity import CapacitySpecInvalid, NoCapacity
    from runctl.local.deploy import LocalSettings
    from runctl.local.faults import Fault
    from runctl.local.session import LocalSession

    try:
        refused_pools = [NoCapacity.parse(text) for text in no_capacity or []]
    except CapacitySpecInvalid as error:
        raise typer.BadParameter(str(error), param_hint="--no-capacity") from error
    plan = plan_run(request, local_data=True)  # fail fast, before starting the emulator
    _check_container_engine(plan)
    folders = [scan_data_folder(item) for item in plan.local_data]  # an empty one, too
    work_dir = _local(ctx).work_dir
    package = package_directory(plan.project_root)
    _say_packaged(plan, package)
    faults = [
        *(Fault("interrupt", seconds) for seconds in interrupt_after or []),
        *(Fault("rebalance", seconds) for seconds in rebalance_after or []),
        *(Fault("kill", seconds) for seconds in kill_instance_after or []),
    ]
    with LocalSession(work_dir, LocalSettings()) as session:
        for pool in refused_pools:
            session.emulator.capacity.refuse(pool)
        code_uri, _ = session.upload_code(package)
        data_uris = _upload_data(session, folders)
        context, _ = plan.upload_context(session.upload_code)
        spec = plan.spec(
            code_uri, package.sha256, source_info(plan.project_root), data_uris, context
        )
        session.check_data_buckets(spec)
        run_id = session.start(spec.model_dump(mode="json", exclude_none=True), faults=faults)
        console.print(f"started run [bold]{run_id}[/]")
        with FollowDisplay() as display:
            outcome = session.wait(run_id, on_event=display.handle)
        if outcome.record is not None:
            _keep(session, work_dir, [outcome.record])
    print_outcome(outcome, verbose)
    if outcome.status != "SUCCEEDED":
        raise typer.Exit(code=1)


@local_app.command("sweep")
@run_options
@sweep_options
def sweep(
    ctx: typer.Context, request: RunRequest, sweep: SweepOptions, verbose: Verbose = False
) -> None:
    """Run a sweep of SCRIPT through the Sweep state machine on this machine and wait for it.

    Takes the same flags as `runctl sweep`. Ctrl-C cancels the sweep: its runs stop gracefully
    and the summary is still shown. The runs and the summary go to the local history.
    """
    from runctl.local.deploy import LocalSettings
    from runctl.local.session import LocalSession
    from runctl.local.sweeps import LocalSweeps, local_parallel_limit

    # Every check, before starting the emulator
    prepared = prepare_sweep(request, sweep, local_data=True)
    _check_container_engine(prepared.plan)
    folders = [scan_data_folder(item) for item in prepared.plan.local_data]
    sweep_id = prepared.sweep_id
    _say_packaged(prepared.plan, prepared.package)
    work_dir = _local(ctx).work_dir
    with LocalSession(work_dir, LocalSettings()) as session:
        code_uri, _ = session.upload_code(prepared.package)
        context, _ = prepared.plan.upload_context(session.upload_code)
        spec = prepared.spec(code_uri, _upload_data(session, folders), context)
        session.check_data_buckets(spec.base_spec)
        sweeps = LocalSweeps(session)
        sweeps.start(spec, sweep_id)
        console.print(f"started sweep [bold]{sweep_id}[/] [dim](Ctrl-C cancels it)[/]")
        limit = local_parallel_limit()
        if spec.max_parallel > limit:
            console.print(
                f"[dim]runs {limit} at a time here, not {spec.max_parallel}: "
                "local runs share this machine's CPUs[/]"
            )
        outcome, interrupted = _wait_or_cancel(sweeps, sweep_id)
        if outcome.summary is not None:
            records = [session.table.get(run.run_id) for run in outcome.summary.runs]
            _keep(session, work_dir, [record for record in records if record is not None])
            LocalHistory(work_dir).save_sweep(outcome.summary)
    print_sweep_outcome(outcome, verbose)
    if interrupted:
        raise typer.Exit(code=EXIT_INTERRUPTED)
    if outcome.execution_status != "SUCCEEDED":
        raise typer.Exit(code=1)


def _wait_or_cancel(sweeps: LocalSweeps, sweep_id: str) -> tuple[SweepOutcome, bool]:
    """Until the sweep ends, and whether Ctrl-C cut in: the first Ctrl-C cancels the sweep
    gracefully and waits for its summary (the emulator goes away with this process, so the sweep
    cannot go on without it); a second one leaves at once."""
    # A week: local sweeps end when their runs do; Ctrl-C is the way out.
    timeout = 7 * 24 * 3600
    try:
        with SweepDisplay(sweep_id) as display:
            return sweeps.wait(sweep_id, timeout, on_progress=display.update), False
    except KeyboardInterrupt:
        console.print(
            f"\ncancelling sweep {sweep_id}: its runs checkpoint and stop (Ctrl-C again quits "
            "at once; the emulator and its instances end with it)",
            markup=False,
        )
    sweeps.cancel(sweep_id)
    with SweepDisplay(sweep_id) as display:
        return sweeps.wait(sweep_id, timeout, on_progress=display.update), True


def _check_container_engine(plan: RunPlan) -> None:
    """A container run needs this machine's Docker engine: refused without one, before anything
    starts (local mode never runs the script outside its container)."""
    if plan.build is None and "container" not in plan.fields:
        return
    from runctl.local.container_engine import engine_problem

    problem = engine_problem()
    if problem is not None:
        raise NoContainerEngine(f"cannot run this container run locally: {problem}")


def _say_packaged(plan: RunPlan, package: CodePackage) -> None:
    console.print(
        f"[bold]runctl local[/] packaging {plan.project_root} ({len(package.files)} files)",
        markup=True,
    )


def _upload_data(session: LocalSession, folders: list[DataFolder]) -> dict[str, str]:
    """Each local --data folder into the emulated runctl bucket: its URI by data name."""
    uris: dict[str, str] = {}
    for folder in folders:
        upload = session.upload_data(folder)
        hidden = f", {folder.hidden} hidden left out" if folder.hidden else ""
        done = f"uploaded {upload.bytes:,} bytes" if upload.files else "unchanged, nothing uploaded"
        console.print(
            f"data {folder.name}: {len(folder.files)} files{hidden}, {done} -> {upload.s3_uri}",
            markup=False,
        )
        uris[folder.name] = upload.s3_uri
    return uris


def _keep(session: LocalSession, work_dir: Path, records: list[RunRecord]) -> None:
    """Finished runs into the local history, with their metrics (the emulator is going away)."""
    store = AwsRunStore(session.table, session.s3, session.stack.bucket)
    history = LocalHistory(work_dir)
    for record in records:
        history.save(record, store.metric_rows(record))


@local_app.command("status")
def status(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN")]) -> None:
    """How a local run ended (from the local history)."""
    record = _local(ctx).reader().record(run_id)
    print_state(RunState(run_id=run_id, record=record, execution_status=None))


local_app.add_typer(
    make_runs_app(lambda ctx: _local(ctx).reader(), where=LOCAL_HISTORY_WHERE), name="runs"
)

local_sweeps_app = typer.Typer(help="Sweeps run with `runctl local sweep` (local history).")


@local_sweeps_app.command("list")
def list_sweeps(ctx: typer.Context) -> None:
    """The local sweeps, newest first."""
    summaries = LocalHistory(_local(ctx).work_dir).list_sweeps()
    if not summaries:
        console.print("no local sweeps yet")
        return
    console.print(sweep_summaries_table(summaries))


@local_sweeps_app.command("show")
def show_sweep(
    ctx: typer.Context, sweep_id: Annotated[str, typer.Argument(metavar="SWEEP")]
) -> None:
    """A local sweep's summary: every run, its values, status, objective; the best starred."""
    summary = LocalHistory(_local(ctx).work_dir).sweep(sweep_id)
    if summary is None:
        raise SweepNotFound(
            f"no sweep {sweep_id!r} in the local history: `runctl local sweeps list` shows them"
        )
    console.print(sweep_summary_table(summary))


local_app.add_typer(local_sweeps_app, name="sweeps")


@local_app.command("clean")
def clean(
    ctx: typer.Context,
    everything: Annotated[
        bool,
        typer.Option(
            "--all",
            help="also the local history and downloaded outputs: all of the work dir that no "
            "running local session or instance uses",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before --all")] = False,
) -> None:
    """Remove what local sessions that were killed left behind: instance folders and run work
    folders that no running process uses (a session that ends removes its own)."""
    from rich.filesize import decimal

    from runctl.local.instances import remove_path

    work_dir = _local(ctx).work_dir
    if not work_dir.is_dir():
        _say(f"nothing to clean: no {work_dir}")
        return
    if everything and not yes:
        typer.confirm(f"Remove the local history and outputs in {work_dir} as well?", abort=True)
    removable, in_use = _leftovers(work_dir, everything)
    freed = 0
    for path in removable:
        size = remove_path(path)
        freed += size
        done = "could not remove all of" if os.path.lexists(path) else "removed"
        _say(f"{done} {path.relative_to(work_dir)} ({decimal(size)})")
    for path, why in in_use:
        _say(f"kept {path.relative_to(work_dir)}: in use ({why})")
    if everything:
        _remove_if_empty(work_dir)
    if removable:
        _say(f"freed {decimal(freed)} in {work_dir}")
    else:
        _say(f"nothing to clean in {work_dir}")


def _say(line: str) -> None:
    console.print(line, markup=False, soft_wrap=True)  # paths stay whole, to copy


def _remove_if_empty(work_dir: Path) -> None:
    """The folders `local clean --all` emptied, and the work dir itself but for an unheld lock."""
    from runctl.local.instances import SESSION_LOCK, lock_held

    for folder in (work_dir / "instances", work_dir / "work"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    lock = work_dir / SESSION_LOCK
    if [path.name for path in work_dir.iterdir()] == [SESSION_LOCK] and not lock_held(lock):
        lock.unlink()
    if not any(work_dir.iterdir()):
        work_dir.rmdir()


def _leftovers(work_dir: Path, everything: bool) -> tuple[list[Path], list[tuple[Path, str]]]:
    """What `local clean` removes, and what it keeps as in use, with why."""
    from runctl.local.instances import (
        INSTANCE_LOCK,
        SESSION_LOCK,
        instance_home_in_use,
        live_instance_ids,
        lock_held,
        run_dir_owner,
    )

    live = live_instance_ids()
    session_running = lock_held(work_dir / SESSION_LOCK)
    removable: list[Path] = []
    in_use: list[tuple[Path, str]] = []
    busy_homes: set[Path] = set()
    for home in _entries(work_dir / "instances"):
        if instance_home_in_use(home, live):
            in_use.append((home, "its instance is running"))
        elif session_running and not (home / INSTANCE_LOCK).exists():
            in_use.append((home, "a running local session is launching it"))
        else:
            removable.append(home)
            continue
        busy_homes.add(home.resolve())
    for run_dir in _entries(work_dir / "work"):
        owner = run_dir_owner(run_dir)
        if owner is None and session_running:
            in_use.append((run_dir, "a running local session may be starting it"))
        elif owner is not None and (owner in busy_homes or instance_home_in_use(owner, live)):
            in_use.append((run_dir, f"instance {owner.name} is running"))
        else:
            removable.append(run_dir)
    if everything:
        shared = session_running or bool(busy_homes)
        for entry in _entries(work_dir):
            if entry.name in ("instances", "work", SESSION_LOCK):
                continue
            if shared and entry.name in ("bin", "images"):  # what every local instance runs
                in_use.append((entry, "a running local session or instance uses it"))
            else:
                removable.append(entry)
    return removable, in_use


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []

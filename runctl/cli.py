"""The `runctl` command line: the SDK's Client, rendered with rich."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from lambdas.models.run_spec import RunSpec
from lambdas.models.sweep_spec import SweepSpec
from runctl.cli_options import run_options, sweep_options
from runctl.client.client import Client
from runctl.client.follow import BUILD_LINES
from runctl.errors import EXIT_INTERRUPTED, RunctlError, RunNeverStarted
from runctl.local.commands import local_app
from runctl.project_config import LoadedConfig, load_project_config
from runctl.render import FollowDisplay, console, print_outcome, print_state
from runctl.render_sweeps import SweepDisplay, print_sweep_outcome, sweeps_table
from runctl.run_request import RunRequest, config_for_script
from runctl.runs_commands import Verbose, make_runs_app
from runctl.sweeps import SweepOptions

error_console = Console(stderr=True, highlight=False)


class RunctlGroup(TyperGroup):
    """Turns every RunctlError, from any command, into one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RunctlError as error:
            # soft_wrap: the message stays one line however narrow the terminal.
            error_console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
            raise typer.Exit(code=error.exit_code) from None


app = typer.Typer(
    name="runctl",
    cls=RunctlGroup,
    help="Run ML training on EC2 spot instances that survives interruptions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@dataclass(frozen=True)
class CloudOptions:
    stack_name: str | None
    region: str | None
    profile: str | None

    def client(self, loaded: LoadedConfig | None = None) -> Client:
        """Flags first, then `.runctl.toml` (the script's, else the working directory's)."""
        config = (loaded or load_project_config(Path.cwd())).config
        return Client(
            stack_name=self.stack_name or config.stack_name,
            region=self.region or config.region,
            profile=self.profile,
        )


@app.callback()
def cloud_options(
    ctx: typer.Context,
    stack: Annotated[
        str | None,
        typer.Option(envvar="RUNCTL_STACK", help="CloudFormation stack name (default: Runctl)"),
    ] = None,
    region: Annotated[str | None, typer.Option(help="AWS region of the stack")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (else AWS_PROFILE)")] = None,
) -> None:
    ctx.obj = CloudOptions(stack_name=stack, region=region, profile=profile)


def _cloud(ctx: typer.Context) -> CloudOptions:
    options = ctx.find_root().obj
    assert isinstance(options, CloudOptions)  # set by cloud_options before any command
    return options


@app.command()
@run_options
def submit(
    ctx: typer.Context,
    request: RunRequest,
    wait: Annotated[
        bool, typer.Option("--wait", help="follow the run until it ends (Ctrl-C stops following)")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the run id")] = False,
    verbose: Verbose = False,
) -> None:
    """Package the project, upload it (only if changed) and start SCRIPT on a cloud instance."""
    client = _cloud(ctx).client(config_for_script(request.script))
    submission = client.submit(request)
    if quiet:
        typer.echo(submission.run_id)
    else:
        upload = (
            f"uploaded {submission.uploaded_bytes:,} bytes"
            if submission.uploaded_bytes
            else "code unchanged, nothing uploaded"
        )
        console.print(
            f"packaged {submission.plan.project_root} ({submission.files} files; {upload})",
            markup=False,
        )
        if submission.plan.build is not None:
            context = (
                f"uploaded {submission.context_uploaded_bytes:,} bytes"
                if submission.context_uploaded_bytes
                else "unchanged, nothing uploaded"
            )
            console.print(f"build context {submission.plan.build.context}: {context}", markup=False)
        console.print(f"started run [bold]{submission.run_id}[/]")
    if not wait:
        if not quiet:
            console.print(
                f"[dim]follow it: runctl status {submission.run_id}  |  runctl logs "
                f"{submission.run_id} -f[/]"
            )
        return
    _follow(client, submission.run_id, verbose)


@contextmanager
def _ctrl_c_stops_following(what_goes_on: str) -> Iterator[None]:
    """Ctrl-C while following leaves what is followed running: say so, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        console.print(f"\nstopped following; {what_goes_on}", markup=False)
        raise typer.Exit(code=EXIT_INTERRUPTED) from None


def _follow(client: Client, run_id: str, verbose: bool) -> None:
    with (
        _ctrl_c_stops_following(
            f"run {run_id} goes on. `runctl status {run_id}`, `runctl logs {run_id} -f`, or "
            f"`runctl stop {run_id}`"
        ),
        FollowDisplay() as display,
    ):
        outcome = client.follow(run_id, on_event=display.handle)
    print_outcome(outcome, verbose)
    if outcome.status != "SUCCEEDED":
        raise typer.Exit(code=1)


@app.command()
def status(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    wait: Annotated[bool, typer.Option("--wait", help="follow the run until it ends")] = False,
    verbose: Verbose = False,
) -> None:
    """Where a run is: status, attempt, instance, time and cost so far, latest metrics."""
    client = _cloud(ctx).client()
    print_state(client.status(run_id), verbose)
    if wait:
        _follow(client, run_id, verbose)


@app.command()
def logs(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new lines until the run ends")
    ] = False,
) -> None:
    """The script's output, every attempt in order."""
    client = _cloud(ctx).client()
    shown_attempt = None
    try:
        for line in client.logs(run_id, follow=follow):
            if line.attempt != shown_attempt:
                if line.attempt == BUILD_LINES:
                    console.print("[dim]── image build ──[/]")
                elif shown_attempt is not None or line.attempt > 1:
                    console.print(f"[dim]── attempt {line.attempt} ──[/]")
                shown_attempt = line.attempt
            console.print(line.message, markup=False, highlight=False, soft_wrap=True)
    except RunNeverStarted as error:
        # Its only "log" is the failed step's stack trace; the one-line error follows it.
        if error.trace:
            error_console.print(error.trace, markup=False, style="dim", soft_wrap=True)
        raise
    except KeyboardInterrupt:
        raise typer.Exit(code=EXIT_INTERRUPTED) from None


@app.command()
def stop(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN")]) -> None:
    """Stop a run gracefully: the script checkpoints, outputs are uploaded, the run is final."""
    result = _cloud(ctx).client().stop(run_id)
    console.print(f"{result.run_id}: {result.message}", markup=False)
    console.print(f"[dim]({result.action})[/]")


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file instead of stdout")
    ] = None,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="the SweepSpec's (a Sweep execution's input) instead")
    ] = False,
) -> None:
    """Print the RunSpec JSON Schema (a run's input), or with --sweep the SweepSpec's."""
    model = SweepSpec if sweep else RunSpec
    text = json.dumps(model.model_json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


@app.command("sweep")
@run_options
@sweep_options
def sweep_command(
    ctx: typer.Context,
    request: RunRequest,
    sweep: SweepOptions,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="follow the sweep until it ends (Ctrl-C stops following)"),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Start a sweep: one run of SCRIPT per grid point (or random draw), a few at a time.

    The run flags are `runctl submit`'s and apply to every run; --grid and --sample values
    override --hp. The runs' experiment is the sweep id unless --experiment names one.
    """
    client = _cloud(ctx).client(config_for_script(request.script))
    submission = client.submit_sweep(request, sweep)
    spec = submission.spec
    console.print(
        f"started sweep [bold]{submission.sweep_id}[/]: {submission.total_runs} runs, "
        f"{spec.max_parallel} at a time"
        + (f", best by {escape(spec.objective)}" if spec.objective else "")
        + (f", random seed {spec.random.seed}" if spec.random else ""),
        soft_wrap=True,
    )
    if not wait:
        console.print(
            f"[dim]follow it: runctl sweeps show {submission.sweep_id} --wait  |  cancel it: "
            f"runctl sweeps cancel {submission.sweep_id}[/]",
            soft_wrap=True,
        )
        return
    _follow_sweep(client, submission.sweep_id, verbose)


def _follow_sweep(client: Client, sweep_id: str, verbose: bool) -> None:
    with (
        _ctrl_c_stops_following(
            f"sweep {sweep_id} goes on. `runctl sweeps show {sweep_id}` or "
            f"`runctl sweeps cancel {sweep_id}`"
        ),
        SweepDisplay(sweep_id) as display,
    ):
        outcome = client.follow_sweep(sweep_id, on_progress=display.update)
    print_sweep_outcome(outcome, verbose)
    if outcome.execution_status != "SUCCEEDED":
        raise typer.Exit(code=1)


sweeps_app = typer.Typer(help="Sweeps of the deployed stack: list, show, cancel.")


@sweeps_app.command("list")
def list_sweeps(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="at most this many, newest first")
    ] = 20,
) -> None:
    """The newest sweeps and how they stand."""
    console.print(sweeps_table(_cloud(ctx).client().list_sweeps(limit)))


@sweeps_app.command("show")
def show_sweep(
    ctx: typer.Context,
    sweep_id: Annotated[str, typer.Argument(metavar="SWEEP")],
    wait: Annotated[bool, typer.Option("--wait", help="follow the sweep until it ends")] = False,
    verbose: Verbose = False,
) -> None:
    """A sweep's summary: every run, its values, status, objective, cost; the best starred."""
    client = _cloud(ctx).client()
    outcome = client.sweep(sweep_id)
    if wait and outcome.running:
        _follow_sweep(client, sweep_id, verbose)
        return
    print_sweep_outcome(outcome, verbose)


@sweeps_app.command("cancel")
def cancel_sweep(
    ctx: typer.Context, sweep_id: Annotated[str, typer.Argument(metavar="SWEEP")]
) -> None:
    """Cancel a sweep: no more runs start, and the running ones stop gracefully."""
    result = _cloud(ctx).client().cancel_sweep(sweep_id)
    console.print(result.message, markup=False, soft_wrap=True)
    console.print(f"[dim]see how it ended: runctl sweeps show {sweep_id} --wait[/]")


app.add_typer(
    make_runs_app(lambda ctx: _cloud(ctx).client(), where="the deployed stack"), name="runs"
)
app.add_typer(sweeps_app, name="sweeps")
app.add_typer(local_app, name="local")


def main() -> None:
    app()

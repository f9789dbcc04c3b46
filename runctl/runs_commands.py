"""`runctl runs list|show|compare` and `runctl local runs ...`: one set of commands, two stores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Protocol

import typer

from lambdas.models.run_record import RunRecord, RunStatus
from runctl.client.plotting import PlotResult
from runctl.client.reading import Comparison, RunDetails
from runctl.render import (
    comparison_table,
    console,
    details_view,
    runs_table,
    shared_hyperparameters_line,
)

# `--verbose` of the commands that show a failed execution's cause (cloud and local alike).
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="on failure, the whole error message and the step's stack trace"
    ),
]


class RunsSource(Protocol):
    """What the runs commands read from: the SDK Client, or local history's RunReader."""

    def list_runs(
        self, experiment: str | None = None, status: RunStatus | None = None
    ) -> list[RunRecord]: ...

    def show(self, run_id: str) -> RunDetails: ...

    def compare(self, run_ids: Sequence[str]) -> Comparison: ...

    def plot(self, run_ids: Sequence[str], path: Path) -> PlotResult: ...


def make_runs_app(source_for: Callable[[typer.Context], RunsSource], where: str) -> typer.Typer:
    """The runs commands, reading through `source_for(ctx)`; `where` words the help text."""
    runs_app = typer.Typer(help=f"List, show and compare runs ({where}).", no_args_is_help=True)

    @runs_app.command("list")
    def list_runs(
        ctx: typer.Context,
        experiment: Annotated[str | None, typer.Option(help="only this experiment")] = None,
        status: Annotated[
            RunStatus | None, typer.Option(case_sensitive=False, help="only runs in this status")
        ] = None,
    ) -> None:
        """Runs, newest first: status, duration, cost and latest metrics."""
        records = source_for(ctx).list_runs(experiment=experiment, status=status)
        if not records:
            console.print("no runs yet" if experiment is None and status is None else "no match")
            return
        console.print(runs_table(records))

    @runs_app.command("show")
    def show(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN")]) -> None:
        """One run's record: code, hyperparameters, attempts and why each ended, cost, metrics."""
        console.print(details_view(source_for(ctx).show(run_id)))

    @runs_app.command("compare")
    def compare(
        ctx: typer.Context,
        run_ids: Annotated[list[str], typer.Argument(metavar="RUN RUN...")],
        plot: Annotated[
            Path | None,
            typer.Option(help="also draw the runs' metric curves to FILE (.png, .svg or .html)"),
        ] = None,
    ) -> None:
        """Runs side by side: differing hyperparameters, final metrics, duration, cost."""
        source = source_for(ctx)
        comparison = source.compare(run_ids)
        console.print(comparison_table(comparison))
        shared = shared_hyperparameters_line(comparison)
        if shared:
            console.print(shared, style="dim", markup=False)
        if plot is not None:
            result = source.plot(run_ids, plot)
            metrics = ", ".join(result.curves)
            console.print(f"wrote {result.path} ({result.format}: {metrics})", markup=False)

    return runs_app

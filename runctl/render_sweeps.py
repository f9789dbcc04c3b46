"""How the CLI shows sweeps: a live progress line, the summary table, the sweeps list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.spinner import Spinner

from lambdas.models.run_record import FINAL_STATUSES
from lambdas.models.sweep_summary import SweepRunStatus, SweepSummary
from runctl.client.costs import format_usd
from runctl.client.formatting import format_duration, format_value
from runctl.fitted_table import FitColumn, FittedTable
from runctl.render import LiveLine, console, print_failure, styled_status
from runctl.sweeps import SweepOutcome, SweepProgress

_STATUS_STYLE = {
    SweepRunStatus.SUCCEEDED: "green",
    SweepRunStatus.FAILED: "bold red",
    SweepRunStatus.CANCELLED: "yellow",
    SweepRunStatus.SKIPPED: "dim",
    SweepRunStatus.RUNNING: "cyan",
}
_VERDICT_STYLE = {"succeeded": "bold green", "failed": "bold red", "cancelled": "bold yellow"}
_ERROR_WIDTH = 60
# The narrowest a swept value or an error is cut to (with an ellipsis) before it is dropped.
_SWEPT_MIN_WIDTH = 6
_ERROR_MIN_WIDTH = 16


class SweepDisplay(LiveLine):
    """A live line while a sweep runs (runs done, how they ended, how many run now); prints a
    line whenever a run finishes."""

    def __init__(self, sweep_id: str) -> None:
        self.progress = SweepProgress(sweep_id)
        self._announced: set[str] = set()
        super().__init__()

    def update(self, progress: SweepProgress) -> None:
        self.progress = progress
        for run_id, status in sorted(progress.statuses.items()):
            if run_id not in self._announced and status in FINAL_STATUSES:
                self._announced.add(run_id)
                self._live.console.print(f"  {styled_status(status.value)} {escape(run_id)}")

    def _progress_line(self) -> Spinner:
        self._spinner.update(text=escape(self.progress.line()))
        return self._spinner


def print_sweep_outcome(outcome: SweepOutcome, verbose: bool = False) -> None:
    """A running sweep's status; an ended one's summary table, or why it has none (`verbose`:
    with a failed step's whole message and stack trace)."""
    if outcome.running:
        console.print(f"sweep {outcome.sweep_id}: {styled_status('RUNNING')}")
        return
    if outcome.summary is not None:
        console.print(sweep_summary_table(outcome.summary))
        return
    # Failed before any run (an invalid sweep) or stopped by hand before its summary.
    console.print(f"sweep {outcome.sweep_id}: {styled_status(outcome.execution_status)}")
    if outcome.error or outcome.cause:
        print_failure(outcome.error, outcome.cause, verbose)


def sweeps_table(executions: Sequence[dict[str, Any]]) -> FittedTable:
    """The cloud's sweeps, one line each at any width (ended, then started, give way)."""
    columns = [
        FitColumn("sweep", [escape(execution["name"]) for execution in executions]),
        FitColumn("status", [styled_status(execution["status"]) for execution in executions]),
        FitColumn(
            "started", [_stamp(execution.get("startDate")) for execution in executions], drop_rank=2
        ),
        FitColumn(
            "ended", [_stamp(execution.get("stopDate")) for execution in executions], drop_rank=1
        ),
    ]
    return FittedTable(columns, title="sweeps", title_justify="left")


def _stamp(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def sweep_summaries_table(summaries: Sequence[SweepSummary]) -> FittedTable:
    """Local sweeps (from their summaries): how each ended and its best run, one line each at
    any width (the end time, then the best run, then the counts give way)."""
    columns = [
        FitColumn("sweep", [escape(summary.sweep_id) for summary in summaries]),
        FitColumn("verdict", [summary.verdict.value for summary in summaries]),
        FitColumn(
            "runs",
            [
                f"{summary.counts.succeeded} of {summary.counts.total} succeeded"
                for summary in summaries
            ],
            drop_rank=3,
        ),
        FitColumn(
            "best",
            [escape(summary.best.run_id) if summary.best else "-" for summary in summaries],
            drop_rank=2,
        ),
        FitColumn(
            "ended",
            [summary.written_at[:16].replace("T", " ") for summary in summaries],
            drop_rank=1,
        ),
    ]
    return FittedTable(columns, title="sweeps", title_justify="left")


def sweep_summary_table(summary: SweepSummary) -> FittedTable:
    """Every run (its swept values, status, objective value, cost, time, why it failed), the best
    one starred; the title says how the sweep ended. One line per run at any width: the error,
    the time, the cost, the swept values (the last first) and the objective give way, in that
    order; run ids and statuses are always whole."""
    verdict = summary.verdict.value
    names = list(dict.fromkeys(name for run in summary.runs for name in run.swept))
    best_id = summary.best.run_id if summary.best else None
    runs = sorted(summary.runs, key=lambda item: item.index)
    objective_rank = len(names) + 4
    columns = [
        FitColumn("run", [f"{run.run_id}{' *' if run.run_id == best_id else ''}" for run in runs])
    ]
    columns += [
        FitColumn(
            escape(name),
            [_value(run.swept.get(name)) for run in runs],
            drop_rank=objective_rank - 1 - position,
            min_width=_SWEPT_MIN_WIDTH,
            justify="right",
        )
        for position, name in enumerate(names)
    ]
    columns.append(
        FitColumn("status", [f"[{_STATUS_STYLE[run.status]}]{run.status.value}[/]" for run in runs])
    )
    if summary.objective:
        columns.append(
            FitColumn(
                escape(summary.objective),
                [_value(run.objective_value) for run in runs],
                drop_rank=objective_rank,
                justify="right",
            )
        )
    columns += [
        FitColumn(
            "cost",
            [format_usd(run.cost_usd) if run.cost_usd is not None else "-" for run in runs],
            drop_rank=3,
            justify="right",
        ),
        FitColumn(
            "time",
            [format_duration(run.duration_seconds) for run in runs],
            drop_rank=2,
            justify="right",
        ),
        FitColumn(
            "error",
            [escape(run.error or "") for run in runs],
            drop_rank=1,
            min_width=_ERROR_MIN_WIDTH,
            max_width=_ERROR_WIDTH,
        ),
    ]
    return FittedTable(
        columns,
        row_styles=["bold" if run.run_id == best_id else None for run in runs],
        title=f"sweep {summary.sweep_id}: [{_VERDICT_STYLE[verdict]}]{verdict.upper()}[/] - "
        f"{escape(summary.message)}",
        title_justify="left",
        caption=_caption(summary),
        caption_justify="left",
    )


def _caption(summary: SweepSummary) -> str:
    parts = []
    if summary.best is not None:
        parts.append(f"* best by {summary.objective}: {summary.best.run_id}")
    if summary.total_cost_usd is not None:
        parts.append(f"total cost {format_usd(summary.total_cost_usd)} (EC2 instance time)")
    policy = f"{summary.tolerated_failure_percentage:g}% failures tolerated"
    parts.append(policy + (", stop on failure" if summary.stop_on_failure else ""))
    return "; ".join(parts)


def _value(value: Any) -> str:
    """A user's value as text, never as rich markup (a value may be '[/data]')."""
    return "-" if value is None else escape(format_value(value))

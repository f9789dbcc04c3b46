"""How the CLI shows sweeps: a live progress line, the summary table, the sweeps list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table

from lambdas.models.run_record import FINAL_STATUSES
from lambdas.models.sweep_summary import SweepRunStatus, SweepSummary
from runctl.client.costs import format_usd
from runctl.client.formatting import format_duration, format_value
from runctl.render import LiveLine, console, styled_status
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


def print_sweep_outcome(outcome: SweepOutcome) -> None:
    """A running sweep's status; an ended one's summary table, or why it has none."""
    if outcome.running:
        console.print(f"sweep {outcome.sweep_id}: {styled_status('RUNNING')}")
        return
    if outcome.summary is not None:
        console.print(sweep_summary_table(outcome.summary))
        return
    # Failed before any run (an invalid sweep) or stopped by hand before its summary.
    console.print(f"sweep {outcome.sweep_id}: {styled_status(outcome.execution_status)}")
    why = ": ".join(part for part in (outcome.error, outcome.cause) if part)
    if why:
        console.print(f"  {why}", markup=False, soft_wrap=True)


def sweeps_table(executions: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="sweeps", title_justify="left")
    table.add_column("sweep")
    table.add_column("status")
    table.add_column("started")
    table.add_column("ended")
    for execution in executions:
        table.add_row(
            escape(execution["name"]),
            styled_status(execution["status"]),
            _stamp(execution.get("startDate")),
            _stamp(execution.get("stopDate")),
        )
    return table


def _stamp(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def sweep_summaries_table(summaries: Sequence[SweepSummary]) -> Table:
    """Local sweeps (from their summaries): how each ended and its best run."""
    table = Table(title="sweeps", title_justify="left")
    for column in ("sweep", "verdict", "runs", "best", "ended"):
        table.add_column(column)
    for summary in summaries:
        counts = summary.counts
        table.add_row(
            escape(summary.sweep_id),
            summary.verdict.value,
            f"{counts.succeeded} of {counts.total} succeeded",
            escape(summary.best.run_id) if summary.best else "-",
            summary.written_at[:16].replace("T", " "),
        )
    return table


def sweep_summary_table(summary: SweepSummary) -> Table:
    """Every run (its swept values, status, objective value, cost, time, why it failed), the best
    one starred; the title says how the sweep ended."""
    verdict = summary.verdict.value
    table = Table(
        title=f"sweep {summary.sweep_id}: [{_VERDICT_STYLE[verdict]}]{verdict.upper()}[/] - "
        f"{escape(summary.message)}",
        title_justify="left",
        caption=_caption(summary),
        caption_justify="left",
    )
    names = list(dict.fromkeys(name for run in summary.runs for name in run.swept))
    table.add_column("run")
    for name in names:
        table.add_column(escape(name), justify="right")
    table.add_column("status")
    if summary.objective:
        table.add_column(escape(summary.objective), justify="right")
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
        cells += [cost, format_duration(run.duration_seconds), escape(run.error or "")]
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


def _value(value: Any) -> str:
    """A user's value as text, never as rich markup (a value may be '[/data]')."""
    return "-" if value is None else escape(format_value(value))

"""How the CLI shows runs: rich tables, a live progress line, and one-line outcomes."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from lambdas.logic.failure_text import FAILURE_LINE_WIDTH, failure_line, failure_trace
from lambdas.models.run_record import Attempt, MetricSummary, RunRecord
from runctl.client.checkpoints import AttemptCheckpoints, attempt_checkpoints
from runctl.client.client import RunState
from runctl.client.costs import PRICE_SOURCE_LABELS, cost_label, cost_of, format_usd
from runctl.client.follow import RunEvent, RunOutcome, describe_attempt, describe_refusals
from runctl.client.formatting import (
    describe_environment,
    describe_gpu,
    finish_line,
    format_duration,
    format_value,
    parse_time,
    run_seconds,
)
from runctl.client.metrics import STEP_KEY
from runctl.client.reading import Comparison, RunDetails
from runctl.fitted_table import FitColumn, FittedTable

console = Console(highlight=False)
_STATUS_STYLE = {
    "SUCCEEDED": "bold green",
    "FAILED": "bold red",
    "CANCELLED": "bold yellow",
    "CHECKPOINTING": "bold magenta",
    "RESUMING": "bold magenta",
}
_SHOWN_METRICS = 3


def styled_status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'bold cyan')}]{status}[/]"


def _metrics_text(values: dict[str, Any], limit: int | None = None) -> str:
    items = [(key, value) for key, value in values.items() if key != STEP_KEY]
    if STEP_KEY in values:
        items.insert(0, (STEP_KEY, values[STEP_KEY]))
    shown = items if limit is None else items[:limit]
    return "  ".join(f"{key}={format_value(value)}" for key, value in shown)


class LiveLine:
    """A spinner line kept under what is printed while something is followed; subclasses say
    what the line holds (`_progress_line`, which may be called from this constructor: set what
    it reads first). Use as a context manager around the wait."""

    def __init__(self, out: Console | None = None) -> None:
        self.console = out or console
        self._spinner = Spinner("dots", text="starting")
        self._live = Live(
            console=self.console,
            get_renderable=self._progress_line,
            refresh_per_second=4,
            transient=True,
        )

    def __enter__(self) -> Self:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._live.stop()

    def _progress_line(self) -> Spinner:
        raise NotImplementedError


class FollowDisplay(LiveLine):
    """Prints a followed run's events, under a live line: status, attempt, instance, time,
    cost so far and the latest metrics."""

    def __init__(self, out: Console | None = None) -> None:
        # Set before the live line exists: it may draw at once.
        self.record: RunRecord | None = None
        self.latest_metrics: dict[str, Any] = {}
        super().__init__(out)

    def handle(self, event: RunEvent) -> None:
        out = self._live.console
        if event.kind == "status":
            self.record = event.data.get("record", self.record)
            out.print(f"[bold cyan]●[/] status {styled_status(event.text)}")
        elif event.kind == "attempt":
            out.print(f"  [cyan]↳[/] {escape(event.text)}")
            attempt = event.data.get("attempt") if event.data else None
            refusals = describe_refusals(attempt) if attempt is not None else None
            if refusals:
                out.print(f"    {refusals}", markup=False, style="yellow", soft_wrap=True)
        elif event.kind == "metric":
            self.latest_metrics = dict(event.data)
            out.print(f"  [magenta]metric[/] {escape(_metrics_text(event.data))}")
        elif event.kind == "log":
            out.print(f"  {event.text}", markup=False, style="dim", soft_wrap=True)

    def _progress_line(self) -> Spinner:
        record = self.record
        if record is None:
            self._spinner.update(text="waiting for the run to be recorded")
            return self._spinner
        parts = [f"[bold]{record.status.value}[/]", f"attempt {record.attempt}"]
        attempt = record.attempts.get(str(record.attempt))
        if attempt is not None and attempt.instance_type:
            parts.append(escape(f"{attempt.instance_type} {attempt.market or ''}".strip()))
        parts.append(format_duration(run_seconds(record)))
        cost = cost_of(record)
        if cost is not None:
            parts.append(f"{escape(cost_label(cost, short=True))} so far")
        if self.latest_metrics:
            parts.append(escape(_metrics_text(self.latest_metrics, limit=_SHOWN_METRICS + 1)))
        self._spinner.update(text=Text.from_markup(" · ".join(parts)))
        return self._spinner


def print_failure(
    error: str | None, cause: str | None, verbose: bool = False, lead: str = ""
) -> None:
    """A failed execution's cause: 'errorType: errorMessage' on one line (cut when very long);
    with `verbose`, the whole message and then the stack trace its cause carried."""
    line = failure_line(error, cause, width=None if verbose else FAILURE_LINE_WIDTH)
    # soft_wrap: one line however narrow the terminal (it wraps it, rich does not cut it).
    console.print(f"  {lead}{line}", markup=False, soft_wrap=True)
    if verbose:
        _print_trace(cause)


def _print_trace(cause: str | None) -> None:
    trace = failure_trace(cause)
    if trace:
        console.print(textwrap.indent(trace, "    "), markup=False, style="dim", soft_wrap=True)


def print_outcome(outcome: RunOutcome, verbose: bool = False) -> None:
    """The end of a followed run: status, why, how long and what it cost, where things are.
    `verbose` adds a failed step's whole message and stack trace."""
    record = outcome.record
    console.print(f"\n{styled_status(outcome.status)} run {outcome.run_id}")
    if record is None:
        if outcome.error or outcome.cause:
            print_failure(outcome.error, outcome.cause, verbose)
        return
    console.print(f"  {escape(finish_line(record))}")
    for line in attempts_checkpoint_lines(record):
        console.print(f"  {line}", markup=False)
    if record.final_metrics:
        console.print(f"  final metrics: {escape(_metrics_text(record.final_metrics))}")
    if record.outputs_uri:
        console.print(f"  outputs: {record.outputs_uri}", markup=False)
    if record.error and outcome.status != "SUCCEEDED":
        console.print(f"  error: {record.error}", markup=False)
        if verbose:
            _print_trace(outcome.cause)
    elif outcome.execution_status != "SUCCEEDED" and (outcome.error or outcome.cause):
        # The execution failed without finishing the record (a step's uncaught error).
        print_failure(outcome.error, outcome.cause, verbose, lead="error: ")
    if record.stderr_tail and outcome.status != "SUCCEEDED":
        console.print("  stderr (tail):", markup=False)
        console.print(record.stderr_tail.rstrip(), markup=False, style="red")
    if outcome.outputs_dir is not None:
        console.print(f"  local copy of outputs: {outcome.outputs_dir}", markup=False)


def print_state(state: RunState, verbose: bool = False) -> None:
    """`runctl status`: where the run is now, in a few lines. `verbose` adds a failed step's
    whole message and stack trace."""
    record = state.record
    console.print(f"{state.run_id} {styled_status(state.status)}")
    if record is None:
        if state.execution_status == "RUNNING":
            console.print("  submitted; waiting for the state machine to record it")
        elif state.error or state.cause:
            print_failure(state.error, state.cause, verbose, lead="it never started: ")
        else:
            console.print(f"  it never started: {state.execution_failure}", markup=False)
        return
    if record.experiment:
        console.print(f"  experiment: {escape(record.experiment)}")
    attempt = record.attempts.get(str(record.attempt))
    if attempt is not None:
        console.print(f"  {escape(describe_attempt(attempt))}")
        refusals = describe_refusals(attempt)
        if refusals:
            console.print(f"  {refusals}", markup=False, soft_wrap=True)
    setup = record.setup.get(str(record.attempt))
    if setup:
        console.print(
            f"  environment: {describe_environment(setup.get('environment'))}", markup=False
        )
        if setup.get("gpu"):
            console.print(f"  gpu: {describe_gpu(setup['gpu'])}", markup=False)
    for line in checkpoint_lines(attempt_checkpoints(record).get(record.attempt)):
        console.print(f"  {line}", markup=False)
    console.print(f"  {escape(finish_line(record))}")
    metrics = record.final_metrics or record.latest_metrics
    if metrics:
        console.print(f"  metrics: {escape(_metrics_text(metrics))}")
    if record.outputs_uri:
        console.print(f"  outputs: {record.outputs_uri}", markup=False)
    if record.error and record.status.value != "SUCCEEDED":
        console.print(f"  error: {record.error}", markup=False)


def checkpoint_lines(facts: AttemptCheckpoints | None) -> list[str]:
    """An attempt's checkpoints in a few plain lines (no markup: names are the user's)."""
    if facts is None:
        return []
    lines = [f"resumed from: {facts.resumed_from or 'nothing (started from scratch)'}"]
    if facts.newest:
        lines.append(f"newest checkpoint: {facts.newest}")
    lines += [f"warning: {warning}" for warning in facts.warnings]
    return lines


def attempts_checkpoint_lines(record: RunRecord) -> list[str]:
    """For a run that was resumed: per attempt, what it resumed from and what its end cost."""
    facts = attempt_checkpoints(record)
    if len(record.attempts) < 2 and not any(item.warnings for item in facts.values()):
        return []
    lines = []
    for number in sorted(facts):
        item = facts[number]
        said = [f"resumed from {item.resumed_from or 'nothing (started from scratch)'}"]
        attempt = record.attempts.get(str(number))
        if item.work_lost_seconds is not None and attempt is not None and attempt.end_reason:
            lost = format_duration(item.work_lost_seconds)
            said.append(f"ended {attempt.end_reason.value}, losing {lost} of work")
        lines.append(f"attempt {number}: " + "; ".join(said))
        lines += [f"attempt {number}: warning: {warning}" for warning in item.warnings]
    return lines


def _summary_values(record: RunRecord) -> dict[str, Any]:
    if record.metrics_summary:
        return {name: summary.last for name, summary in record.metrics_summary.items()}
    return record.final_metrics or record.latest_metrics


def _short_time(stamp: str | None) -> str:
    """'11-23 12:27' in local time: enough to tell runs apart in a table."""
    return parse_time(stamp).astimezone().strftime("%m-%d %H:%M") if stamp else "-"


# The narrowest the runs list cuts its experiment names and metrics to (with an ellipsis).
_EXPERIMENT_MIN_WIDTH = 10
_METRICS_MIN_WIDTH = 14


def runs_table(records: Sequence[RunRecord]) -> FittedTable:
    """One line per run at any width: ids, statuses and times whole; experiment names and metrics
    cut when the terminal is narrow, and then columns dropped: metrics, experiment, cost,
    duration, in that order."""
    costs = [cost_of(record) for record in records]
    columns = [
        FitColumn("RUN", [record.run_id for record in records]),
        FitColumn(
            "EXPERIMENT",
            [escape(record.experiment or "-") for record in records],
            drop_rank=2,
            min_width=_EXPERIMENT_MIN_WIDTH,
        ),
        FitColumn("STATUS", [styled_status(record.status.value) for record in records]),
        FitColumn("STARTED", [_short_time(record.created_at) for record in records]),
        FitColumn(
            "DURATION",
            [format_duration(run_seconds(record)) for record in records],
            drop_rank=4,
        ),
        FitColumn(
            "COST",
            [escape(cost_label(cost, short=True)) if cost is not None else "-" for cost in costs],
            drop_rank=3,
        ),
        FitColumn(
            "METRICS",
            [
                escape(_metrics_text(_summary_values(record), limit=_SHOWN_METRICS))
                for record in records
            ],
            drop_rank=1,
            min_width=_METRICS_MIN_WIDTH,
        ),
    ]
    return FittedTable(columns, box=None, header_style="bold", pad_edge=False)


def _key_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={format_value(value)}" for key, value in values.items()) or "-"


def details_view(details: RunDetails) -> Group:
    """`runctl runs show`: the experiment record, attempts and why each ended, cost, metrics."""
    record = details.record
    spec = record.spec
    source = spec.get("source")
    overview = Table.grid(padding=(0, 2))
    overview.add_column(style="bold", no_wrap=True)
    # Fold, never cut: a code hash or a git commit is only useful whole, whatever the width.
    overview.add_column(overflow="fold")
    rows = [
        ("run", record.run_id),
        ("status", styled_status(record.status.value)),
        ("experiment", escape(record.experiment or "-")),
        ("outcome", escape(finish_line(record))),
        ("started", record.created_at),
        ("script", escape(" ".join([spec.get("entry_point", "?"), *spec.get("args", [])]))),
        ("hyperparameters", escape(_key_values(spec.get("hyperparameters") or {}))),
        ("code", escape((spec.get("code") or {}).get("sha256") or "-")),
        ("git", escape(_git_text(source))),
    ]
    if record.outputs_uri:
        rows.append(("outputs", escape(record.outputs_uri)))
    if record.error and record.status.value != "SUCCEEDED":
        rows.append(("error", escape(record.error)))
    for name, value in rows:
        overview.add_row(name, value)
    checkpoints = _checkpoints_table(details)
    parts: list[RenderableType] = [overview, Text(""), _attempts_table(details), Text("")]
    if checkpoints is not None:
        parts += [checkpoints, Text("")]
    return Group(*parts, _metrics_table(details))


def _git_text(source: dict[str, Any] | None) -> str:
    if source is None:
        return "not recorded (started without the runctl client)"
    commit = source.get("git_commit")
    if not commit:
        return "not a git repository"
    dirty = source.get("git_dirty")
    state = " (uncommitted changes)" if dirty else "" if dirty is False else " (state unknown)"
    return f"{commit[:12]}{state}"


def _attempts_table(details: RunDetails) -> Table:
    table = Table(title="attempts", title_justify="left", box=None, header_style="bold")
    columns = ("#", "INSTANCE", "MARKET", "ZONE", "STARTED", "ENVIRONMENT", "RAN", "ENDED BECAUSE")
    for column in (*columns, "COST"):
        table.add_column(column)
    costs = {item.number: item for item in (details.cost.attempts if details.cost else [])}
    attempts: list[Attempt] = sorted(details.record.attempts.values(), key=lambda a: a.number)
    setup = details.record.setup
    for attempt in attempts:
        cost = costs.get(attempt.number)
        cost_text = "-"
        if cost is not None and cost.usd is not None:
            source = PRICE_SOURCE_LABELS.get(cost.price_source, cost.price_source)
            cost_text = f"{format_usd(cost.usd)} ({source})"
        reason = attempt.end_reason.value if attempt.end_reason else "-"
        if attempt.end_reason is None and attempt.number == details.record.attempt:
            reason = details.record.end_reason.value if details.record.end_reason else "(live)"
        table.add_row(
            str(attempt.number),
            escape(f"{attempt.instance_type or '-'} {attempt.instance_id or ''}".strip()),
            escape(_market_cell(attempt)),
            attempt.availability_zone or "-",
            _short_time(attempt.started_at),
            escape(describe_environment(setup.get(str(attempt.number), {}).get("environment"))),
            format_duration(cost.seconds) if cost is not None else "-",
            reason,
            escape(cost_text),
        )
    return table


def _checkpoints_table(details: RunDetails) -> Table | None:
    """Per attempt: the checkpoint it resumed from, the newest durable one, the work its end
    cost, and any warning (names are the user's: escaped)."""
    facts = attempt_checkpoints(details.record)
    if not facts:
        return None
    table = Table(title="checkpoints", title_justify="left", box=None, header_style="bold")
    for column in ("#", "RESUMED FROM", "NEWEST DURABLE", "WORK LOST"):
        table.add_column(column)
    for number in sorted(facts):
        item = facts[number]
        table.add_row(
            str(number),
            escape(item.resumed_from or "nothing (from scratch)"),
            escape(item.newest or "-"),
            format_duration(item.work_lost_seconds),
        )
        for warning in item.warnings:
            table.add_row("", f"[yellow]{escape('warning: ' + warning)}[/]", "", "")
    return table


def _market_cell(attempt: Attempt) -> str:
    """'on-demand' and, under it, the pools refused first: 'not: spot g5.xlarge, spot g4dn...'."""
    market = attempt.market or "-"
    if not attempt.refused:
        return market
    # 'spot g5.xlarge in us-east-1a, ...: Code' -> 'spot g5.xlarge' (status shows the whole line)
    pools = dict.fromkeys(line.split(" in ", 1)[0] for line in attempt.refused)
    return f"{market}\nnot: {', '.join(pools)}"


def _metrics_table(details: RunDetails) -> Table:
    table = Table(title="metrics", title_justify="left", box=None, header_style="bold")
    for column in ("METRIC", "LAST", "MIN", "MAX", "POINTS"):
        table.add_column(column)
    summaries: dict[str, MetricSummary] = details.metrics
    for name in sorted(name for name in summaries if name != STEP_KEY):
        summary = summaries[name]
        table.add_row(
            escape(name),
            format_value(summary.last),
            format_value(summary.min),
            format_value(summary.max),
            str(summary.count),
        )
    return table


def comparison_table(comparison: Comparison) -> Table:
    """Runs as columns; rows: differing hyperparameters, final metrics, duration, cost."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    for run in comparison.runs:
        table.add_column(run.run_id, no_wrap=True)
    runs = comparison.runs
    table.add_row("status", *(styled_status(run.record.status.value) for run in runs))
    table.add_row("experiment", *(escape(run.record.experiment or "-") for run in runs))
    for key in comparison.differing_hyperparameters:
        table.add_row(
            f"[bold]{escape(key)}[/]",
            *(
                escape(format_value(run.hyperparameters[key]))
                if key in run.hyperparameters
                else "[dim]unset[/]"
                for run in runs
            ),
        )
    for name in comparison.metric_names:
        table.add_row(
            f"{escape(name)} (last)",
            *(format_value(run.metrics[name].last) if name in run.metrics else "-" for run in runs),
        )
    table.add_row("duration", *(format_duration(run_seconds(run.record)) for run in runs))
    table.add_row("cost", *(escape(cost_label(run.cost)) if run.cost else "-" for run in runs))
    table.add_row("attempts", *(str(len(run.record.attempts)) for run in runs))
    return table


def shared_hyperparameters_line(comparison: Comparison) -> str:
    if not comparison.shared_hyperparameters:
        return ""
    return f"same in all runs: {_key_values(comparison.shared_hyperparameters)}"

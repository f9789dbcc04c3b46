"""Reading runs back: details, comparisons, metric curves and plots, from any RunStore."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdas.logic.metrics_summary import MetricsSummariser
from lambdas.models.run_record import MetricSummary, RunCost, RunRecord, RunStatus
from runctl.client.costs import cost_of
from runctl.client.metrics import STEP_KEY, MetricSeries, merge_attempts
from runctl.client.plotting import PlotResult, plot_runs
from runctl.client.store import RunStore
from runctl.errors import RunNotFound, UsageError

_MISSING = object()


@dataclass(frozen=True)
class RunDetails:
    """A run record with its cost and its metrics summary (last, min, max of each metric)."""

    record: RunRecord
    cost: RunCost | None
    metrics: dict[str, MetricSummary]

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.record.spec.get("hyperparameters") or {})


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: which hyperparameters differ, and every metric any of them has."""

    runs: list[RunDetails]
    differing_hyperparameters: list[str]
    shared_hyperparameters: dict[str, Any]
    metric_names: list[str]


class RunReader:
    """The read side of the client, the same for the deployed stack and local history."""

    def __init__(self, store: RunStore, where: str) -> None:
        self.store = store
        self.where = where  # names the store in errors: "stack 'Runctl'", "local history"

    def record(self, run_id: str) -> RunRecord:
        record = self.store.get(run_id)
        if record is None:
            raise RunNotFound(
                f"no run {run_id!r} in {self.where}: see the run ids with `runctl "
                f"{'local ' if self.where == 'local history' else ''}runs list`"
            )
        return record

    def list_runs(
        self, experiment: str | None = None, status: RunStatus | None = None
    ) -> list[RunRecord]:
        return self.store.list_runs(experiment=experiment, status=status)

    def show(self, run_id: str) -> RunDetails:
        return self._details(self.record(run_id))

    def metrics(self, run_id: str) -> MetricSeries:
        record = self.record(run_id)
        return merge_attempts(record.run_id, self.store.metric_rows(record))

    def compare(self, run_ids: Sequence[str]) -> Comparison:
        if len(run_ids) < 2:
            raise UsageError("compare needs at least two run ids")
        runs = [self.show(run_id) for run_id in dict.fromkeys(run_ids)]
        keys = sorted({key for run in runs for key in run.hyperparameters})
        differing, shared = [], {}
        for key in keys:
            values = [run.hyperparameters.get(key, _MISSING) for run in runs]
            # 1 and 1.0 are the same learning rate; True and 1 are not the same flag.
            if all(_same(value, values[0]) for value in values):
                shared[key] = values[0]
            else:
                differing.append(key)
        names = sorted({name for run in runs for name in run.metrics} - {STEP_KEY})
        return Comparison(runs, differing, shared, names)

    def plot(self, run_ids: Sequence[str], path: Path) -> PlotResult:
        """Metric curves of the runs: one panel per metric, one line per run."""
        comparison_labels = _labels(self.compare(run_ids)) if len(run_ids) > 1 else {}
        series = [self.metrics(run_id) for run_id in dict.fromkeys(run_ids)]
        return plot_runs(series, path, labels=comparison_labels)

    def _details(self, record: RunRecord) -> RunDetails:
        summary = record.metrics_summary
        if not summary:
            # A live run has no summary yet (FinalizeRun writes it): fold the series so far.
            summariser = MetricsSummariser()
            for rows in self.store.metric_rows(record):
                for row in rows:
                    summariser.add(row)
            summary = summariser.summary()
        return RunDetails(record=record, cost=cost_of(record), metrics=summary)


def _same(left: Any, right: Any) -> bool:
    if type(left) is type(right):
        return bool(left == right)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    return numbers and left == right


def _labels(comparison: Comparison) -> dict[str, str]:
    """'run-...-abc (lr=0.05)': the run id and its hyperparameters that differ from the others."""
    labels = {}
    for run in comparison.runs:
        differing = ", ".join(
            f"{key}={run.hyperparameters[key]}"
            for key in comparison.differing_hyperparameters
            if key in run.hyperparameters
        )
        labels[run.run_id] = f"{run.run_id} ({differing})" if differing else run.run_id
    return labels

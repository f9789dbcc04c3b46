"""A run's metric curves, merged from every attempt's metrics.jsonl.

A metric line is a JSON object such as {"step": 10, "loss": 0.3}. Its x is `step` when it has a
number there, else its position in the run. A resumed attempt replays the steps after its
checkpoint: a later attempt's point replaces an earlier one at the same step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lambdas.logic.metrics_summary import parse_metric_line

STEP_KEY = "step"


@dataclass(frozen=True)
class MetricSeries:
    """metric name -> [(step, value)], sorted by step; numbers only."""

    run_id: str
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted(self.curves)

    def last(self, name: str) -> float | None:
        points = self.curves.get(name)
        return points[-1][1] if points else None


def parse_metric_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl; a torn or foreign line is skipped, not fatal."""
    parsed = (parse_metric_line(line) for line in text.splitlines())
    return [row for row in parsed if row is not None]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def merge_attempts(run_id: str, attempts: Iterable[list[dict[str, Any]]]) -> MetricSeries:
    """Merge the rows of attempts 1, 2, ... (in that order) into one curve per metric."""
    by_metric: dict[str, dict[float, float]] = {}
    position = 0
    for rows in attempts:
        for row in rows:
            position += 1
            step = _number(row.get(STEP_KEY))
            x = step if step is not None else float(position)
            for name, raw in row.items():
                value = _number(raw)
                if name != STEP_KEY and value is not None:
                    by_metric.setdefault(name, {})[x] = value
    curves = {name: sorted(points.items()) for name, points in by_metric.items()}
    return MetricSeries(run_id=run_id, curves=curves)

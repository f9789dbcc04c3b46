"""The run's metrics summary: last, min, max and count of each metric over its metrics.jsonl lines.

Lines come in order: attempt 1's file, then attempt 2's, ... A resumed attempt may repeat steps its
predecessor already logged (it restarts from the last checkpoint); those values count again, and
`last` is the newest attempt's last value. Which of min and max is "best" is the reader's call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lambdas.models.bounds import json_size, storable_number
from lambdas.models.run_record import MetricSummary

STEP_KEY = "step"
# The summary is written into the run item (400 KB at most, with everything else on it): the
# first MAX_METRICS names, as many as fit MAX_SUMMARY_JSON_BYTES of JSON (never fewer bytes than
# DynamoDB counts; 256 names of 255 four-byte characters would take ~280 KB).
MAX_METRICS = 256
MAX_NAME_CHARS = 255
MAX_SUMMARY_JSON_BYTES = 32 * 1024


@dataclass
class _Running:
    last: int | float
    low: int | float
    high: int | float
    count: int
    last_step: int | float | None


class MetricsSummariser:
    """Folds metric objects, in the order they were logged, into a summary per metric."""

    def __init__(self, max_metrics: int = MAX_METRICS) -> None:
        self._max_metrics = max_metrics
        self._by_name: dict[str, _Running] = {}
        self.skipped_names: set[str] = set()

    def add(self, metric: dict[str, Any]) -> None:
        step = storable_number(metric.get(STEP_KEY))
        for name, raw in metric.items():
            value = storable_number(raw)
            if value is None:
                continue
            running = self._by_name.get(name)
            if running is None:
                if self._accepts(name):
                    self._by_name[name] = _Running(value, value, value, 1, step)
                continue
            running.last = value
            running.low = min(running.low, value)
            running.high = max(running.high, value)
            running.count += 1
            running.last_step = step

    def add_lines(self, lines: Iterable[str | bytes]) -> int:
        """Add each line that holds a JSON object; return how many lines were not one."""
        bad = 0
        for line in lines:
            metric = parse_metric_line(line)
            if metric is None:
                bad += bool(line.strip())
                continue
            self.add(metric)
        return bad

    def summary(self) -> dict[str, MetricSummary]:
        """Each metric's summary, first names first, while their JSON object fits
        MAX_SUMMARY_JSON_BYTES; the names left out join `skipped_names`."""
        kept: dict[str, MetricSummary] = {}
        size = 2  # "{}"
        for name, running in self._by_name.items():
            summary = MetricSummary(
                last=running.last,
                min=running.low,
                max=running.high,
                count=running.count,
                last_step=running.last_step,
            )
            entry = json_size(name) + 2 + json_size(summary.model_dump(mode="json"))
            entry += 2 if kept else 0
            if size + entry > MAX_SUMMARY_JSON_BYTES:
                self.skipped_names.add(name)
                continue
            kept[name] = summary
            size += entry
        return kept

    def _accepts(self, name: str) -> bool:
        if not name or len(name) > MAX_NAME_CHARS or len(self._by_name) >= self._max_metrics:
            self.skipped_names.add(name[:MAX_NAME_CHARS])
            return False
        return True


def parse_metric_line(line: str | bytes) -> dict[str, Any] | None:
    """The JSON object on a line, or None for a blank, torn or non-object line. NaN and Infinity
    parse (the agent writes them) and are then left out as non-finite."""
    try:
        parsed = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None

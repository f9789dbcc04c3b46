"""Metrics: `RUNCTL_METRIC {json}` stdout lines and $RUNCTL_OUTPUT_DIR/metrics.jsonl lines."""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

from .bounds import Number, fit_metrics
from .files import AppendOnlyFile
from .layout import metrics_key
from .result import FINAL_METRICS_JSON_BYTES, MAX_FINAL_METRICS, MAX_METRIC_NAME_CHARS
from .s3io import upload_file

logger = logging.getLogger(__name__)

PREFIX = "RUNCTL_METRIC"
# Names refused for the latest values are counted (as hashes) up to this many, then no more.
_MAX_REFUSED_COUNTED = 100_000


class BadMetricLine(ValueError):
    """A line has the metric prefix but no JSON object after it."""


def parse_metric_line(line: str) -> dict[str, Any] | None:
    """The metric object of a `RUNCTL_METRIC {...}` line, None for any other line."""
    if not line.startswith(PREFIX):
        return None
    rest = line[len(PREFIX) :]
    if rest and not rest[0].isspace():
        return None  # e.g. RUNCTL_METRICS=...: someone else's line
    return parse_metric_json(rest)


def parse_metric_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise BadMetricLine(f"not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise BadMetricLine(f"not a JSON object but {type(value).__name__}")
    return value


def numeric_values(metric: dict[str, Any]) -> dict[str, Any]:
    """The finite numbers of a metric object (what latest/final metrics keep)."""
    return {
        key: value
        for key, value in metric.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


class MetricsRecorder:
    """Appends each metric object to metrics.jsonl and keeps the latest value of each number:
    of the first MAX_FINAL_METRICS names (of at most MAX_METRIC_NAME_CHARS) only, so the latest
    values stay small enough for the task output and the run item; the rest are counted."""

    def __init__(self, path: Path) -> None:
        self.file = AppendOnlyFile(path)
        self._latest: dict[str, Any] = {}
        self._refused: set[int] = set()  # hashes of names left out, up to _MAX_REFUSED_COUNTED
        self._lock = threading.Lock()
        self._version = 0

    def record(self, metric: dict[str, Any]) -> None:
        line = json.dumps(metric, allow_nan=True) + "\n"
        self.file.write(line.encode("utf-8"))
        with self._lock:
            for name, value in numeric_values(metric).items():
                if name in self._latest or self._keeps(name):
                    self._latest[name] = value
            self._version += 1

    def _keeps(self, name: str) -> bool:
        if len(name) <= MAX_METRIC_NAME_CHARS and len(self._latest) < MAX_FINAL_METRICS:
            return True
        if len(self._refused) < _MAX_REFUSED_COUNTED:
            self._refused.add(hash(name))
        return False

    def handle_stdout_line(self, line: str) -> None:
        try:
            metric = parse_metric_line(line)
        except BadMetricLine as error:
            logger.warning("ignoring a bad metric line, %s: %.200s", error, line)
            return
        if metric is not None:
            self.record(metric)

    def ingest_file(self, path: Path) -> int:
        """Record each JSON line of a metrics file the script wrote; return how many were good."""
        if not path.is_file():
            return 0
        count = 0
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    self.record(parse_metric_json(line))
                    count += 1
                except BadMetricLine as error:
                    logger.warning("ignoring line %d of %s, %s", number, path, error)
        return count

    def latest(self) -> tuple[int, dict[str, Number]]:
        """(version, latest values: those DynamoDB can hold, first names first, within
        FINAL_METRICS_JSON_BYTES); the version changes whenever a metric is recorded."""
        with self._lock:
            return self._version, self._fitted()[0]

    def dropped(self) -> int:
        """How many metric names latest() leaves out (counted up to about 100,000)."""
        with self._lock:
            return len(self._refused) + self._fitted()[1]

    def _fitted(self) -> tuple[dict[str, Number], int]:
        return fit_metrics(
            self._latest, MAX_FINAL_METRICS, MAX_METRIC_NAME_CHARS, FINAL_METRICS_JSON_BYTES
        )

    def upload(self, s3: Any, bucket: str, run_id: str, attempt: int) -> None:
        key = metrics_key(run_id, attempt)
        self.file.publish(lambda path: upload_file(s3, path, bucket, key, "application/x-ndjson"))

    def close(self) -> None:
        self.file.close()

"""Metrics: `RUNCTL_METRIC {json}` stdout lines and $RUNCTL_OUTPUT_DIR/metrics.jsonl lines."""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

from .files import AppendOnlyFile
from .layout import metrics_key
from .s3io import upload_file

logger = logging.getLogger(__name__)

PREFIX = "RUNCTL_METRIC"


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
    """Appends each metric object to metrics.jsonl and keeps the latest value of each number."""

    def __init__(self, path: Path) -> None:
        self.file = AppendOnlyFile(path)
        self._latest: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._version = 0

    def record(self, metric: dict[str, Any]) -> None:
        line = json.dumps(metric, allow_nan=True) + "\n"
        self.file.write(line.encode("utf-8"))
        with self._lock:
            self._latest.update(numeric_values(metric))
            self._version += 1

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

    def latest(self) -> tuple[int, dict[str, Any]]:
        """(version, latest values); the version changes whenever a metric is recorded."""
        with self._lock:
            return self._version, dict(self._latest)

    def upload(self, s3: Any, bucket: str, run_id: str, attempt: int) -> None:
        key = metrics_key(run_id, attempt)
        self.file.publish(lambda path: upload_file(s3, path, bucket, key, "application/x-ndjson"))

    def close(self) -> None:
        self.file.close()

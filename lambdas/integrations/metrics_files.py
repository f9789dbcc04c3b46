"""Reads the metrics.jsonl files the agent uploads for each attempt, within a byte budget."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from lambdas.constants import attempt_prefix
from lambdas.observability import logger

# FinalizeRun summarises within its Lambda timeout on a fraction of a vCPU: about 8 MiB of metric
# lines (~100k lines) parse in a few seconds there. Past that, the newest bytes are read.
MAX_METRICS_BYTES = 8 * 1024 * 1024


def metrics_key(run_id: str, attempt: int) -> str:
    """Mirrors instance_agent/layout.py: metrics_key (the agent writes it)."""
    return f"{attempt_prefix(run_id, attempt)}metrics.jsonl"


class MetricsFiles:
    """The metrics.jsonl objects of a run's attempts in the runctl bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def lines(
        self, run_id: str, attempts: Iterable[int], max_bytes: int = MAX_METRICS_BYTES
    ) -> Iterator[bytes]:
        """Every line of the attempts' files, attempt by attempt. When they hold more than
        `max_bytes`, only the newest `max_bytes` are read (the older lines are left out, so the
        last values stay right); a file that is missing (nothing logged) is skipped."""
        numbers = sorted(set(attempts))
        sizes = {number: self._size(metrics_key(run_id, number)) for number in numbers}
        budget = max_bytes
        allowed: dict[int, int] = {}
        for number in reversed(numbers):
            allowed[number] = min(sizes[number] or 0, budget)
            budget -= allowed[number]
        left_out = sum(sizes[number] or 0 for number in numbers) - sum(allowed.values())
        if left_out:
            logger.warning(
                "metrics files exceed the summary's budget: older lines left out",
                extra={"run_id": run_id, "bytes_left_out": left_out, "max_bytes": max_bytes},
            )
        for number in numbers:
            size = sizes[number]
            if size and allowed[number]:
                yield from self._read(metrics_key(run_id, number), size, allowed[number])

    def _size(self, key: str) -> int | None:
        try:
            return int(self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as error:
            if error.response["Error"]["Code"] in {"404", "NoSuchKey"}:
                return None
            raise

    def _read(self, key: str, size: int, wanted: int) -> Iterator[bytes]:
        if wanted >= size:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            yield from body.iter_lines()
            return
        # The tail most likely starts inside a line: drop its first line.
        body = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=-{wanted}")["Body"]
        lines = body.iter_lines()
        next(lines, None)
        yield from lines

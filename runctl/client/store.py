"""Where run records and metric series are read from: the deployed stack, or local history.

`runctl runs ...` and `runctl local runs ...` render the same way; only the store differs.
"""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import ClientError

from lambdas.constants import attempt_prefix
from lambdas.dal.runs_table import RunsTable
from lambdas.models.run_record import RunRecord, RunStatus
from runctl.client.metrics import parse_metric_lines

METRICS_FILE = "metrics.jsonl"


class RunStore(Protocol):
    """Read-only access to runs."""

    def get(self, run_id: str) -> RunRecord | None: ...

    def list_runs(
        self, experiment: str | None = None, status: RunStatus | None = None
    ) -> list[RunRecord]: ...

    def metric_rows(self, record: RunRecord) -> list[list[dict[str, Any]]]:
        """Each attempt's metric rows, attempt 1 first (an attempt without metrics: [])."""
        ...


def metrics_key(run_id: str, attempt: int) -> str:
    """Same key as the agent's (instance_agent/layout.py metrics_key)."""
    return f"{attempt_prefix(run_id, attempt)}{METRICS_FILE}"


class AwsRunStore:
    """The runs table (DynamoDB) and the metrics series in the bucket (S3)."""

    def __init__(self, table: RunsTable, s3: Any, bucket: str) -> None:
        self.table = table
        self.s3 = s3
        self.bucket = bucket

    def get(self, run_id: str) -> RunRecord | None:
        return self.table.get(run_id)

    def list_runs(
        self, experiment: str | None = None, status: RunStatus | None = None
    ) -> list[RunRecord]:
        """Newest first."""
        filters: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        if experiment is not None:
            filters.append("experiment = :experiment")
            values[":experiment"] = {"S": experiment}
        if status is not None:
            filters.append("#status = :status")
            names["#status"] = "status"
            values[":status"] = {"S": status.value}
        records = self.table.scan(" AND ".join(filters), names, values)
        return sorted(records, key=lambda record: record.created_at, reverse=True)

    def metric_rows(self, record: RunRecord) -> list[list[dict[str, Any]]]:
        return [self._attempt_rows(record.run_id, n) for n in range(1, record.attempt + 1)]

    def _attempt_rows(self, run_id: str, attempt: int) -> list[dict[str, Any]]:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=metrics_key(run_id, attempt))["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return []  # this attempt ended before its agent uploaded any metric
            raise
        return parse_metric_lines(body.read().decode("utf-8", errors="replace"))

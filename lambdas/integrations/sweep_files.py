"""A sweep's files in the runctl bucket: its plan, its stop mark, its summary (sweeps/<id>/)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from lambdas.constants import (
    sweep_failure_key,
    sweep_plan_key,
    sweep_stop_key,
    sweep_summary_key,
)
from lambdas.errors import SweepNotFound
from lambdas.models.sweep_spec import SweepPlan
from lambdas.models.sweep_summary import RunStartFailure, SweepStop, SweepSummary

_MISSING = {"404", "NoSuchKey", "NotFound"}
_ALREADY_THERE = {"PreconditionFailed", "412"}


class SweepFiles:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def put_plan(self, plan: SweepPlan, spec: dict[str, Any]) -> None:
        """The plan and the SweepSpec it came from; a retry writes the same bytes again."""
        body = {"spec": spec, **plan.model_dump(mode="json")}
        self._put(sweep_plan_key(plan.sweep_id), body)

    def plan(self, sweep_id: str) -> SweepPlan:
        body = self._get(sweep_plan_key(sweep_id))
        if body is None:
            raise SweepNotFound(f"no sweep {sweep_id!r}: it has no plan in s3://{self.bucket}/")
        return SweepPlan.model_validate(body)

    def stop(self, sweep_id: str) -> SweepStop | None:
        body = self._get(sweep_stop_key(sweep_id))
        return SweepStop.model_validate(body) if body is not None else None

    def request_stop(self, sweep_id: str, stop: SweepStop) -> SweepStop:
        """Write the stop mark unless there is one (If-None-Match); the mark that stands."""
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=sweep_stop_key(sweep_id),
                Body=stop.model_dump_json().encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] not in _ALREADY_THERE:
                raise
            return self.stop(sweep_id) or stop
        return stop

    def put_failure(self, sweep_id: str, failure: RunStartFailure) -> None:
        """The error a run was caught with; a retry writes the same bytes again."""
        self._put(sweep_failure_key(sweep_id, failure.run_id), failure.model_dump(mode="json"))

    def failure(self, sweep_id: str, run_id: str) -> RunStartFailure | None:
        body = self._get(sweep_failure_key(sweep_id, run_id))
        return RunStartFailure.model_validate(body) if body is not None else None

    def put_summary(self, summary: SweepSummary) -> str:
        key = sweep_summary_key(summary.sweep_id)
        self._put(key, summary.model_dump(mode="json"))
        return f"s3://{self.bucket}/{key}"

    def summary(self, sweep_id: str) -> SweepSummary | None:
        body = self._get(sweep_summary_key(sweep_id))
        return SweepSummary.model_validate(body) if body is not None else None

    def _put(self, key: str, body: dict[str, Any]) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(body, indent=1).encode(),
            ContentType="application/json",
        )

    def _get(self, key: str) -> Any:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in _MISSING:
                return None
            raise
        return json.loads(response["Body"].read())

"""The runs table: every write is conditional, so retries and late events cannot undo one."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from lambdas.errors import RunAlreadyExists
from lambdas.models.run_record import (
    FINAL_STATUSES,
    SETUP_ATTEMPTS_KEPT,
    Attempt,
    RunRecord,
    RunStatus,
)
from lambdas.models.steps import RunContext

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> dict[str, Any]:
    # DynamoDB has no float type: go through Decimal via JSON-safe conversion.
    return _serializer.serialize(_floats_to_decimal(value))


def _floats_to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: _floats_to_decimal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_floats_to_decimal(item) for item in value]
    return value


def _from_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _decimal_to_number(_deserializer.deserialize(val)) for key, val in item.items()}


def _decimal_to_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _decimal_to_number(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimal_to_number(item) for item in value]
    return value


def _is_condition_failure(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


_FINAL = [status.value for status in FINAL_STATUSES]
_BATCH_GET_KEYS = 100  # BatchGetItem's limit per call


class RunsTable:
    """Reads and conditional writes of run records."""

    def __init__(self, table_name: str, client: Any) -> None:
        self.table_name = table_name
        self.client = client

    def get(self, run_id: str) -> RunRecord | None:
        response = self.client.get_item(
            TableName=self.table_name, Key={"run_id": {"S": run_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return RunRecord.model_validate(_from_dynamo(item)) if item else None

    def statuses(self, run_ids: Sequence[str]) -> dict[str, RunStatus]:
        """The status of each of these runs that has a record: one BatchGetItem per 100 runs,
        reading only run_id and status. Keys DynamoDB leaves unprocessed (throttling) are left
        out; callers that poll (sweep progress) read them next time."""
        found: dict[str, RunStatus] = {}
        for start in range(0, len(run_ids), _BATCH_GET_KEYS):
            chunk = run_ids[start : start + _BATCH_GET_KEYS]
            response = self.client.batch_get_item(
                RequestItems={
                    self.table_name: {
                        "Keys": [{"run_id": {"S": run_id}} for run_id in chunk],
                        "ProjectionExpression": "run_id, #status",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ConsistentRead": True,
                    }
                }
            )
            for item in response.get("Responses", {}).get(self.table_name, []):
                found[item["run_id"]["S"]] = RunStatus(item["status"]["S"])
        return found

    def live_runs(self) -> list[RunRecord]:
        """Every run not yet final."""
        values = {f":f{index}": _to_dynamo(value) for index, value in enumerate(_FINAL)}
        final_list = ", ".join(values)
        return self.scan(
            f"NOT #status IN ({final_list})", {"#status": "status"}, values, consistent=True
        )

    def scan(
        self,
        filter_expression: str | None = None,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        *,
        consistent: bool = False,
    ) -> list[RunRecord]:
        """The runs a filter keeps (every run without one). A filtered Scan reads the whole
        table: fine at the scale of one team's runs; an index would be the next step if the
        table grew large."""
        kwargs: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": consistent}
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = values
        return [
            RunRecord.model_validate(_from_dynamo(item))
            for page in self.client.get_paginator("scan").paginate(**kwargs)
            for item in page["Items"]
        ]

    def create(self, run: RunContext, now: str) -> RunRecord:
        """Record a new PENDING run; a retry by the same execution is a no-op."""
        record = RunRecord(
            run_id=run.run_id,
            status=RunStatus.PENDING,
            execution_arn=run.execution_arn,
            spec=run.spec.model_dump(mode="json"),
            experiment=run.spec.experiment,
            created_at=now,
            updated_at=now,
            attempt=run.attempt,
        )
        item = {key: _to_dynamo(val) for key, val in record.model_dump(mode="json").items()}
        item = {key: val for key, val in item.items() if "NULL" not in val}
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(run_id)",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            existing = self.get(run.run_id)
            if existing is None or existing.execution_arn != run.execution_arn:
                raise RunAlreadyExists(
                    f"run id {run.run_id!r} is already used by another execution"
                ) from error
            return existing
        return record

    def update_live(
        self,
        run_id: str,
        attempt: int,
        now: str,
        fields: dict[str, Any],
        attempt_fields: dict[str, Any] | None = None,
        unless_stop_requested: bool = False,
    ) -> bool:
        """Set fields on a live run's current attempt; False when the run is final or moved on
        (or, with `unless_stop_requested`, when the user asked to stop it)."""
        names = {"#status": "status", "#updated": "updated_at"}
        values: dict[str, Any] = {
            ":attempt": _to_dynamo(attempt),
            ":now": _to_dynamo(now),
            **{f":f{index}": _to_dynamo(value) for index, value in enumerate(_FINAL)},
        }
        sets = ["#updated = :now"]
        for index, (name, value) in enumerate(fields.items()):
            names[f"#k{index}"] = name
            values[f":v{index}"] = _to_dynamo(value)
            sets.append(f"#k{index} = :v{index}")
        for index, (name, value) in enumerate((attempt_fields or {}).items()):
            names["#attempts"] = "attempts"
            names["#n"] = str(attempt)
            names[f"#a{index}"] = name
            values[f":a{index}"] = _to_dynamo(value)
            sets.append(f"#attempts.#n.#a{index} = :a{index}")
        final_list = ", ".join(f":f{index}" for index in range(len(_FINAL)))
        condition = f"attempt = :attempt AND NOT #status IN ({final_list})"
        if unless_stop_requested:
            condition += " AND attribute_not_exists(stop_requested_at)"
        return self._conditional_update(
            run_id, update="SET " + ", ".join(sets), condition=condition, names=names, values=values
        )

    def request_stop(self, run_id: str, now: str) -> bool:
        """Mark a live run to be stopped (the first request's time is kept); False when the run
        is final or unknown. StartAgent's token write is conditional on this mark's absence, so
        of the two, exactly one sees the other."""
        final_list = ", ".join(f":f{index}" for index in range(len(_FINAL)))
        return self._conditional_update(
            run_id,
            update="SET stop_requested_at = if_not_exists(stop_requested_at, :now)",
            condition=f"attribute_exists(run_id) AND NOT #status IN ({final_list})",
            names={"#status": "status"},
            values={
                ":now": _to_dynamo(now),
                **{f":f{index}": _to_dynamo(value) for index, value in enumerate(_FINAL)},
            },
        )

    def start_attempt(self, run_id: str, attempt: Attempt, now: str) -> bool:
        """Record the instance an attempt runs on and move the run to LAUNCHING."""
        names = {"#status": "status", "#updated": "updated_at", "#attempts": "attempts"}
        names["#n"] = str(attempt.number)
        values = {
            ":attempt": _to_dynamo(attempt.number),
            ":now": _to_dynamo(now),
            ":launching": _to_dynamo(RunStatus.LAUNCHING.value),
            ":pending": _to_dynamo(RunStatus.PENDING.value),
            ":resuming": _to_dynamo(RunStatus.RESUMING.value),
            ":instance": _to_dynamo(attempt.instance_id),
            ":detail": _to_dynamo(attempt.model_dump(mode="json", exclude_none=True)),
        }
        return self._conditional_update(
            run_id,
            update=(
                "SET #status = :launching, #updated = :now, instance_id = :instance, "
                "#attempts.#n = :detail"
            ),
            condition=("attempt = :attempt AND #status IN (:pending, :resuming, :launching)"),
            names=names,
            values=values,
        )

    def advance_attempt(self, run_id: str, from_attempt: int, reason: str, now: str) -> bool:
        """Attempt n -> n+1 and RESUMING, once: False when the run moved on or is final. The
        set-up report and checkpoint facts of the attempt that is no longer among the newest
        SETUP_ATTEMPTS_KEPT go (every advance drops one, so at most that many are ever kept; the
        maps are made by `create`, as DynamoDB refuses a REMOVE below a missing map, not of a
        missing key)."""
        names = {"#status": "status", "#updated": "updated_at", "#attempts": "attempts"}
        names["#n"] = str(from_attempt)
        removes = ["interrupted_by"]
        oldest_dropped = from_attempt + 1 - SETUP_ATTEMPTS_KEPT
        if oldest_dropped >= 1:
            names |= {"#setup": "setup", "#ckpts": "checkpoints", "#dropped": str(oldest_dropped)}
            removes += ["#setup.#dropped", "#ckpts.#dropped"]
        values = {
            ":attempt": _to_dynamo(from_attempt),
            ":next": _to_dynamo(from_attempt + 1),
            ":now": _to_dynamo(now),
            ":resuming": _to_dynamo(RunStatus.RESUMING.value),
            ":reason": _to_dynamo(reason),
            ":none": {"NULL": True},
            **{f":f{index}": _to_dynamo(value) for index, value in enumerate(_FINAL)},
        }
        final_list = ", ".join(f":f{index}" for index in range(len(_FINAL)))
        return self._conditional_update(
            run_id,
            update=(
                "SET attempt = :next, #status = :resuming, #updated = :now, "
                "task_token = :none, #attempts.#n.end_reason = :reason, "
                "#attempts.#n.ended_at = :now REMOVE " + ", ".join(removes)
            ),
            condition=(
                f"attempt = :attempt AND NOT #status IN ({final_list}) "
                "AND attribute_exists(#attempts.#n)"
            ),
            names=names,
            values=values,
        )

    def _conditional_update(
        self,
        run_id: str,
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> bool:
        """One UpdateItem under a condition; False (not an error) when the condition fails."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"run_id": {"S": run_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

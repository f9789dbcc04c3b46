"""The agent's writes to its run's item in the runs table: status, latest_metrics, updated_at.

Each is conditional on the item still being this attempt's and live, so a late agent can never
overwrite a run that was finalized or moved on to another attempt.
"""

from __future__ import annotations

import json
import logging
import threading
from decimal import Decimal
from typing import Any, Callable, Union

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from .bounds import fit_json
from .clock import utc_now_iso
from .result import SETUP_REPORT_JSON_BYTES

logger = logging.getLogger(__name__)

STAGING = "STAGING"
RUNNING = "RUNNING"
# Set when an interruption notice came: the agent is saving the last checkpoint before it goes.
CHECKPOINTING = "CHECKPOINTING"
# Statuses the agent may write over (lambdas/models/run_record.py, RunStatus).
WRITABLE_STATUSES = ("LAUNCHING", STAGING, RUNNING, CHECKPOINTING)
# Every status of a run not yet final: an attempt's own checkpoints.<attempt> entry may still be
# written after the run moved on to the next attempt (the interrupted one's last upload).
LIVE_STATUSES = (*WRITABLE_STATUSES, "PENDING", "INTERRUPTED", "RESUMING")

_serializer = TypeSerializer()
# A top-level attribute, or a document path into a map attribute.
Field = Union[str, tuple[str, ...]]


class RunRecord:
    def __init__(
        self,
        client: Any,
        table_name: str,
        run_id: str,
        attempt: int,
        clock: Callable[[], str] = utc_now_iso,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.run_id = run_id
        self.attempt = attempt
        self.clock = clock
        self._status_lock = threading.Lock()
        self._checkpointing = False

    def set_status(self, status: str, reason: str | None = None) -> bool:
        """Once CHECKPOINTING was written (or tried), the agent writes no other status: a RUNNING
        from the main thread racing the notice must not hide the interruption."""
        with self._status_lock:  # held across the call, so the two writers land in order
            if self._checkpointing:
                logger.info("run item status stays %s (not %s)", CHECKPOINTING, status)
                return False
            if status == CHECKPOINTING:
                self._checkpointing = True
            fields: dict[Field, dict[str, Any]] = {"status": {"S": status}}
            if reason is not None:
                # Why: the task failure's cause can be lost (the emulator drops it), and
                # PlanNextAttempt must still tell a rebalance from a spot interruption.
                fields["interrupted_by"] = {"S": reason}
            return self._update(fields)

    def set_latest_metrics(self, metrics: dict[str, Any]) -> bool:
        return self._update({"latest_metrics": {"M": numbers_to_attributes(metrics)}})

    def set_setup(self, phases: dict[str, Any]) -> bool:
        """This attempt's set-up phases (environment, GPU) under setup.<attempt>: written as soon
        as they are known, so an attempt that is interrupted later still shows them. A report
        over SETUP_REPORT_JSON_BYTES is left out (None), as in the result: the run item holds
        the newest attempts' set-up within DynamoDB's 400 KB."""
        capped = {
            name: fit_json(report, SETUP_REPORT_JSON_BYTES) for name, report in phases.items()
        }
        value = _serializer.serialize(json.loads(json.dumps(capped), parse_float=Decimal))
        return self._update({("setup", str(self.attempt)): value})

    def set_checkpoints(self, facts: dict[str, Any]) -> bool:
        """This attempt's checkpoint facts under checkpoints.<attempt> (resumed from, the newest
        durable, never durable): written while the run is live, also after it moved on to the
        next attempt, as an interrupted attempt's last upload comes after that."""
        value = _serializer.serialize(json.loads(json.dumps(facts), parse_float=Decimal))
        return self._update({("checkpoints", str(self.attempt)): value}, own_attempt_only=False)

    def _update(self, fields: dict[Field, dict[str, Any]], own_attempt_only: bool = True) -> bool:
        """True when written; a failed condition or an AWS error is logged, never raised: the run's
        outcome travels by result.json and the task token, not by these writes. A tuple key is a
        document path (a map's member). Only while the item is this attempt's and the agent's to
        write; with `own_attempt_only` False, while the run is live at this attempt or a later."""
        allowed = WRITABLE_STATUSES if own_attempt_only else LIVE_STATUSES
        statuses = {f":s{index}": {"S": status} for index, status in enumerate(allowed)}
        paths = [(key,) if isinstance(key, str) else key for key in fields]
        # "#f<i>" names a field; "#f<i>_<d>" the parts of a path below it.
        refs = [
            [f"#f{index}" + (f"_{depth}" if depth else "") for depth in range(len(path))]
            for index, path in enumerate(paths)
        ]
        names = {ref: part for path, parts in zip(paths, refs) for ref, part in zip(parts, path)}
        values = {f":v{index}": value for index, value in enumerate(fields.values())}
        sets = ", ".join(f"{'.'.join(parts)} = :v{index}" for index, parts in enumerate(refs))
        name = ", ".join(".".join(path) for path in paths)
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"run_id": {"S": self.run_id}},
                UpdateExpression=f"SET {sets}, #updated = :now",
                ConditionExpression=(
                    f"#attempt {'=' if own_attempt_only else '>='} :attempt "
                    f"AND #status IN ({', '.join(statuses)})"
                ),
                ExpressionAttributeNames={
                    **names,
                    "#updated": "updated_at",
                    "#attempt": "attempt",
                    "#status": "status",
                },
                ExpressionAttributeValues={
                    **values,
                    ":now": {"S": self.clock()},
                    ":attempt": {"N": str(self.attempt)},
                    **statuses,
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                logger.info("run item not updated (%s): it is final or another attempt's", name)
            else:
                logger.warning("cannot update run item (%s): %s", name, error)
            return False
        except BotoCoreError as error:
            logger.warning("cannot update run item (%s): %s", name, error)
            return False
        return True


def numbers_to_attributes(values: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB number attributes; values DynamoDB cannot hold (e.g. 1e300) are left out."""
    attributes = {}
    for key, value in values.items():
        try:
            attributes[key] = _serializer.serialize(Decimal(repr(value)))
        except (ArithmeticError, TypeError, ValueError):
            logger.debug("metric %s=%r does not fit a DynamoDB number", key, value)
    return attributes

"""ReleasePreviousAttempt: let an interrupted attempt finish its checkpoint, then end it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from lambdas.constants import handoff_key
from lambdas.integrations.ec2_fleet import Ec2Fleet
from lambdas.models.steps import ReadyProbe, ReleaseInput


def _handoff_written(s3: Any, bucket: str, run_id: str, attempt: int) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=handoff_key(run_id, attempt))
    except ClientError as error:
        if error.response["Error"]["Code"] in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def release_previous_attempt(
    request: ReleaseInput, fleet: Ec2Fleet, s3: Any, bucket: str, now: float
) -> ReadyProbe:
    """Ready when there is nothing to wait for; the previous attempt's instances are then gone."""
    previous = request.previous
    if previous is None:
        return ReadyProbe(ready=True, detail="first attempt")
    run_id = request.run.run_id
    live = [item.instance_id for item in fleet.attempt_instances(run_id, previous.attempt)]
    if previous.await_handoff and live:
        if not _handoff_written(s3, bucket, run_id, previous.attempt):
            if now < previous.release_deadline:
                return ReadyProbe(ready=False, detail="previous attempt still checkpointing")
            detail = "previous attempt gave no handoff before the deadline: terminated"
        else:
            detail = "previous attempt handed off its checkpoint: terminated"
    else:
        detail = "previous attempt released"
    fleet.terminate(live)
    return ReadyProbe(ready=True, detail=detail)

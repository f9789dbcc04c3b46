"""OnInstanceEvent: EC2 says an instance is about to go, or went. Act once, for live runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.constants import ERROR_INSTANCE_LOST, TAG_ATTEMPT, TAG_MANAGED, TAG_RUN_ID
from lambdas.dal.runs_table import RunsTable
from lambdas.integrations.ssm_commands import SsmCommands
from lambdas.logic.agent_commands import send_notice
from lambdas.models.run_record import RunStatus

SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
STATE_CHANGE = "EC2 Instance State-change Notification"
GONE_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
# Only while the agent works and has not already ended the token for a notice of its own.
ACTIVE = frozenset({RunStatus.STAGING, RunStatus.RUNNING})
# Token already ended, expired or unknown: someone else (the agent, a duplicate) got there first.
_TOKEN_GONE = frozenset({"TaskDoesNotExist", "TaskTimedOut", "InvalidToken"})


@dataclass(frozen=True)
class InstanceEvent:
    detail_type: str
    instance_id: str
    time: str
    state: str | None = None
    action_time: str | None = None


def instance_tags(ec2: Any, instance_id: str) -> dict[str, str]:
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "InvalidInstanceID.NotFound":
            return {}
        raise
    instances = [item for res in reservations for item in res["Instances"]]
    tags = instances[0].get("Tags", []) if instances else []
    return {tag["Key"]: tag["Value"] for tag in tags}


def handle_instance_event(
    event: InstanceEvent,
    ec2: Any,
    table: RunsTable,
    commands: SsmCommands,
    sfn: Any,
) -> str:
    """Returns what was done, in a few words (logged, and asserted by tests)."""
    tags = instance_tags(ec2, event.instance_id)
    if tags.get(TAG_MANAGED) != "true" or TAG_RUN_ID not in tags:
        return "ignored: not a runctl instance"
    run_id, attempt = tags[TAG_RUN_ID], int(tags.get(TAG_ATTEMPT, "0"))
    record = table.get(run_id)
    if record is None or record.attempt != attempt or record.status not in ACTIVE:
        return "ignored: late, duplicate or for an attempt that is not working"
    if event.detail_type in {SPOT_WARNING, REBALANCE}:
        kind = "spot-interrupted" if event.detail_type == SPOT_WARNING else "rebalance"
        send_notice(
            commands,
            event.instance_id,
            kind,
            event.time,
            event.action_time,
            source="eventbridge",
            comment=f"runctl notice {kind} {run_id}",
        )
        return f"notice {kind} sent to the agent"
    if event.detail_type == STATE_CHANGE and event.state in GONE_STATES and record.task_token:
        try:
            sfn.send_task_failure(
                taskToken=record.task_token,
                error=ERROR_INSTANCE_LOST,
                cause=f"instance {event.instance_id} is {event.state} (no interruption notice)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] in _TOKEN_GONE:
                return "ignored: the task had already ended"
            raise
        return "task failed: instance lost"
    return "ignored: nothing to do"

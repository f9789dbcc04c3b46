"""The Lambdas EventBridge starts (EVENT_HANDLERS): EC2 instance events, and the orphan reaper.

Every rule target retries and has a dead-letter queue, and each function sends the events its own
retries could not handle to that same queue, so a lost event always ends up somewhere with an
alarm on it. EventBridge's retry policy and DLQ cover only delivery to Lambda (throttling, a
missing function); once Lambda has queued the event, errors in the handler are retried by Lambda's
asynchronous invocation settings instead (configured below with the same queue as on-failure
destination).
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from lambdas.functions import EVENT_HANDLERS, LambdaStep
from stacks.event_targets import Delivery, EventTargets
from stacks.orchestration import Orchestration
from stacks.step_permissions import EventHandlerPermissions

EC2_SOURCE: Final = "aws.ec2"
SPOT_WARNING: Final = "EC2 Spot Instance Interruption Warning"
REBALANCE: Final = "EC2 Instance Rebalance Recommendation"
STATE_CHANGE: Final = "EC2 Instance State-change Notification"
# The states in which the instance is gone or going; `pending`/`running` say nothing new.
LOST_STATES: Final = ("shutting-down", "terminated", "stopping", "stopped")

REAPER_RATE: Final = Duration.minutes(5)
EVENTBRIDGE_MAX_EVENT_AGE: Final = Duration.hours(24)  # the most EventBridge allows


class InstanceEvents(EventTargets):
    """OnInstanceEvent with its three EC2 rules, ReapOrphans with its schedule; a DLQ and an
    alarm per function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        orchestration: Orchestration,
        permissions: EventHandlerPermissions,
        heartbeat_seconds: int,
    ) -> None:
        super().__init__(scope, construct_id)
        handlers = {entry.name: entry for entry in EVENT_HANDLERS}

        # --- OnInstanceEvent -------------------------------------------------------------------
        # EventBridge cannot match on instance tags (the events carry only the instance id), so
        # these rules see every instance in the account and region; the handler describes the
        # instance and drops the event unless it is tagged runctl:managed=true.
        #
        # Delivery deadlines: a spot warning comes two minutes before the instance is reclaimed,
        # and the agent's own IMDS poll usually sees it first; after two minutes there is no
        # instance to tell. A rebalance recommendation asks for a checkpoint "soon": ten minutes
        # late it still may help, later the risk has either passed or become a warning. A lost
        # instance matters until the Train state's heartbeat timeout (the backstop) would have
        # ended the task anyway, so that event lives one heartbeat plus a minute.
        lost_instance_age = Duration.seconds(
            min(heartbeat_seconds + 60, int(EVENTBRIDGE_MAX_EVENT_AGE.to_seconds()))
        )
        on_instance_event = self._function(
            orchestration, permissions, handlers["OnInstanceEvent"], Duration.seconds(60)
        )
        self._on_failure(
            "OnInstanceEvent",
            on_instance_event,
            # Lambda's own retries of a failed handler (about 1 and 2 minutes later).
            retry_attempts=2,
            max_event_age=max(lost_instance_age, Duration.minutes(10), key=_seconds),
        )
        ec2_rules = {
            "SpotInterruptionWarning": (
                events.EventPattern(source=[EC2_SOURCE], detail_type=[SPOT_WARNING]),
                Delivery(retry_attempts=4, max_event_age=Duration.minutes(2)),
                "spot interruption warnings: the agent checkpoints and hands off",
            ),
            "RebalanceRecommendation": (
                events.EventPattern(source=[EC2_SOURCE], detail_type=[REBALANCE]),
                Delivery(retry_attempts=4, max_event_age=Duration.minutes(10)),
                "rebalance recommendations: the agent checkpoints (or migrates)",
            ),
            "InstanceGone": (
                events.EventPattern(
                    source=[EC2_SOURCE],
                    detail_type=[STATE_CHANGE],
                    detail={"state": list(LOST_STATES)},
                ),
                Delivery(retry_attempts=4, max_event_age=lost_instance_age),
                "instances going away without a warning: the run's task fails as InstanceLost",
            ),
        }
        for rule_id, (pattern, delivery, what) in ec2_rules.items():
            self.rules[rule_id] = self._rule(
                rule_id,
                "OnInstanceEvent",
                on_instance_event,
                delivery,
                f"runctl: {what} (runctl-tagged instances only, checked by the handler)",
                event_pattern=pattern,
            )

        # --- ReapOrphans -----------------------------------------------------------------------
        # A tick delivered late is worth nothing once the next one has fired: it may retry for
        # one period, and Lambda does not retry a failed sweep (the next tick is the retry).
        reap_orphans = self._function(
            orchestration, permissions, handlers["ReapOrphans"], Duration.minutes(4)
        )
        self._on_failure("ReapOrphans", reap_orphans, retry_attempts=0, max_event_age=REAPER_RATE)
        self.rules["ReapOrphansSchedule"] = self._rule(
            "ReapOrphansSchedule",
            "ReapOrphans",
            reap_orphans,
            Delivery(retry_attempts=2, max_event_age=REAPER_RATE),
            "runctl: every 5 minutes, terminate instances no live run owns and stop overdue runs",
            schedule=events.Schedule.rate(REAPER_RATE),
        )

    def _function(
        self,
        orchestration: Orchestration,
        permissions: EventHandlerPermissions,
        entry: LambdaStep,
        timeout: Duration,
    ) -> lambda_.Function:
        function = orchestration.build_function(
            self, entry, description=f"runctl event handler {entry.name}", timeout=timeout
        )
        permissions.grant(entry.name, function)
        self.functions[entry.name] = function
        return function


def _seconds(duration: Duration) -> float:
    return duration.to_seconds()

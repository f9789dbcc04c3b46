"""Event targets that lose no event: each function's EventBridge rules (and schedules) retry
delivery and send what they could not deliver to the function's one dead-letter queue, which also
receives the events the function itself failed on; an alarm goes off when that queue holds one.
Shared by the instance-event handlers and the pipelines (StartPipelineRun)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.nag_acknowledgements import acknowledge

DEAD_LETTER_RETENTION: Final = Duration.days(14)  # the SQS maximum: time to look


@dataclass(frozen=True)
class Delivery:
    """How hard EventBridge tries to hand one rule's event to its function."""

    retry_attempts: int
    max_event_age: Duration


class EventTargets(Construct):
    """Functions started by events, with their rules, dead-letter queues and alarms by name."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, lambda_.Function] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.rules: dict[str, events.Rule] = {}

    def _dead_letter_queue(self, name: str) -> sqs.Queue:
        """The one DLQ of function `name`: its rules' undelivered events and its failed ones."""
        if name in self.dead_letter_queues:
            return self.dead_letter_queues[name]
        queue = sqs.Queue(
            self,
            f"{name}DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
        )
        acknowledge(
            queue,
            "SQS3",
            f"it is the dead-letter queue (of the {name} rules and function); nothing consumes "
            "from it, so it needs no DLQ of its own",
        )
        # No action: an alarm in ALARM state is the signal; wire SNS to it where wanted.
        self.alarms[name] = cloudwatch.Alarm(
            self,
            f"{name}DeadLettersAlarm",
            alarm_description=f"runctl: {name} events were not handled (see its dead-letter "
            "queue, which keeps them 14 days)",
            metric=queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.dead_letter_queues[name] = queue
        return queue

    def _on_failure(
        self,
        name: str,
        function: lambda_.Function,
        *,
        retry_attempts: int,
        max_event_age: Duration,
    ) -> None:
        function.configure_async_invoke(
            retry_attempts=retry_attempts,
            max_event_age=max_event_age,
            on_failure=destinations.SqsDestination(self._dead_letter_queue(name)),
        )

    def _rule(
        self,
        rule_id: str,
        name: str,
        function: lambda_.Function,
        delivery: Delivery,
        description: str,
        *,
        event_pattern: events.EventPattern | None = None,
        schedule: events.Schedule | None = None,
    ) -> events.Rule:
        rule = events.Rule(
            self,
            rule_id,
            description=description,
            event_pattern=event_pattern,
            schedule=schedule,
        )
        # The L2 target also writes the queue policy that lets this rule (aws:SourceArn) send.
        rule.add_target(
            targets.LambdaFunction(
                function,
                dead_letter_queue=self._dead_letter_queue(name),
                retry_attempts=delivery.retry_attempts,
                max_event_age=delivery.max_event_age,
            )
        )
        return rule

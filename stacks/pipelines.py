"""Pipelines (issue #5): StartPipelineRun, one S3 marker rule per watched bucket, and each
pipeline's schedule, with the same retries, dead-letter queue and alarm as the instance events.

Built only when `runctl:pipelines` has entries. The rule matches a version's marker only
(`<prefix>*/<marker>`, lambdas/logic/pipelines.py), so uploading a version's data files invokes
nothing. A data bucket outside this stack must send its events to EventBridge itself (its
"Amazon EventBridge" notification setting); the runctl bucket does when a pipeline watches it.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration, RemovalPolicy, Stack, TimeZone
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.functions import START_PIPELINE_RUN
from lambdas.logic.pipelines import marker_event_pattern, pipelines_by_bucket
from lambdas.models.pipeline import (
    Pipeline,
    PipelineFunctionEnv,
    pipelines_env_value,
    schedule_payload,
)
from stacks.compute import Compute
from stacks.event_targets import Delivery, EventTargets
from stacks.nag_acknowledgements import acknowledge_resource_wildcard
from stacks.orchestration import Orchestration
from stacks.step_permissions import PipelinePermissions

# Powertools' DynamoDBPersistenceLayer defaults: partition key and TTL attribute.
TRIGGERS_KEY: Final = "id"
TRIGGERS_TTL_ATTRIBUTE: Final = "expiration"
# A version's run is worth starting late rather than never: EventBridge's longest event age.
MARKER_DELIVERY: Final = Delivery(retry_attempts=8, max_event_age=Duration.hours(24))
# A schedule tick picks the newest version whenever it arrives, but the next tick does the same.
SCHEDULE_DELIVERY: Final = Delivery(retry_attempts=2, max_event_age=Duration.hours(1))


class Pipelines(EventTargets):
    """StartPipelineRun and what starts it: marker rules, schedules, their dead-letter queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipelines: tuple[Pipeline, ...],
        orchestration: Orchestration,
        bucket: s3.IBucket,
        runs_table: dynamodb.ITable,
        compute: Compute,
        train_run: sfn.StateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        name = START_PIPELINE_RUN.name

        # Which data versions already have their run (Powertools idempotency records, kept a
        # year). Not in the runs table: the reaper scans that, and these items are not runs.
        # Destroyed with the stack: execution names still refuse a repeat for 90 days after.
        self.triggers_table = dynamodb.Table(
            self,
            "TriggersTable",
            partition_key=dynamodb.Attribute(name=TRIGGERS_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TRIGGERS_TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )

        function = orchestration.build_function(
            self,
            START_PIPELINE_RUN,
            description="runctl StartPipelineRun: a data version's marker or a pipeline "
            "schedule starts TrainRun",
        )
        variables = {
            "STATE_MACHINE_ARN": train_run.state_machine_arn,
            "PIPELINE_TRIGGERS_TABLE_NAME": self.triggers_table.table_name,
            "PIPELINES": pipelines_env_value(pipelines),
        }
        # What the handler will parse, checked now rather than at its first event.
        PipelineFunctionEnv.model_validate({**variables, "BUCKET_NAME": bucket.bucket_name})
        for variable, value in variables.items():
            function.add_environment(variable, value)
        PipelinePermissions(
            bucket=bucket,
            runs_table=runs_table,
            compute=compute,
            train_run=train_run,
            triggers_table=self.triggers_table,
            pipelines=pipelines,
        ).grant(name, function)
        self.functions[name] = function
        # Lambda's own retries of a failed start (throttling, a busy idempotency record).
        self._on_failure(name, function, retry_attempts=2, max_event_age=Duration.hours(6))

        for watched in pipelines_by_bucket(pipelines, bucket.bucket_name).values():
            self._marker_rule(name, function, watched, bucket)
        self.schedules: dict[str, scheduler.Schedule] = {}
        scheduled = [pipeline for pipeline in pipelines if pipeline.schedule is not None]
        if scheduled:
            role = self._scheduler_role(function)
            for pipeline in scheduled:
                self.schedules[pipeline.name] = self._schedule(name, function, pipeline, role)

    def _marker_rule(
        self,
        name: str,
        function: lambda_.Function,
        watched: list[Pipeline],
        runctl_bucket: s3.IBucket,
    ) -> None:
        external = watched[0].watch.bucket
        bucket_name = external or runctl_bucket.bucket_name
        pattern = marker_event_pattern(bucket_name, watched)
        rule_id = f"MarkersIn-{external}" if external else "MarkersInRunctlBucket"
        self.rules[rule_id] = self._rule(
            rule_id,
            name,
            function,
            MARKER_DELIVERY,
            f"runctl: a data version's marker in {external or 'the runctl bucket'} starts "
            f"pipelines {', '.join(item.name for item in watched)}",
            event_pattern=events.EventPattern(
                source=pattern["source"],
                detail_type=pattern["detail-type"],
                detail=pattern["detail"],
            ),
        )

    def _scheduler_role(self, function: lambda_.Function) -> iam.Role:
        """What the schedules act as: invoke StartPipelineRun, and (added by each target) send
        to its dead-letter queue."""
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
            description="runctl pipeline schedules: invoke StartPipelineRun",
        )
        acknowledge_resource_wildcard(
            role,
            f"{function.function_arn}:*",
            "grant_invoke adds '<function arn>:*' for the versions and aliases of "
            "StartPipelineRun only",
        )
        return role

    def _schedule(
        self, name: str, function: lambda_.Function, pipeline: Pipeline, role: iam.Role
    ) -> scheduler.Schedule:
        assert pipeline.schedule is not None
        return scheduler.Schedule(
            self,
            f"{pipeline.name}Schedule",
            description=f"runctl: pipeline {pipeline.name} runs on its newest data version "
            "(nothing new starts when that version already has its run)",
            schedule=scheduler.ScheduleExpression.expression(
                pipeline.schedule.expression, TimeZone.of(pipeline.schedule.timezone)
            ),
            target=scheduler_targets.LambdaInvoke(
                function,
                input=scheduler.ScheduleTargetInput.from_object(schedule_payload(pipeline)),
                dead_letter_queue=self._dead_letter_queue(name),
                retry_attempts=SCHEDULE_DELIVERY.retry_attempts,
                max_event_age=SCHEDULE_DELIVERY.max_event_age,
                role=role,
            ),
        )

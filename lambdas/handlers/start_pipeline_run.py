"""StartPipelineRun: a pipeline's marker landed (S3 -> EventBridge rule), or its schedule fired
(EventBridge Scheduler); start one TrainRun for that data version, unless it already has one."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.integrations.aws_clients import aws_client
from lambdas.integrations.data_versions import DataVersions
from lambdas.logic.pipelines import RunStarter, start_for_marker, start_newest
from lambdas.models.pipeline import PIPELINE_TRIGGER, PipelineFunctionEnv, ScheduledStart
from lambdas.observability import logger, metrics, tracer

METRIC_BY_STATUS = {
    "started": "PipelineRunsStarted",
    "duplicate": "PipelineDuplicateTriggers",
    "no-version": "PipelineTriggersWithoutVersion",
}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # An S3 marker event or a schedule's payload, told apart by `source`.
    trigger = PIPELINE_TRIGGER.validate_python(event)
    # Read per invocation, not cached: local mode runs several deployments in one process.
    env = PipelineFunctionEnv.model_validate(dict(os.environ))
    versions = DataVersions(aws_client("s3"))
    starter = RunStarter(
        aws_client("stepfunctions"),
        env.STATE_MACHINE_ARN,
        triggers_table=env.PIPELINE_TRIGGERS_TABLE_NAME,
        dynamodb=aws_client("dynamodb"),
        lambda_context=context,
    )
    if isinstance(trigger, ScheduledStart):
        outcomes = [
            start_newest(trigger.pipeline, env.PIPELINES, env.BUCKET_NAME, versions, starter)
        ]
    else:
        outcomes = start_for_marker(trigger, env.PIPELINES, env.BUCKET_NAME, versions, starter)
        if not outcomes:
            # The rule's wildcard also lets deeper keys through; a version is one folder down.
            logger.info(
                "not a version marker of any pipeline", extra={"key": trigger.detail.object.key}
            )
    for outcome in outcomes:
        metrics.add_metric(name=METRIC_BY_STATUS[outcome.status], unit=MetricUnit.Count, value=1)
        logger.info(
            f"pipeline {outcome.pipeline}: {outcome.status}",
            extra=outcome.model_dump(mode="json", exclude_none=True),
        )
    return {"outcomes": [outcome.model_dump(mode="json") for outcome in outcomes]}

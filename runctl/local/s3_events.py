"""Pipelines in local mode (issue #5): S3 marker events reach StartPipelineRun through the
stack's own rule pattern, and schedules can be fired by hand.

moto sends S3 Object Created events to EventBridge and matches rule patterns, but a Lambda target
does nothing there. So each watched bucket's rule (the pattern `cdk deploy` creates, from
lambdas/logic/pipelines.py) gets an SQS queue as its target, and PipelineEventDelivery drains
that queue into StartPipelineRun, one invocation per event, as EventBridge would: whether an
upload starts anything is decided by the deployed pattern, not by this module.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import boto3

from lambdas.functions import START_PIPELINE_RUN
from lambdas.logic.pipelines import marker_event_pattern, pipelines_by_bucket
from lambdas.models.pipeline import Pipeline, pipelines_env_value, schedule_payload

logger = logging.getLogger(__name__)

# Powertools' DynamoDBPersistenceLayer key (stacks/pipelines.py creates the same table).
TRIGGERS_KEY = "id"


class PipelineInvokeFailed(RuntimeError):
    """StartPipelineRun raised; the message is its error type and message."""


def deploy_pipelines(
    session: boto3.session.Session,
    *,
    name: str,
    pipelines: tuple[Pipeline, ...],
    runctl_bucket: str,
    environment: dict[str, str],
    state_machine_arn: str,
    role_arn: str,
    code_zip: bytes,
) -> tuple[str, str]:
    """Create what stacks/pipelines.py creates, with a queue in place of the Lambda target.
    Returns (StartPipelineRun's ARN, the marker queue's URL)."""
    s3, ddb, lam = session.client("s3"), session.client("dynamodb"), session.client("lambda")
    sqs, events = session.client("sqs"), session.client("events")

    triggers_table = f"{name}-pipeline-triggers"
    ddb.create_table(
        TableName=triggers_table,
        AttributeDefinitions=[{"AttributeName": TRIGGERS_KEY, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": TRIGGERS_KEY, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    function_arn = lam.create_function(
        FunctionName=f"{name}-{START_PIPELINE_RUN.name}",
        Runtime="python3.11",
        Role=role_arn,
        Handler=START_PIPELINE_RUN.handler,
        Code={"ZipFile": code_zip},
        Environment={
            "Variables": {
                **environment,
                "STATE_MACHINE_ARN": state_machine_arn,
                "PIPELINE_TRIGGERS_TABLE_NAME": triggers_table,
                "PIPELINES": pipelines_env_value(pipelines),
            }
        },
        Timeout=60,
    )["FunctionArn"]

    queue_url = sqs.create_queue(QueueName=f"{name}-pipeline-markers")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    by_bucket = pipelines_by_bucket(pipelines, runctl_bucket)
    for index, (bucket, watched) in enumerate(by_bucket.items()):
        if bucket != runctl_bucket:
            s3.create_bucket(Bucket=bucket)  # a data bucket outside the stack, emulated here
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        rule = f"{name}-pipeline-markers-{index}"
        events.put_rule(Name=rule, EventPattern=json.dumps(marker_event_pattern(bucket, watched)))
        events.put_targets(Rule=rule, Targets=[{"Id": "StartPipelineRun", "Arn": queue_arn}])
    return function_arn, queue_url


class PipelineEventDelivery:
    """Drains the marker queue into StartPipelineRun (a thread), and invokes it on request."""

    def __init__(self, function_arn: str, queue_url: str, region: str) -> None:
        session = boto3.session.Session(region_name=region)
        self._lambda = session.client("lambda")
        self._sqs = session.client("sqs")
        self._function_arn = function_arn
        self._queue_url = queue_url
        # (event, StartPipelineRun's answer or its error) for every event the rule let through.
        self.delivered: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._busy = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke StartPipelineRun with `event` now (a duplicated delivery, for instance)."""
        answer = self._invoke(event)
        if "errorType" in answer:
            raise PipelineInvokeFailed(f"{answer['errorType']}: {answer.get('errorMessage')}")
        return answer

    def fire_schedule(self, pipeline: Pipeline) -> dict[str, Any]:
        """What the pipeline's EventBridge Scheduler schedule does when it fires."""
        return self.send(schedule_payload(pipeline))

    def flush(self, timeout_seconds: float = 60) -> None:
        """Return once every event queued so far has been handed to StartPipelineRun."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            counts = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            if not self._busy.is_set() and not any(int(value) for value in counts.values()):
                return
            self._stop.wait(0.05)
        raise TimeoutError(f"marker events still queued after {timeout_seconds} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self._deliver_some()
            except Exception:
                # As EventBridge would, try again: the message returns to the queue once its
                # visibility timeout passes.
                logger.exception("cannot deliver a marker event; it stays queued")
                self._stop.wait(1)

    def _deliver_some(self) -> None:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        for message in messages:
            self._busy.set()
            try:
                event = json.loads(message["Body"])
                self.delivered.append((event, self._invoke(event)))
                self._sqs.delete_message(
                    QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            finally:
                self._busy.clear()

    def _invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        response = self._lambda.invoke(
            FunctionName=self._function_arn, Payload=json.dumps(event).encode()
        )
        return dict(json.loads(response["Payload"].read() or b"{}"))

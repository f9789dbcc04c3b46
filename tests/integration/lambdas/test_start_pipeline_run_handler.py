"""StartPipelineRun against moto: S3 events routed by the real rule pattern, one run per data
version (idempotency table and execution names), and schedules starting the newest version."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import moto.s3.models
import pytest

from lambdas.handlers import start_pipeline_run
from lambdas.logic.pipelines import PipelineNotFound, marker_event_pattern
from lambdas.models.pipeline import Pipeline, pipelines_env_value, schedule_payload
from tests.integration.lambdas.conftest import BUCKET, CODE_KEY, START

TRIGGERS_TABLE = "runctl-pipeline-triggers"
TEMPLATE = {"code": {"s3_uri": f"s3://{BUCKET}/{CODE_KEY}"}, "entry_point": "train.py"}
IMAGENET = Pipeline.model_validate(
    {"name": "imagenet", "watch": {"prefix": "data/imagenet/"}, "run": TEMPLATE}
)
# A second pipeline on the same data, and one elsewhere.
IMAGENET_SMALL = Pipeline.model_validate(
    {
        "name": "imagenet-small",
        "watch": {"prefix": "data/imagenet/"},
        "data_name": "images",
        "run": {**TEMPLATE, "hyperparameters": {"subset": 0.1}},
    }
)
TEXT = Pipeline.model_validate(
    {"name": "text", "watch": {"prefix": "data/text/", "marker": "MANIFEST.json"}, "run": TEMPLATE}
)


@dataclass
class RemainingTimeContext:
    """The Lambda context parts Powertools' idempotency reads (it bounds the in-progress record
    by the invocation's remaining time)."""

    function_name: str = "runctl-StartPipelineRun"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:runctl-Start"
    aws_request_id: str = "request-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class S3Clock:
    """moto's clock for object timestamps, so 'newest' can differ from 'sorts last'."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> Any:
        return self.now.replace(tzinfo=None)


@dataclass
class PipelineDeployment:
    aws: Any
    state_machine_arn: str
    queue_url: str
    clock: S3Clock

    def put_version(
        self, prefix: str, version: str, files: int, marker: str = "_READY", body: bytes = b"ok"
    ) -> str:
        for index in range(files):
            self.aws.s3.put_object(
                Bucket=BUCKET, Key=f"{prefix}{version}/part-{index:04d}.bin", Body=b"x" * 16
            )
        key = f"{prefix}{version}/{marker}"
        self.aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return key

    def matched_events(self) -> list[dict[str, Any]]:
        """Every event the pipelines' rule let through so far (moto's own pattern matching)."""
        found = []
        while messages := self.aws.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10
        ).get("Messages"):
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.aws.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return found

    def executions(self) -> list[dict[str, Any]]:
        return self.aws.stepfunctions.list_executions(stateMachineArn=self.state_machine_arn)[
            "executions"
        ]

    def execution_input(self, arn: str) -> dict[str, Any]:
        described = self.aws.stepfunctions.describe_execution(executionArn=arn)
        return dict(json.loads(described["input"]))

    def forget_triggers(self) -> None:
        """What a year-old idempotency record's expiry (or a lost table) amounts to."""
        table = self.aws.dynamodb
        for item in table.scan(TableName=TRIGGERS_TABLE)["Items"]:
            table.delete_item(TableName=TRIGGERS_TABLE, Key={"id": item["id"]})


@pytest.fixture
def deploy(
    aws, bucket, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., PipelineDeployment]]:
    """Given pipelines: the triggers table, a TrainRun stand-in, StartPipelineRun's environment,
    and the bucket's events routed by the stack's own pattern to a queue the test reads."""
    clock = S3Clock()
    monkeypatch.setattr(moto.s3.models, "utcnow", clock)

    def build(*pipelines: Pipeline) -> PipelineDeployment:
        aws.dynamodb.create_table(
            TableName=TRIGGERS_TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # Not executed (moto's default): each execution stays RUNNING, enough to count starts.
        state_machine_arn = aws.stepfunctions.create_state_machine(
            name="TrainRun",
            definition=json.dumps({"StartAt": "Run", "States": {"Run": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/train-run",
        )["stateMachineArn"]
        aws.s3.put_bucket_notification_configuration(
            Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        queue_url = aws.sqs.create_queue(QueueName=f"markers-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        queue_arn = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        aws.events.put_rule(
            Name="pipeline-markers",
            EventPattern=json.dumps(marker_event_pattern(BUCKET, pipelines)),
        )
        aws.events.put_targets(
            Rule="pipeline-markers", Targets=[{"Id": "markers", "Arn": queue_arn}]
        )
        for name, value in {
            "BUCKET_NAME": BUCKET,
            "STATE_MACHINE_ARN": state_machine_arn,
            "PIPELINE_TRIGGERS_TABLE_NAME": TRIGGERS_TABLE,
            "PIPELINES": pipelines_env_value(pipelines),
        }.items():
            monkeypatch.setenv(name, value)
        return PipelineDeployment(aws, state_machine_arn, queue_url, clock)

    yield build


@pytest.fixture
def handle() -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """Run StartPipelineRun on one event the way Lambda does (JSON in, JSON out)."""

    def call(event: dict[str, Any]) -> list[dict[str, Any]]:
        answer = start_pipeline_run.lambda_handler(
            json.loads(json.dumps(event)), RemainingTimeContext()
        )
        return list(answer["outcomes"])

    return call


# --- a marker lands ----------------------------------------------------------------------------


def test_data_files_match_nothing_and_the_marker_starts_one_run_on_its_version(deploy, handle):
    deployment = deploy(IMAGENET)

    # When a version's 40 data files and then its marker are uploaded
    deployment.put_version("data/imagenet/", "2026-11-23", files=40)

    # Then the rule let exactly one event through, and it starts one run
    [event] = deployment.matched_events()
    assert event["detail"]["object"]["key"] == "data/imagenet/2026-11-23/_READY"
    [outcome] = handle(event)
    assert outcome["status"] == "started"
    [execution] = deployment.executions()
    assert execution["name"] == outcome["execution_name"]
    assert execution["name"].startswith("imagenet-2026-11-23-")
    # And the run's spec is the template plus the version's folder as data
    spec = deployment.execution_input(execution["executionArn"])
    assert spec["data"] == [
        {"s3_uri": f"s3://{BUCKET}/data/imagenet/2026-11-23/", "name": "dataset"}
    ]
    assert spec["code"] == TEMPLATE["code"]
    assert spec["experiment"] == "imagenet"


def test_the_same_marker_event_twice_starts_one_run(deploy, handle):
    deployment = deploy(IMAGENET)
    deployment.put_version("data/imagenet/", "v1", files=3)
    [event] = deployment.matched_events()

    first = handle(event)
    again = handle(event)

    assert [item["status"] for item in (*first, *again)] == ["started", "duplicate"]
    assert again[0]["execution_arn"] == first[0]["execution_arn"]
    assert len(deployment.executions()) == 1


def test_marker_reuploaded_with_the_same_bytes_is_the_same_version(deploy, handle):
    deployment = deploy(IMAGENET)
    deployment.put_version("data/imagenet/", "v1", files=3, body=b"complete")
    handle(deployment.matched_events()[0])

    # When the marker is written again with the same content (same ETag)
    deployment.aws.s3.put_object(Bucket=BUCKET, Key="data/imagenet/v1/_READY", Body=b"complete")
    [event] = deployment.matched_events()

    # Then nothing new starts
    assert [item["status"] for item in handle(event)] == ["duplicate"]
    assert len(deployment.executions()) == 1


def test_marker_with_new_bytes_is_a_new_version_and_starts_a_second_run(deploy, handle):
    deployment = deploy(IMAGENET)
    deployment.put_version("data/imagenet/", "v1", files=3, body=b"first")
    [first] = handle(deployment.matched_events()[0])

    deployment.aws.s3.put_object(Bucket=BUCKET, Key="data/imagenet/v1/_READY", Body=b"fixed")
    [second] = handle(deployment.matched_events()[0])

    assert second["status"] == "started"
    assert second["etag"] != first["etag"]
    assert second["execution_name"] != first["execution_name"]
    assert len(deployment.executions()) == 2


def test_execution_name_still_guards_once_the_trigger_record_is_gone(deploy, handle):
    # Given a version whose run has finished and whose trigger record has expired
    deployment = deploy(IMAGENET)
    deployment.put_version("data/imagenet/", "v1", files=2)
    [event] = deployment.matched_events()
    [first] = handle(event)
    deployment.aws.stepfunctions.stop_execution(executionArn=first["execution_arn"])
    deployment.forget_triggers()

    # When its marker event arrives again
    [again] = handle(event)

    # Then Step Functions refuses the name, and that counts as the version's run
    assert again["status"] == "duplicate"
    assert again["execution_arn"] == first["execution_arn"]
    assert len(deployment.executions()) == 1


def test_one_marker_starts_one_run_for_each_pipeline_on_that_data(deploy, handle):
    deployment = deploy(IMAGENET, IMAGENET_SMALL, TEXT)
    deployment.put_version("data/imagenet/", "v7", files=2)

    [event] = deployment.matched_events()
    outcomes = handle(event)

    assert {(item["pipeline"], item["status"]) for item in outcomes} == {
        ("imagenet", "started"),
        ("imagenet-small", "started"),
    }
    inputs = [deployment.execution_input(item["executionArn"]) for item in deployment.executions()]
    assert sorted(spec["data"][0]["name"] for spec in inputs) == ["dataset", "images"]


def test_markers_outside_the_version_folders_start_nothing(deploy, handle):
    deployment = deploy(IMAGENET, TEXT)

    # A marker two folders down passes the rule's wildcard but is not a version marker; a data
    # file named like another pipeline's marker, and a marker in another prefix, match nothing.
    deployment.aws.s3.put_object(Bucket=BUCKET, Key="data/imagenet/v1/train/_READY", Body=b"")
    deployment.aws.s3.put_object(Bucket=BUCKET, Key="data/imagenet/v1/MANIFEST.json", Body=b"")
    deployment.aws.s3.put_object(Bucket=BUCKET, Key="data/other/v1/_READY", Body=b"")

    [nested] = deployment.matched_events()
    assert nested["detail"]["object"]["key"] == "data/imagenet/v1/train/_READY"
    assert handle(nested) == []
    assert deployment.executions() == []


def test_a_marker_deleted_before_the_event_is_handled_starts_nothing(deploy, handle):
    deployment = deploy(IMAGENET)
    key = deployment.put_version("data/imagenet/", "v1", files=1)
    [event] = deployment.matched_events()
    deployment.aws.s3.delete_object(Bucket=BUCKET, Key=key)

    assert [item["status"] for item in handle(event)] == ["no-version"]
    assert deployment.executions() == []


# --- a schedule fires --------------------------------------------------------------------------


def test_schedule_starts_the_version_whose_marker_was_written_last(deploy, handle):
    deployment = deploy(IMAGENET)
    # Given a version that sorts last by name but was completed first
    deployment.put_version("data/imagenet/", "2026-11-24", files=2)
    deployment.clock.now += timedelta(hours=1)
    deployment.put_version("data/imagenet/", "2026-11-23-rerun", files=2)
    deployment.put_version("data/imagenet/", "incomplete", files=2, marker="not-the-marker")

    [outcome] = handle(schedule_payload(IMAGENET))

    assert outcome["status"] == "started"
    assert outcome["version_uri"] == f"s3://{BUCKET}/data/imagenet/2026-11-23-rerun/"
    [execution] = deployment.executions()
    assert (
        deployment.execution_input(execution["executionArn"])["data"][0]["s3_uri"]
        == (outcome["version_uri"])
    )


def test_schedule_without_new_data_starts_nothing_new(deploy, handle):
    # Given the newest version already started its run from its marker event
    deployment = deploy(IMAGENET)
    deployment.put_version("data/imagenet/", "v1", files=2)
    [from_event] = handle(deployment.matched_events()[0])

    [scheduled] = handle(schedule_payload(IMAGENET))

    assert scheduled["status"] == "duplicate"
    assert scheduled["execution_name"] == from_event["execution_name"]
    assert len(deployment.executions()) == 1


def test_schedule_with_no_version_yet_says_so(deploy, handle):
    deploy(IMAGENET)

    [outcome] = handle(schedule_payload(IMAGENET))

    assert outcome == {**outcome, "pipeline": "imagenet", "status": "no-version"}


def test_schedule_for_an_unknown_pipeline_fails_naming_the_known_ones(deploy, handle):
    deploy(IMAGENET)

    with pytest.raises(PipelineNotFound, match=r"'gone'.*\['imagenet'\]"):
        handle({"source": "schedule", "pipeline": "gone"})

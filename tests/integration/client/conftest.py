"""The client against moto: the stack's bucket, table, log group and state machine created in
`mock_aws` and registered as a CloudFormation stack with the real stack's outputs, so discovery
goes through DescribeStacks.

Step Functions does not execute here (see tests/e2e_local for whole runs): these tests arrange
run records, metrics and logs themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from moto import mock_aws

from lambdas.constants import log_stream_name
from lambdas.models.run_record import RunRecord
from runctl.client.store import metrics_key
from runctl.local.deploy import LocalStack
from runctl.local.stack_outputs import publish_stack_outputs
from tests.conftest import wide_console

STACK_NAME = "Runctl"
REGION = "us-east-1"
BUCKET = "runctl-bucket"
TABLE = "runctl-runs"
LOG_GROUP = "/runctl/Runctl/runs"


@dataclass
class CloudFixture:
    stack: LocalStack
    session: boto3.session.Session

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=REGION)

    def put_record(self, record: RunRecord) -> None:
        plain = json.loads(record.model_dump_json(exclude_none=True), parse_float=Decimal)
        item = {key: TypeSerializer().serialize(value) for key, value in plain.items()}
        self.client("dynamodb").put_item(TableName=self.stack.table, Item=item)

    def put_metrics(self, run_id: str, attempt: int, rows: list[dict[str, Any]]) -> None:
        body = "".join(json.dumps(row) + "\n" for row in rows)
        self.client("s3").put_object(
            Bucket=self.stack.bucket, Key=metrics_key(run_id, attempt), Body=body.encode()
        )

    def put_logs(
        self, run_id: str, attempt: int, lines: list[str], stream: str | None = None
    ) -> None:
        logs = self.client("logs")
        stream = stream or log_stream_name(run_id, attempt)
        now_ms = int(time.time() * 1000)  # CloudWatch drops events older than 14 days
        logs.create_log_stream(logGroupName=self.stack.log_group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=self.stack.log_group,
            logStreamName=stream,
            logEvents=[
                {"timestamp": now_ms + index, "message": line} for index, line in enumerate(lines)
            ],
        )

    def code_objects(self) -> list[str]:
        listed = self.client("s3").list_objects_v2(Bucket=self.stack.bucket, Prefix="code/")
        return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture
def moto_cloud() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def cloud(moto_cloud) -> CloudFixture:
    """The resources the client uses (no Lambdas: nothing executes here), registered as the
    stack Runctl."""
    session = boto3.session.Session(region_name=REGION)
    session.client("s3").create_bucket(Bucket=BUCKET)
    session.client("dynamodb").create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    session.client("logs").create_log_group(logGroupName=LOG_GROUP)
    role = session.client("iam").create_role(
        RoleName="train-run", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    state_machine = session.client("stepfunctions").create_state_machine(
        name="TrainRun",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=role,
    )["stateMachineArn"]
    stack = LocalStack(BUCKET, TABLE, LOG_GROUP, state_machine, function_arns={})
    publish_stack_outputs(stack, STACK_NAME, session.client("cloudformation"))
    return CloudFixture(stack, session)


@pytest.fixture(name="wide_console")
def wide_console_fixture() -> Iterator[None]:
    with wide_console():
        yield


def record(run_id: str, **fields: Any) -> RunRecord:
    """A finished run record as FinalizeRun leaves it, with the fields a test cares about."""
    base: dict[str, Any] = {
        "run_id": run_id,
        "status": "SUCCEEDED",
        "execution_arn": f"arn:aws:states:us-east-1:123456789012:execution:TrainRun:{run_id}",
        "spec": {"entry_point": "train.py", "code": {"s3_uri": "s3://b/code/x.tar.gz"}},
        "created_at": "2026-11-23T10:00:00+00:00",
        "updated_at": "2026-11-23T10:30:00+00:00",
        "ended_at": "2026-11-23T10:30:00+00:00",
        "duration_seconds": 1800.0,
        "end_reason": "completed",
    }
    return RunRecord.model_validate({**base, **fields})

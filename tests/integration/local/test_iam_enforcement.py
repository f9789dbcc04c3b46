"""In the emulator with IAM enforced, a call the caller's role does not allow fails as on AWS:
ClientError with the service's own error code, naming the action; allowed calls go through."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdas.integrations.aws_clients import aws_client
from runctl.local.deploy import LocalSettings
from runctl.local.emulator import REGION
from runctl.local.iam.enforcer import acting_as
from runctl.local.session import LocalSession

LAUNCH = "lambdas.handlers.launch_instance.lambda_handler"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSession]:
    root = tmp_path_factory.mktemp("iam")
    with LocalSession(root, LocalSettings(enforce_iam=True)) as session:
        yield session


def denied(call, code: str) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    assert raised.value.response["Error"]["Code"] == code
    return str(raised.value.response["Error"].get("Message", ""))


def test_a_lambda_is_held_to_its_own_role(session: LocalSession):
    table, bucket = session.stack.table, session.stack.bucket
    with acting_as(LAUNCH):
        ddb, ec2, s3 = aws_client("dynamodb"), aws_client("ec2"), aws_client("s3")
        ssm, sfn = aws_client("ssm"), aws_client("stepfunctions")
        # Allowed: LaunchInstance reads run records and describes instances.
        ddb.get_item(TableName=table, Key={"run_id": {"S": "r1"}})
        ec2.describe_instances()
        message = denied(
            lambda: ddb.put_item(TableName=table, Item={"run_id": {"S": "r1"}}),
            "AccessDeniedException",
        )
        assert "dynamodb:PutItem" in message and "assumed-role/" in message
        message = denied(
            lambda: ec2.terminate_instances(InstanceIds=["i-0123456789abcdef0"]),
            "UnauthorizedOperation",
        )
        assert "ec2:TerminateInstances" in message
        assert "s3:PutObject" in denied(
            lambda: s3.put_object(Bucket=bucket, Key="code/x", Body=b"x"), "AccessDenied"
        )
        assert "ssm:SendCommand" in denied(
            lambda: ssm.send_command(
                DocumentName="AWS-RunShellScript", InstanceIds=["i-0123456789abcdef0"]
            ),
            "AccessDeniedException",
        )
        execution = session.execution_arn("r1")
        assert "states:StopExecution" in denied(
            lambda: sfn.stop_execution(executionArn=execution), "AccessDeniedException"
        )
    # Outside an invocation the same cached client is local mode's own: unrestricted.
    aws_client("dynamodb").put_item(TableName=table, Item={"run_id": {"S": "r0"}})


def test_the_instance_role_may_write_runs_but_not_code_nor_other_attributes(
    session: LocalSession,
):
    key = session.emulator.fleet.base_env["AWS_ACCESS_KEY_ID"]
    instance = boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key="testing", region_name=REGION
    )
    s3, ddb = instance.client("s3"), instance.client("dynamodb")
    bucket, table = session.stack.bucket, session.stack.table
    s3.put_object(Bucket=bucket, Key="runs/r1/attempts/1/result.json", Body=b"{}")
    denied(lambda: s3.put_object(Bucket=bucket, Key="code/evil.tgz", Body=b"x"), "AccessDenied")
    session.table.client.put_item(TableName=table, Item={"run_id": {"S": "r2"}})
    ddb.update_item(
        TableName=table,
        Key={"run_id": {"S": "r2"}},
        UpdateExpression="SET #s = :s, updated_at = :t",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "RUNNING"}, ":t": {"S": "now"}},
    )
    message = denied(
        lambda: ddb.update_item(
            TableName=table,
            Key={"run_id": {"S": "r2"}},
            UpdateExpression="SET end_reason = :r",
            ExpressionAttributeValues={":r": {"S": "x"}},
        ),
        "AccessDeniedException",
    )
    assert "dynamodb:UpdateItem" in message


def test_an_operation_with_no_mapping_is_denied_by_name(session: LocalSession):
    with acting_as(LAUNCH):
        message = denied(
            lambda: aws_client("ec2").create_key_pair(KeyName="k"), "UnauthorizedOperation"
        )
    assert "ec2:CreateKeyPair" in message and "no request mapping" in message

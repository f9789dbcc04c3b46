"""Builds the integrations a handler needs from the environment (tests build their own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lambdas.dal.runs_table import RunsTable
from lambdas.env import lambda_env
from lambdas.integrations.aws_clients import aws_client
from lambdas.integrations.ec2_fleet import Ec2Fleet
from lambdas.integrations.image_builds import ImageBuilds
from lambdas.integrations.ssm_commands import SsmCommands


def runs_table() -> RunsTable:
    return RunsTable(lambda_env().RUNS_TABLE_NAME, aws_client("dynamodb"))


def ec2_fleet() -> Ec2Fleet:
    # Launches make one attempt per call: a capacity refusal moves on to the next option at once.
    return Ec2Fleet(ec2(), aws_client("ssm"), launches=aws_client("ec2", total_attempts=1))


def ssm_commands() -> SsmCommands:
    return SsmCommands(aws_client("ssm"))


def ec2() -> Any:
    return aws_client("ec2")


def s3() -> Any:
    return aws_client("s3")


def sfn() -> Any:
    return aws_client("stepfunctions")


def region() -> str:
    return str(aws_client("ssm").meta.region_name)


def utc_now() -> datetime:
    return datetime.now(UTC)


def image_builds() -> ImageBuilds:
    return ImageBuilds(aws_client("ecr"), aws_client("codebuild"), aws_client("logs"))

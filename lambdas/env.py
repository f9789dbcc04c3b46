"""The Lambdas' environment, typed and checked once per cold start."""

from __future__ import annotations

import os
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LambdaEnv(BaseModel):
    """Every variable the stack sets on the step functions (one set for all; see stacks/)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    RUNS_TABLE_NAME: str
    BUCKET_NAME: str
    LOG_GROUP_NAME: str
    LAUNCH_TEMPLATE_ID: str
    AGENT_S3_URI: str = Field(description="s3:// URI of the instance agent zip")
    DEFAULT_INSTANCE_TYPES: tuple[str, ...]
    SUBNET_IDS: tuple[str, ...] = Field(
        default=(), description="empty: the default VPC's default subnets, discovered at run time"
    )
    ASSOCIATE_PUBLIC_IP: Literal["", "true", "false"] = Field(
        default="",
        description="runctl:publicIp as the stack decided it: empty leaves it to the subnet "
        "(MapPublicIpOnLaunch); true/false go in the launch's network interface",
    )
    SECURITY_GROUP_ID: str = Field(
        default="", description="the instances' group; sent with the network interface"
    )
    INSTANCE_READY_TIMEOUT_SECONDS: int = 600
    BOOTSTRAP_TIMEOUT_SECONDS: int = 900
    # Container runs (issue #12): the stack's image repository and the CodeBuild project that
    # builds into it; the repositories (ARNs) the instance role may pull from besides it.
    IMAGE_REPOSITORY_NAME: str = ""
    IMAGE_REPOSITORY_URI: str = ""
    BUILD_PROJECT_NAME: str = ""
    PULL_REPOSITORIES: tuple[str, ...] = Field(
        default=(), description="ECR repository ARNs the instance role may pull from"
    )
    REAPER_GRACE_SECONDS: int = Field(
        default=600, description="the reaper leaves younger instances alone: not yet recorded"
    )

    @field_validator("DEFAULT_INSTANCE_TYPES", "SUBNET_IDS", "PULL_REPOSITORIES", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value


@cache
def lambda_env() -> LambdaEnv:
    """Parse os.environ once; a missing variable fails the cold start with its name."""
    return LambdaEnv.model_validate(dict(os.environ))

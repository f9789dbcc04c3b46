"""The stack's settings, read from CDK context and checked before any construct is built."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from lambdas.functions import TRAIN_RUN_SETTINGS
from lambdas.models.pipeline import Pipeline, PipelineConfigError, parse_pipelines

# One prefix for every key, so `cdk synth -c runctl:...` reads as what it changes.
PREFIX: Final = "runctl:"

KEY_STACK_NAME: Final = f"{PREFIX}stackName"
KEY_REGION: Final = f"{PREFIX}region"
KEY_INSTANCE_TYPES: Final = f"{PREFIX}defaultInstanceTypes"
KEY_VPC_ID: Final = f"{PREFIX}vpcId"
KEY_SUBNET_IDS: Final = f"{PREFIX}subnetIds"
KEY_DATA_BUCKETS: Final = f"{PREFIX}dataBuckets"
KEY_ROOT_VOLUME_GIB: Final = f"{PREFIX}rootVolumeGiB"
KEY_PIPELINES: Final = f"{PREFIX}pipelines"
KEY_VPC_ENDPOINTS: Final = f"{PREFIX}vpcEndpoints"
KEY_ROUTE_TABLE_IDS: Final = f"{PREFIX}routeTableIds"
KEY_ENDPOINT_SUBNET_IDS: Final = f"{PREFIX}endpointSubnetIds"
KEY_PUBLIC_IP: Final = f"{PREFIX}publicIp"
# Container images (issue #12), named as issue #12 names them.
KEY_IMAGES_KEEP: Final = f"{PREFIX}imagesKeep"
KEY_PULL_REPOSITORIES: Final = f"{PREFIX}pullRepositories"

# runctl:publicIp: whether an instance's network interface gets a public IPv4 address.
PUBLIC_IP_CHOICES: Final = ("auto", "always", "never")

INSTANCE_TYPE_PATTERN: Final = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
STACK_NAME_PATTERN: Final = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,99}$")
REGION_PATTERN: Final = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
VPC_ID_PATTERN: Final = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID_PATTERN: Final = re.compile(r"^subnet-[0-9a-f]{8,17}$")
BUCKET_NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ROUTE_TABLE_ID_PATTERN: Final = re.compile(r"^rtb-[0-9a-f]{8,17}$")
# An ECR repository: its name (ECR's grammar: lower-case components joined by /), or its ARN.
_ECR_NAME = r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
PULL_REPOSITORY_PATTERN: Final = re.compile(
    rf"^(?:{_ECR_NAME}|arn:aws[a-z-]*:ecr:[a-z]{{2}}(?:-[a-z]+)+-\d+:\d{{12}}:repository/{_ECR_NAME})$"
)
# ECR's lifecycle rule count: at least one image; at most its per-repository image quota.
IMAGES_KEEP_DEFAULT: Final = 30
IMAGES_KEEP_MAX: Final = 10_000


class ConfigError(ValueError):
    """A context value that cannot build a working stack; the message names the key."""

    def __init__(self, key: str, problem: str, value: object) -> None:
        super().__init__(
            f"cdk context {key!r}: {problem} (got {value!r}). "
            f"Fix it in cdk.json or pass `cdk synth -c {key}=...`."
        )
        self.key = key


def setting_context_key(setting: str) -> str:
    """`PollIntervalSeconds` -> `runctl:pollIntervalSeconds`: every ASL setting is overridable."""
    return f"{PREFIX}{setting[0].lower()}{setting[1:]}"


@dataclass(frozen=True)
class RunctlConfig:
    stack_name: str
    region: str
    default_instance_types: tuple[str, ...]
    vpc_id: str | None
    subnet_ids: tuple[str, ...]
    data_buckets: tuple[str, ...]
    root_volume_gib: int
    # Values for the non-ARN placeholders of train_run.asl.json (TRAIN_RUN_SETTINGS' keys).
    train_run_settings: Mapping[str, str]
    # Retrain when new data lands (lambdas/models/pipeline.py); none by default.
    pipelines: tuple[Pipeline, ...] = ()
    # Private subnets (stacks/vpc_endpoints.py): the endpoints the instances need, created in
    # vpc_id when set; gateway endpoints go in route_table_ids, interface endpoints in
    # endpoint_subnet_ids (at most one per Availability Zone).
    vpc_endpoints: bool = False
    route_table_ids: tuple[str, ...] = ()
    endpoint_subnet_ids: tuple[str, ...] = ()
    public_ip: str = "auto"
    # The run images (stacks/images.py): how many the repository keeps, and the other ECR
    # repositories (names in this account and region, or ARNs) the instances may pull from.
    images_keep: int = IMAGES_KEEP_DEFAULT
    pull_repositories: tuple[str, ...] = ()

    @property
    def associate_public_ip(self) -> str:
        """RunInstances' AssociatePublicIpAddress as the launch Lambda reads it (LambdaEnv):
        "true", "false", or "" for the subnet's own setting (MapPublicIpOnLaunch).

        auto: no public IP when the VPC has the endpoints (the instance reaches every AWS service
        it uses through them, and anything else through the subnet's NAT, if any); otherwise the
        subnet decides: the default VPC's default subnets assign one (their only way out is the
        internet gateway), a private subnet with a NAT does not.
        """
        if self.public_ip == "always":
            return "true"
        if self.public_ip == "never" or self.vpc_endpoints:
            return "false"
        return ""

    @property
    def heartbeat_seconds(self) -> int:
        return int(self.train_run_settings["HeartbeatSeconds"])

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> RunctlConfig:
        """Check every key; the first bad one raises ConfigError naming it."""
        stack_name = _text(context, KEY_STACK_NAME, STACK_NAME_PATTERN, "a CloudFormation name")
        region = _text(context, KEY_REGION, REGION_PATTERN, "an AWS region such as us-east-1")
        instance_types = _names(context, KEY_INSTANCE_TYPES, INSTANCE_TYPE_PATTERN, "g5.xlarge")
        if not instance_types:
            raise ConfigError(KEY_INSTANCE_TYPES, "needs at least one instance type", [])
        vpc_id = _optional_text(context, KEY_VPC_ID, VPC_ID_PATTERN, "vpc-0123456789abcdef0")
        subnet_ids = _names(context, KEY_SUBNET_IDS, SUBNET_ID_PATTERN, "subnet-0123abcd")
        # The security group lives in one VPC; instances must launch in that VPC's subnets.
        if subnet_ids and not vpc_id:
            raise ConfigError(KEY_VPC_ID, "is required when runctl:subnetIds is set", vpc_id)
        if vpc_id and not subnet_ids:
            raise ConfigError(
                KEY_SUBNET_IDS, "is required when runctl:vpcId is set", list(subnet_ids)
            )
        data_buckets = _names(context, KEY_DATA_BUCKETS, BUCKET_NAME_PATTERN, "my-datasets")
        root_volume = _integer(context, KEY_ROOT_VOLUME_GIB, 100, low=8, high=16384)
        settings = {
            name: str(
                _integer(context, setting_context_key(name), int(default), low=1, high=86_400)
            )
            for name, default in TRAIN_RUN_SETTINGS.items()
        }
        try:
            pipelines = parse_pipelines(context.get(KEY_PIPELINES), data_buckets=data_buckets)
        except PipelineConfigError as error:
            raise ConfigError(KEY_PIPELINES, str(error), error.value) from None
        vpc_endpoints = _flag(context, KEY_VPC_ENDPOINTS)
        route_tables = _names(context, KEY_ROUTE_TABLE_IDS, ROUTE_TABLE_ID_PATTERN, "rtb-0123abcd")
        endpoint_subnets = _names(
            context, KEY_ENDPOINT_SUBNET_IDS, SUBNET_ID_PATTERN, "subnet-0123abcd"
        )
        if vpc_endpoints and not vpc_id:
            raise ConfigError(
                KEY_VPC_ENDPOINTS,
                "needs runctl:vpcId and runctl:subnetIds (the endpoints are created in that VPC)",
                True,
            )
        if vpc_endpoints and not route_tables:
            raise ConfigError(
                KEY_ROUTE_TABLE_IDS,
                "is required with runctl:vpcEndpoints: the route tables of runctl:subnetIds, "
                "which the S3 and DynamoDB gateway endpoints are added to",
                list(route_tables),
            )
        if (route_tables or endpoint_subnets) and not vpc_endpoints:
            key = KEY_ROUTE_TABLE_IDS if route_tables else KEY_ENDPOINT_SUBNET_IDS
            raise ConfigError(key, "is used only with runctl:vpcEndpoints: true", context.get(key))
        public_ip = context.get(KEY_PUBLIC_IP) or "auto"
        if public_ip not in PUBLIC_IP_CHOICES:
            raise ConfigError(KEY_PUBLIC_IP, f"must be one of {list(PUBLIC_IP_CHOICES)}", public_ip)
        if public_ip == "never" and not vpc_id:
            raise ConfigError(
                KEY_PUBLIC_IP,
                "'never' needs runctl:vpcId with a NAT or runctl:vpcEndpoints: the default VPC's "
                "subnets reach SSM and S3 only through their internet gateway",
                public_ip,
            )
        images_keep = _integer(
            context, KEY_IMAGES_KEEP, IMAGES_KEEP_DEFAULT, low=1, high=IMAGES_KEEP_MAX
        )
        pull_repositories = _names(
            context,
            KEY_PULL_REPOSITORIES,
            PULL_REPOSITORY_PATTERN,
            "team/pytorch or arn:aws:ecr:us-east-1:123456789012:repository/team/pytorch",
        )
        return cls(
            stack_name=stack_name,
            region=region,
            default_instance_types=instance_types,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
            data_buckets=data_buckets,
            root_volume_gib=root_volume,
            train_run_settings=settings,
            pipelines=pipelines,
            vpc_endpoints=vpc_endpoints,
            route_table_ids=route_tables,
            endpoint_subnet_ids=endpoint_subnets or (subnet_ids if vpc_endpoints else ()),
            public_ip=public_ip,
            images_keep=images_keep,
            pull_repositories=pull_repositories,
        )


def _text(context: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = context.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(key, f"must be {what}", value)
    return value


def _optional_text(
    context: Mapping[str, Any], key: str, pattern: re.Pattern[str], example: str
) -> str | None:
    value = context.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(key, f"must look like {example!r} or be empty", value)
    return value


def _names(
    context: Mapping[str, Any], key: str, pattern: re.Pattern[str], example: str
) -> tuple[str, ...]:
    """A list from cdk.json, or from `-c` as a JSON list or a comma-separated string."""
    value = context.get(key)
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as error:
                raise ConfigError(key, f"is not a valid JSON list ({error.msg})", value) from None
        else:
            value = [item.strip() for item in stripped.split(",") if item.strip()]
    if not isinstance(value, list):
        raise ConfigError(key, "must be a list of strings", value)
    for item in value:
        if not isinstance(item, str) or not pattern.match(item):
            raise ConfigError(
                key, f"has an invalid entry {item!r}; expected e.g. {example!r}", value
            )
    if len(set(value)) != len(value):
        raise ConfigError(key, "has duplicate entries", value)
    return tuple(value)


def _integer(context: Mapping[str, Any], key: str, default: int, *, low: int, high: int) -> int:
    value = context.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, f"must be an integer from {low} to {high}", value)
    return value


def _flag(context: Mapping[str, Any], key: str) -> bool:
    """A boolean from cdk.json, or "true"/"false" from `-c`."""
    value = context.get(key, False)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(key, "must be true or false", value)
    return value

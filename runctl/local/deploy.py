"""Creates the stack's resources in the emulator: the same ASL file, step registry and env names."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from moto.codebuild.models import codebuild_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ssm.models import Parameter, ssm_backends

from lambdas.constants import BUILD_ENV_REGISTRY, BUILD_ENV_REPOSITORY_URI
from lambdas.functions import (
    CLIENT_FUNCTIONS,
    EVENT_HANDLERS,
    START_PIPELINE_RUN,
    STOP_SWEEP,
    SWEEP_STEPS,
    TRAIN_RUN_ARN_PLACEHOLDER,
    TRAIN_RUN_SETTINGS,
    TRAIN_RUN_STEPS,
)
from lambdas.logic.images import AL2023, IMAGE_PARAMETERS, image_parameter
from lambdas.models.pipeline import Pipeline
from runctl.local.emulator import REGION
from runctl.local.s3_events import deploy_pipelines

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STATEMACHINES_DIR = PROJECT_ROOT / "statemachines"
AGENT_DIR = PROJECT_ROOT / "instance_agent"
AGENT_KEY = "agent/instance_agent.zip"
# What the CDK asset leaves out of the agent zip too (stacks/).
AGENT_EXCLUDES = ("__pycache__", ".pyc", "ruff.toml", ".ruff_cache", ".mypy_cache")


@dataclass(frozen=True)
class LocalSettings:
    """Timings that make a local run fast; `cdk deploy` uses lambdas/functions.py's defaults."""

    poll_seconds: int = 1
    heartbeat_seconds: int = 30
    instance_ready_timeout_seconds: int = 60
    bootstrap_timeout_seconds: int = 120
    default_instance_types: tuple[str, ...] = ("g5.xlarge", "g4dn.xlarge")
    # AWS gives 120 s between a spot warning and the termination; locally less, same protocol.
    spot_notice_seconds: float = 30.0
    # Wait states (the polls for boot, bootstrap and handoff) last this fraction of their
    # seconds: deadlines stay wall-clock, only the polls come sooner (runctl/local/waits.py).
    wait_scale: float = 0.25
    # runctl:pipelines (issue #5): deployed with their marker rules (runctl/local/s3_events.py).
    pipelines: tuple[Pipeline, ...] = ()
    # Hold each Lambda to its role and the agent to the instance role, with the synthesized
    # template's policies (runctl/local/iam/): a call they do not allow fails with AccessDenied.
    enforce_iam: bool = True


@dataclass(frozen=True)
class LocalStack:
    bucket: str
    table: str
    log_group: str
    state_machine_arn: str
    function_arns: dict[str, str]
    sweep_state_machine_arn: str = ""
    # The queue the pipelines' marker rules send to (empty without pipelines).
    pipeline_events_queue_url: str = ""
    # Container images (issue #12): the ECR repository builds go to, and the CodeBuild project
    # whose builds run `docker build` on this machine (runctl/local/image_builds.py).
    image_repository: str = ""
    image_repository_uri: str = ""
    build_project: str = ""


@dataclass(frozen=True)
class ImageBuildResources:
    repository: str
    repository_uri: str
    project: str


def substitute(definition: str, substitutions: dict[str, str]) -> str:
    """Replace ${Name} placeholders the way definition_substitutions does; all must be known."""
    for name, value in substitutions.items():
        definition = definition.replace("${" + name + "}", value)
    if "${" in definition:
        start = definition.index("${")
        raise ValueError(f"unsubstituted placeholder {definition[start : start + 40]!r}")
    return definition


def agent_zip() -> bytes:
    """The agent folder's files at the zip's root, as the CDK asset packs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(AGENT_DIR.rglob("*")):
            relative = path.relative_to(AGENT_DIR).as_posix()
            if path.is_file() and not any(part in relative for part in AGENT_EXCLUDES):
                archive.write(path, relative)
    return buffer.getvalue()


def deploy(settings: LocalSettings, name: str = "runctl-local") -> LocalStack:
    """Create bucket, table, log group, launch template, functions, TrainRun and Sweep in the
    emulator."""
    session = boto3.session.Session(region_name=REGION)
    s3, ddb, logs = session.client("s3"), session.client("dynamodb"), session.client("logs")
    ec2, iam, lam = session.client("ec2"), session.client("iam"), session.client("lambda")
    sfn = session.client("stepfunctions")

    publish_image_parameters(session.client("ssm"))
    bucket = f"{name}-bucket"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=AGENT_KEY, Body=agent_zip())
    table = f"{name}-runs"
    ddb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    log_group = f"/runctl/{name}/runs"
    logs.create_log_group(logGroupName=log_group)
    template_id = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-instances",
        LaunchTemplateData={
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"}
        },
    )["LaunchTemplate"]["LaunchTemplateId"]
    role_arn = iam.create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    images = create_image_build(session.client("ecr"), name, role_arn, log_group)

    environment = {
        "RUNS_TABLE_NAME": table,
        "BUCKET_NAME": bucket,
        "LOG_GROUP_NAME": log_group,
        "LAUNCH_TEMPLATE_ID": template_id,
        "AGENT_S3_URI": f"s3://{bucket}/{AGENT_KEY}",
        "DEFAULT_INSTANCE_TYPES": ",".join(settings.default_instance_types),
        "SUBNET_IDS": "",
        "INSTANCE_READY_TIMEOUT_SECONDS": str(settings.instance_ready_timeout_seconds),
        "BOOTSTRAP_TIMEOUT_SECONDS": str(settings.bootstrap_timeout_seconds),
        "IMAGE_REPOSITORY_NAME": images.repository,
        "IMAGE_REPOSITORY_URI": images.repository_uri,
        "BUILD_PROJECT_NAME": images.project,
        "POWERTOOLS_SERVICE_NAME": "runctl",
    }
    # The code is never run from this zip: the bridge imports the handler by name.
    placeholder_code = _placeholder_zip()
    function_arns = {}
    for step in (*TRAIN_RUN_STEPS, *EVENT_HANDLERS, *CLIENT_FUNCTIONS, *SWEEP_STEPS, STOP_SWEEP):
        function_arns[step.name] = lam.create_function(
            FunctionName=f"{name}-{step.name}",
            Runtime="python3.11",
            Role=role_arn,
            Handler=step.handler,
            Code={"ZipFile": placeholder_code},
            Environment={"Variables": environment},
            Timeout=60,
        )["FunctionArn"]

    substitutions: dict[str, Any] = {
        **TRAIN_RUN_SETTINGS,
        "FirstPollSeconds": str(settings.poll_seconds),
        "PollIntervalSeconds": str(settings.poll_seconds),
        "HeartbeatSeconds": str(settings.heartbeat_seconds),
        **{step.placeholder: function_arns[step.name] for step in TRAIN_RUN_STEPS},
    }
    definition = substitute((STATEMACHINES_DIR / "train_run.asl.json").read_text(), substitutions)
    state_machine_arn = sfn.create_state_machine(
        name=f"{name}-TrainRun", definition=definition, roleArn=role_arn, type="STANDARD"
    )["stateMachineArn"]
    sweep_definition = substitute(
        (STATEMACHINES_DIR / "sweep.asl.json").read_text(),
        {
            TRAIN_RUN_ARN_PLACEHOLDER: state_machine_arn,
            **{step.placeholder: function_arns[step.name] for step in SWEEP_STEPS},
        },
    )
    sweep_state_machine_arn = sfn.create_state_machine(
        name=f"{name}-Sweep", definition=sweep_definition, roleArn=role_arn, type="STANDARD"
    )["stateMachineArn"]
    pipeline_events_queue_url = ""
    if settings.pipelines:
        function_arns[START_PIPELINE_RUN.name], pipeline_events_queue_url = deploy_pipelines(
            session,
            name=name,
            pipelines=settings.pipelines,
            runctl_bucket=bucket,
            environment=environment,
            state_machine_arn=state_machine_arn,
            role_arn=role_arn,
            code_zip=placeholder_code,
        )
    return LocalStack(
        bucket,
        table,
        log_group,
        state_machine_arn,
        function_arns,
        sweep_state_machine_arn,
        pipeline_events_queue_url=pipeline_events_queue_url,
        image_repository=images.repository,
        image_repository_uri=images.repository_uri,
        build_project=images.project,
    )


def create_image_build(ecr: Any, name: str, role_arn: str, log_group: str) -> ImageBuildResources:
    """The stack's image repository (immutable tags, scanned on push) and image-build project
    (no source: the context comes from S3 per build; logs go to the runs' log group)."""
    repository = ecr.create_repository(
        repositoryName=f"{name}-images",
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "AES256"},
    )["repository"]
    uri = repository["repositoryUri"]
    project = f"{name}-image-build"
    # moto 5.2.5's CreateProject demands a source location even for NO_SOURCE (AWS refuses
    # one there), so the project goes into its backend directly.
    codebuild_backends[DEFAULT_ACCOUNT_ID][REGION].create_project(
        project_name=project,
        description="Builds run images (local mode: docker build on this machine)",
        project_source={
            "type": "NO_SOURCE",
            "buildspec": "local mode: runctl/local/docker_build.py does this buildspec's work",
        },
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
            "privilegedMode": True,
            "environmentVariables": [
                {"name": BUILD_ENV_REGISTRY, "value": uri.split("/", 1)[0], "type": "PLAINTEXT"},
                {"name": BUILD_ENV_REPOSITORY_URI, "value": uri, "type": "PLAINTEXT"},
            ],
        },
        service_role=role_arn,
        tags=None,
        cache=None,
        timeout=60,
        queued_timeout=60,
        source_version=None,
        logs_config={"cloudWatchLogs": {"status": "ENABLED", "groupName": log_group}},
        vpc_config=None,
    )
    return ImageBuildResources(repository["repositoryName"], uri, project)


def publish_image_parameters(ssm: Any) -> None:
    """The public DLAMI parameters, which moto lacks (it has AL2023's), naming AL2023's AMI of the
    same architecture: locally an image is its Python (runctl/local/images.py), not its AMI.
    AWS reserves /aws/ names, so they go into moto's parameter store directly."""
    store = ssm_backends[DEFAULT_ACCOUNT_ID][REGION]._parameters
    for (image, architecture), parameter in IMAGE_PARAMETERS.items():
        if image == AL2023:
            continue
        al2023_ami = ssm.get_parameter(Name=image_parameter(AL2023, architecture))["Parameter"]
        store[parameter] = [
            Parameter(  # type: ignore[abstract]  # moto's own class, as its loader builds it
                account_id=DEFAULT_ACCOUNT_ID,
                name=parameter,
                value=al2023_ami["Value"],
                parameter_type="String",
                description=None,
                allowed_pattern=None,
                keyid=None,
                last_modified_date=datetime.now(UTC),
                version=1,
                data_type="text",
            )
        ]


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "local mode runs the handler in-process by name\n")
    return buffer.getvalue()

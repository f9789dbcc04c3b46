"""The TrainRun state machine and its step Lambdas, each with only the permissions it uses."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack, Stage
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.env import LambdaEnv
from lambdas.functions import TRAIN_RUN_STEPS, LambdaStep
from stacks.compute import Compute
from stacks.images import Images
from stacks.nag_acknowledgements import (
    NO_RESOURCE_SCOPE,
    acknowledge,
    acknowledge_resource_wildcard,
)
from stacks.powertools_layer import powertools_layer
from stacks.step_permissions import StepPermissions

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
TRAIN_RUN_ASL: Final = REPO_ROOT / "statemachines" / "train_run.asl.json"

# The Lambda code asset is a folder holding a copy of the `lambdas/` package and nothing else, so
# handlers import as `lambdas.handlers...` exactly as in tests. It is staged afresh at every synth
# (stage_lambda_source) instead of filtering the repo root with glob excludes: what goes in is the
# short list below, not glob rules relative to the checkout, and CDK's staged copy is named by the
# hash alone (CDK appends the source folder's "extension": staged from the root of a checkout
# named runctl-0.1.0, it was asset.<hash>.0). CDK hashes a folder's relative paths and file
# contents only, so the same lambdas/ gives the same asset hash, wherever the checkout is, and
# the same hash as the old glob-filtered asset did.
LAMBDA_PACKAGE: Final = REPO_ROOT / "lambdas"
LAMBDA_SOURCE_FOLDER: Final = "lambda-source"  # under the cloud assembly's asset folder
LAMBDA_ASSET_SKIPPED: Final = ("__pycache__", "*.pyc", "*.pyo", "ruff.toml", ".*")

LAMBDA_RUNTIME: Final = lambda_.Runtime.PYTHON_3_12
# Dependencies: the public Powertools v3 layer for the pinned release (stacks/powertools_layer.py).
SERVICE_NAME: Final = "runctl"
DEFAULT_TIMEOUT: Final = Duration.seconds(60)


class Orchestration(Construct):
    """One Lambda per entry of TRAIN_RUN_STEPS, and the TrainRun state machine that calls them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        runs_table: dynamodb.ITable,
        run_log_group: logs.ILogGroup,
        compute: Compute,
        images: Images,
        default_instance_types: tuple[str, ...],
        subnet_ids: tuple[str, ...],
        data_buckets: tuple[str, ...],
        train_run_settings: Mapping[str, str],
        associate_public_ip: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = Stack.of(self)

        self.environment = lambda_environment(
            RUNS_TABLE_NAME=runs_table.table_name,
            BUCKET_NAME=bucket.bucket_name,
            LOG_GROUP_NAME=run_log_group.log_group_name,
            LAUNCH_TEMPLATE_ID=compute.launch_template.ref,
            AGENT_S3_URI=compute.agent_asset.s3_object_url,
            DEFAULT_INSTANCE_TYPES=",".join(default_instance_types),
            SUBNET_IDS=",".join(subnet_ids),
            # runctl:publicIp as decided at synth (RunctlConfig.associate_public_ip); with
            # "true"/"false" the group goes in the request's network interface, not the template.
            ASSOCIATE_PUBLIC_IP=associate_public_ip,
            SECURITY_GROUP_ID=compute.security_group.attr_group_id,
            # Container runs (issue #12): where BuildImage builds and looks for images, and the
            # other repositories the instances may pull from (ValidateRun refuses the rest).
            IMAGE_REPOSITORY_NAME=images.repository.repository_name,
            IMAGE_REPOSITORY_URI=images.repository_uri,
            BUILD_PROJECT_NAME=images.project.project_name,
            PULL_REPOSITORIES=",".join(images.extra_pull_repository_arns),
        )
        # Staged under the assembly's own folder (cdk.out, or the outdir a test gives), which
        # outlives this process: `--no-staging` synths point the asset at the source folder.
        stage = Stage.of(self)
        if stage is None:
            raise ValueError("Orchestration must be built inside a CDK App (or Stage)")
        self._code = lambda_.Code.from_asset(str(stage_lambda_source(Path(stage.asset_outdir))))
        self.powertools_layer = powertools_layer(self, "PowertoolsLayer")

        permissions = StepPermissions(
            bucket=bucket,
            runs_table=runs_table,
            compute=compute,
            images=images,
            subnet_ids=subnet_ids,
            data_buckets=data_buckets,
        )
        self.functions: dict[str, lambda_.Function] = {}
        for step in TRAIN_RUN_STEPS:
            function = self.build_function(
                self,
                step,
                description=f"runctl TrainRun step {step.name}",
                role_description=f"runctl {step.name} step",
            )
            permissions.grant(step.name, function)
            self.functions[step.name] = function

        self.definition_substitutions: dict[str, str] = {
            **{
                step.placeholder: self.functions[step.name].function_arn for step in TRAIN_RUN_STEPS
            },
            **train_run_settings,
        }
        self.state_machine = self._train_run_state_machine()

    # --- the functions -------------------------------------------------------------------------

    def build_function(
        self,
        scope: Construct,
        entry: LambdaStep,
        *,
        description: str,
        role_description: str | None = None,
        timeout: Duration = DEFAULT_TIMEOUT,
    ) -> lambda_.Function:
        """A function for `entry` in `scope`: the shared code asset, layer, runtime and
        environment, its own log group, and its own role that may write only to that group."""
        name = entry.name
        log_group = logs.LogGroup(
            scope,
            f"{name}Logs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Own role without AWSLambdaBasicExecutionRole: it may write to its own log group only.
        role = iam.Role(
            scope,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=role_description or description,
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            scope,
            name,
            runtime=LAMBDA_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=entry.handler,
            code=self._code,
            layers=[self.powertools_layer],
            memory_size=256,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            role=role,
            environment=self.environment,
            description=description,
        )
        acknowledge_resource_wildcard(
            role,
            "*",
            "X-Ray PutTraceSegments/PutTelemetryRecords (tracing=ACTIVE) " + NO_RESOURCE_SCOPE,
        )
        acknowledge(
            function,
            "L1",
            "python3.12 is the oldest Amazon Linux 2023 Python runtime (supported to 2028-10) "
            "and the nearest to the 3.11 interpreter our tests run on; newer ones are untested",
        )
        return function

    # --- the state machine ---------------------------------------------------------------------

    def _train_run_state_machine(self) -> sfn.StateMachine:
        role = state_machine_role(self, "TrainRun", self.functions.values())
        return logged_state_machine(
            self, "TrainRun", TRAIN_RUN_ASL, self.definition_substitutions, role
        )


def state_machine_role(
    scope: Construct, name: str, step_functions: Iterable[lambda_.Function]
) -> iam.Role:
    """`<name>Role`: assumable by Step Functions for this account's state machines only, and
    allowed to invoke the given step functions."""
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        f"{name}Role",
        assumed_by=iam.ServicePrincipal(
            "states.amazonaws.com",
            conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {
                    "aws:SourceArn": stack.format_arn(
                        service="states",
                        resource="stateMachine",
                        resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                },
            },
        ),
        description=f"runctl {name} state machine",
    )
    for function in step_functions:
        function.grant_invoke(role)
        acknowledge_resource_wildcard(
            role,
            f"{function.function_arn}:*",
            "grant_invoke adds '<function arn>:*' for the versions and aliases of this step "
            "function only",
        )
    return role


def logged_state_machine(
    scope: Construct,
    name: str,
    asl_file: Path,
    substitutions: Mapping[str, str],
    role: iam.Role,
) -> sfn.StateMachine:
    """A STANDARD state machine `<name>` from an ASL file, logging everything to its own
    `<name>Logs` group and traced with X-Ray."""
    # /aws/vendedlogs/ keeps CloudWatch's resource policy small however many machines log.
    log_group = logs.LogGroup(
        scope,
        f"{name}Logs",
        log_group_name=f"/aws/vendedlogs/states/{Stack.of(scope).stack_name}-{name}",
        retention=logs.RetentionDays.THREE_MONTHS,
        removal_policy=RemovalPolicy.DESTROY,
    )
    state_machine = sfn.StateMachine(
        scope,
        name,
        state_machine_type=sfn.StateMachineType.STANDARD,
        definition_body=sfn.DefinitionBody.from_file(str(asl_file)),
        definition_substitutions=dict(substitutions),
        logs=sfn.LogOptions(
            destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True
        ),
        tracing_enabled=True,
        role=role,
    )
    acknowledge_resource_wildcard(
        role,
        "*",
        "CloudWatch Logs delivery (logs:*LogDelivery*, DescribeLogGroups, ...) and X-Ray "
        "actions that CDK adds for logging and tracing " + NO_RESOURCE_SCOPE,
    )
    return state_machine


def stage_lambda_source(parent: Path) -> Path:
    """`parent/lambda-source`, emptied, then holding a copy of the lambdas/ package without
    caches, compiled files, dot-files and ruff.toml: the folder the code asset is made from."""
    staging = parent / LAMBDA_SOURCE_FOLDER
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # copyfile, not copy2: fresh mtimes, so CDK's fingerprint cache (inode, mtime, size) cannot
    # mistake a new copy for an old one that reused the inode.
    shutil.copytree(
        LAMBDA_PACKAGE,
        staging / LAMBDA_PACKAGE.name,
        ignore=shutil.ignore_patterns(*LAMBDA_ASSET_SKIPPED),
        copy_function=shutil.copyfile,
    )
    return staging


def lambda_environment(**values: str) -> dict[str, str]:
    """Every LambdaEnv field (defaults filled in), plus Powertools' settings; checked at synth."""
    environment = {
        name: _env_text(field.default)
        for name, field in LambdaEnv.model_fields.items()
        if name not in values and not field.is_required()
    }
    environment.update(values)
    missing = sorted(set(LambdaEnv.model_fields) - set(environment))
    if missing:
        raise ValueError(f"the stack sets no value for LambdaEnv fields {missing}")
    LambdaEnv.model_validate(environment)
    environment["POWERTOOLS_SERVICE_NAME"] = SERVICE_NAME
    environment["POWERTOOLS_METRICS_NAMESPACE"] = SERVICE_NAME
    return environment


def _env_text(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)

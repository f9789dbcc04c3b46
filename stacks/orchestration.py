"""The TrainRun state machine and its step Lambdas, each with only the permissions it uses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from aws_cdk import ArnFormat, Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.constants import CODE_PREFIX, RUNS_PREFIX, TAG_MANAGED
from lambdas.env import LambdaEnv
from lambdas.functions import TRAIN_RUN_STEPS
from stacks.compute import Compute
from stacks.nag_acknowledgements import (
    NO_RESOURCE_SCOPE,
    acknowledge,
    acknowledge_resource_wildcard,
)

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
TRAIN_RUN_ASL: Final = REPO_ROOT / "statemachines" / "train_run.asl.json"

# The Lambda asset is the repo root filtered down to the `lambdas/` package, so handlers import
# as `lambdas.handlers...` exactly as in tests. Glob rules, last match wins; "*" does not match
# dot-files in glob mode, hence ".*".
LAMBDA_ASSET_EXCLUDE: Final = [
    "*",
    ".*",
    "!lambdas",
    "!lambdas/**",
    "__pycache__",
    "*.pyc",
    "ruff.toml",
]

LAMBDA_RUNTIME: Final = lambda_.Runtime.PYTHON_3_12
# Powertools for AWS Lambda (Python) v3, public layer. It is built with
# `pip install aws-lambda-powertools[all]` (layer_v3/layer_constructors/helpers.py in
# aws-powertools/powertools-lambda-python), and [all] includes the parser extra, i.e. pydantic v2;
# the layer's canary imports pydantic and aws-xray-sdk. So our Lambdas ship no dependencies.
# Version 27 is the newest listed in the Powertools install docs we checked; bump it together with
# aws-lambda-powertools in pyproject.toml (`aws lambda get-layer-version-by-arn` shows what it is).
POWERTOOLS_LAYER_ACCOUNT: Final = "017000801446"
POWERTOOLS_LAYER_NAME: Final = "AWSLambdaPowertoolsPythonV3-python312-arm64"
POWERTOOLS_LAYER_VERSION: Final = 27
SERVICE_NAME: Final = "runctl"


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
        default_instance_types: tuple[str, ...],
        subnet_ids: tuple[str, ...],
        data_buckets: tuple[str, ...],
        train_run_settings: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = Stack.of(self)
        self._bucket = bucket
        self._table = runs_table
        self._compute = compute
        self._subnet_ids = subnet_ids
        self._data_bucket_arns = [
            f"arn:{self._stack.partition}:s3:::{name}" for name in data_buckets
        ]

        self.environment = lambda_environment(
            RUNS_TABLE_NAME=runs_table.table_name,
            BUCKET_NAME=bucket.bucket_name,
            LOG_GROUP_NAME=run_log_group.log_group_name,
            LAUNCH_TEMPLATE_ID=compute.launch_template.ref,
            AGENT_S3_URI=compute.agent_asset.s3_object_url,
            DEFAULT_INSTANCE_TYPES=",".join(default_instance_types),
            SUBNET_IDS=",".join(subnet_ids),
        )
        code = lambda_.Code.from_asset(
            str(REPO_ROOT), exclude=LAMBDA_ASSET_EXCLUDE, ignore_mode=IgnoreMode.GLOB
        )
        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            self._stack.format_arn(
                service="lambda",
                account=POWERTOOLS_LAYER_ACCOUNT,
                resource="layer",
                resource_name=f"{POWERTOOLS_LAYER_NAME}:{POWERTOOLS_LAYER_VERSION}",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
        )

        grants: dict[str, Callable[[lambda_.Function], None]] = {
            "ValidateRun": self._grant_validate_run,
            "RecordRun": self._grant_record_run,
            "LaunchInstance": self._grant_launch_instance,
            "CheckInstance": self._grant_check_instance,
            "BootstrapInstance": self._grant_send_command,
            "CheckBootstrap": self._grant_check_bootstrap,
            "StartAgent": self._grant_start_agent,
            "FinalizeRun": self._grant_finalize_run,
        }
        self.functions: dict[str, lambda_.Function] = {}
        for step in TRAIN_RUN_STEPS:
            if step.name not in grants:
                raise ValueError(f"step {step.name} has no permissions defined in {__name__}")
            function = self._step_function(step.name, step.handler, code, powertools)
            grants[step.name](function)
            self.functions[step.name] = function

        self.definition_substitutions: dict[str, str] = {
            **{
                step.placeholder: self.functions[step.name].function_arn for step in TRAIN_RUN_STEPS
            },
            **train_run_settings,
        }
        self.state_machine = self._train_run_state_machine()

    # --- the functions -------------------------------------------------------------------------

    def _step_function(
        self, name: str, handler: str, code: lambda_.Code, powertools: lambda_.ILayerVersion
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Own role without AWSLambdaBasicExecutionRole: it may write to its own log group only.
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"runctl {name} step",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            self,
            name,
            runtime=LAMBDA_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=code,
            layers=[powertools],
            memory_size=256,
            timeout=Duration.seconds(60),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            role=role,
            environment=self.environment,
            description=f"runctl TrainRun step {name}",
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

    def _ec2_arn(self, resource: str, name: str = "*", *, account: bool = True) -> str:
        return self._stack.format_arn(
            service="ec2", resource=resource, resource_name=name, account=None if account else ""
        )

    def _allow(
        self,
        function: lambda_.Function,
        sid: str,
        actions: list[str],
        resources: list[str],
        conditions: Mapping[str, Mapping[str, object]] | None = None,
        *,
        wildcard_reason: str | Mapping[str, str] | None = None,
    ) -> None:
        """One statement on the function's role; each wildcard resource needs a reason."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid=sid, actions=actions, resources=resources, conditions=conditions
            )
        )
        assert function.role is not None
        for resource in resources:
            if "*" not in resource:
                continue
            reason = (
                wildcard_reason.get(resource)
                if isinstance(wildcard_reason, Mapping)
                else wildcard_reason
            )
            if reason is None:
                raise ValueError(f"{function.node.id}/{sid}: {resource} needs a reason")
            acknowledge_resource_wildcard(function.role, resource, reason)

    def _read_write_runs_table(self, function: lambda_.Function) -> None:
        self._table.grant_read_write_data(function)
        assert function.role is not None
        acknowledge_resource_wildcard(
            function.role,
            f"{self._table.table_arn}/index/*",
            "grant_read_write_data also covers the runs table's own indexes (experiment-index)",
        )

    def _update_run_record(self, function: lambda_.Function) -> None:
        # Not table.grant(): that adds the index ARNs, which GetItem/UpdateItem never touch.
        self._allow(
            function,
            "UpdateRunRecord",
            ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            [self._table.table_arn],
        )

    def _grant_validate_run(self, function: lambda_.Function) -> None:
        # HeadObject needs GetObject; ListBucket turns a missing key into 404 instead of 403.
        self._allow(
            function,
            "HeadCode",
            ["s3:GetObject"],
            [self._bucket.arn_for_objects(f"{CODE_PREFIX}*")],
            wildcard_reason="code/ holds every code archive, named by content hash at submit time",
        )
        self._allow(
            function,
            "ListRunAndDataBuckets",
            ["s3:ListBucket"],
            [self._bucket.bucket_arn, *self._data_bucket_arns],
        )

    def _grant_record_run(self, function: lambda_.Function) -> None:
        self._read_write_runs_table(function)

    def _grant_launch_instance(self, function: lambda_.Function) -> None:
        compute = self._compute
        subnets = (
            [self._ec2_arn("subnet", subnet) for subnet in self._subnet_ids]
            if self._subnet_ids
            else [self._ec2_arn("subnet")]
        )
        instances = self._ec2_arn("instance")
        attached = [
            self._ec2_arn("volume"),
            self._ec2_arn("network-interface"),
            self._ec2_arn("spot-instances-request"),  # a spot launch makes a one-time request
        ]
        created = [instances, *attached]
        created_reason = (
            "the instance, volume, network interface and spot request a launch creates have no "
            "id before RunInstances; CreateTags only with ec2:CreateAction=RunInstances"
        )
        image = self._ec2_arn("image", account=False)
        reasons = {
            **dict.fromkeys(created, created_reason),
            image: "the RunSpec picks the AMI (a public image alias resolved at run time, or an "
            "AMI id); image ARNs carry no account",
            self._ec2_arn("subnet"): "without runctl:subnetIds, LaunchInstance uses the default "
            "VPC's default subnets, which it discovers at run time",
        }
        self._allow(
            function,
            "RunFromLaunchTemplate",
            ["ec2:RunInstances"],
            [
                self._ec2_arn("launch-template", compute.launch_template.ref),
                self._ec2_arn("security-group", compute.security_group.attr_group_id),
                *subnets,
                image,
                *attached,
            ],
            wildcard_reason=reasons,
        )
        # IMDSv2 enforced by IAM too: a launch request without HttpTokens=required is denied.
        self._allow(
            function,
            "RunOnlyImdsv2Instances",
            ["ec2:RunInstances"],
            [instances],
            {"StringEquals": {"ec2:MetadataHttpTokens": "required"}},
            wildcard_reason=created_reason,
        )
        self._allow(
            function,
            "TagOnLaunchOnly",
            ["ec2:CreateTags"],
            created,
            {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            wildcard_reason=created_reason,
        )
        self._allow(
            function,
            "Describe",
            [
                "ec2:DescribeInstances",
                "ec2:DescribeSubnets",
                "ec2:DescribeImages",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplateVersions",
            ],
            ["*"],
            wildcard_reason="ec2:Describe* actions " + NO_RESOURCE_SCOPE,
        )
        self._allow(
            function,
            "PassInstanceRole",
            ["iam:PassRole"],
            [compute.instance_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        )
        # The first spot launch in an account creates EC2's spot service-linked role.
        self._allow(
            function,
            "CreateSpotServiceLinkedRole",
            ["iam:CreateServiceLinkedRole"],
            [
                self._stack.format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name="aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot",
                )
            ],
            {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}},
        )
        self._allow(
            function,
            "ReadPublicAmiParameters",
            ["ssm:GetParameter", "ssm:GetParameters"],
            [
                self._stack.format_arn(
                    service="ssm", account="", resource="parameter", resource_name="aws/service/*"
                )
            ],
            wildcard_reason="the public /aws/service/ parameters name the newest AMI per image "
            "alias and architecture; read-only and not ours",
        )
        self._update_run_record(function)

    def _grant_check_instance(self, function: lambda_.Function) -> None:
        self._allow(
            function,
            "Describe",
            ["ec2:DescribeInstances", "ssm:DescribeInstanceInformation"],
            ["*"],
            wildcard_reason="ec2:DescribeInstances and ssm:DescribeInstanceInformation "
            + NO_RESOURCE_SCOPE,
        )

    def _grant_send_command(self, function: lambda_.Function) -> None:
        self._allow(
            function,
            "RunShellScript",
            ["ssm:SendCommand"],
            [
                self._stack.format_arn(
                    service="ssm",
                    account="",
                    resource="document",
                    resource_name="AWS-RunShellScript",
                )
            ],
        )
        self._allow(
            function,
            "OnRunctlInstancesOnly",
            ["ssm:SendCommand"],
            [self._ec2_arn("instance")],
            {"StringEquals": {f"ssm:resourceTag/{TAG_MANAGED}": "true"}},
            wildcard_reason="instances are launched per run (ids unknown at deploy); only those "
            f"tagged {TAG_MANAGED}=true (ssm:resourceTag condition)",
        )

    def _grant_check_bootstrap(self, function: lambda_.Function) -> None:
        self._allow(
            function,
            "ReadCommandResult",
            ["ssm:GetCommandInvocation"],
            ["*"],
            wildcard_reason="ssm:GetCommandInvocation " + NO_RESOURCE_SCOPE,
        )

    def _grant_start_agent(self, function: lambda_.Function) -> None:
        self._grant_send_command(function)
        self._allow(
            function,
            "WriteAgentConfig",
            ["s3:PutObject"],
            [self._bucket.arn_for_objects(f"{RUNS_PREFIX}*")],
            wildcard_reason="writes runs/<run_id>/attempts/<n>/agent-config.json, a key made per "
            "run and attempt",
        )
        self._update_run_record(function)

    def _grant_finalize_run(self, function: lambda_.Function) -> None:
        self._allow(
            function,
            "TerminateRunctlInstances",
            ["ec2:TerminateInstances"],
            [self._ec2_arn("instance")],
            {"StringEquals": {f"aws:ResourceTag/{TAG_MANAGED}": "true"}},
            wildcard_reason="terminates the attempt's instance (id known only at run time), and "
            f"only instances tagged {TAG_MANAGED}=true (aws:ResourceTag condition)",
        )
        self._allow(
            function,
            "Describe",
            ["ec2:DescribeInstances"],
            ["*"],
            wildcard_reason="ec2:DescribeInstances " + NO_RESOURCE_SCOPE,
        )
        self._allow(
            function,
            "ReadAttemptResult",
            ["s3:GetObject"],
            [self._bucket.arn_for_objects(f"{RUNS_PREFIX}*")],
            wildcard_reason="reads runs/<run_id>/attempts/<n>/result.json, a key made per run "
            "and attempt",
        )
        self._read_write_runs_table(function)

    # --- the state machine ---------------------------------------------------------------------

    def _train_run_state_machine(self) -> sfn.StateMachine:
        stack = self._stack
        role = iam.Role(
            self,
            "TrainRunRole",
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
            description="runctl TrainRun state machine",
        )
        for function in self.functions.values():
            function.grant_invoke(role)
        # /aws/vendedlogs/ keeps CloudWatch's resource policy small however many machines log.
        log_group = logs.LogGroup(
            self,
            "TrainRunLogs",
            log_group_name=f"/aws/vendedlogs/states/{stack.stack_name}-TrainRun",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        state_machine = sfn.StateMachine(
            self,
            "TrainRun",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(TRAIN_RUN_ASL)),
            definition_substitutions=self.definition_substitutions,
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
            role=role,
        )
        for function in self.functions.values():
            acknowledge_resource_wildcard(
                role,
                f"{function.function_arn}:*",
                "grant_invoke adds '<function arn>:*' for the versions and aliases of this step "
                "function only",
            )
        acknowledge_resource_wildcard(
            role,
            "*",
            "CloudWatch Logs delivery (logs:*LogDelivery*, DescribeLogGroups, ...) and X-Ray "
            "actions that CDK adds for logging and tracing " + NO_RESOURCE_SCOPE,
        )
        return state_machine


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

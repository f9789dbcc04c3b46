"""What each Lambda may do (TrainRun steps, event handlers): one small statement per need, each
wildcard with its reason."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn

from lambdas.constants import CODE_PREFIX, CONTEXTS_PREFIX, RUNS_PREFIX, TAG_MANAGED
from lambdas.functions import START_PIPELINE_RUN
from lambdas.models.pipeline import Pipeline
from stacks.compute import Compute
from stacks.images import Images
from stacks.nag_acknowledgements import NO_RESOURCE_SCOPE, acknowledge_resource_wildcard


class FunctionPermissions:
    """What the step functions and the event handlers share: how a grant is written, and the
    needs more than one of them has. Subclasses map registry names to their grants."""

    def __init__(
        self, *, bucket: s3.IBucket, runs_table: dynamodb.ITable, compute: Compute
    ) -> None:
        self._stack = Stack.of(compute)
        self._bucket = bucket
        self._table = runs_table
        self._compute = compute
        self._by_step: dict[str, Callable[[lambda_.Function], None]] = {}

    def grant(self, step_name: str, function: lambda_.Function) -> None:
        if step_name not in self._by_step:
            raise ValueError(f"{step_name} has no permissions defined in {__name__}")
        self._by_step[step_name](function)

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

    def _read_run_records(self, function: lambda_.Function) -> None:
        self._allow(function, "ReadRunRecords", ["dynamodb:GetItem"], [self._table.table_arn])

    def _describe_instances(self, function: lambda_.Function) -> None:
        self._allow(
            function,
            "Describe",
            ["ec2:DescribeInstances"],
            ["*"],
            wildcard_reason="ec2:DescribeInstances " + NO_RESOURCE_SCOPE,
        )

    def _describe_instances_and_spot_prices(self, function: lambda_.Function) -> None:
        # DescribeSpotPriceHistory prices the run's spot attempts (lambdas/logic/pricing.py).
        self._allow(
            function,
            "Describe",
            ["ec2:DescribeInstances", "ec2:DescribeSpotPriceHistory"],
            ["*"],
            wildcard_reason="ec2:DescribeInstances and ec2:DescribeSpotPriceHistory "
            + NO_RESOURCE_SCOPE,
        )

    def _terminate_runctl_instances(self, function: lambda_.Function, what: str) -> None:
        self._allow(
            function,
            "TerminateRunctlInstances",
            ["ec2:TerminateInstances"],
            [self._ec2_arn("instance")],
            {"StringEquals": {f"aws:ResourceTag/{TAG_MANAGED}": "true"}},
            wildcard_reason=f"terminates {what} (ids known only at run time), and only "
            f"instances tagged {TAG_MANAGED}=true (aws:ResourceTag condition)",
        )

    def _read_run_files(self, function: lambda_.Function, what: str) -> None:
        self._read_files(
            function, "ReadRunFiles", RUNS_PREFIX, f"reads {what}, a key made per run and attempt"
        )

    def _read_files(self, function: lambda_.Function, sid: str, prefix: str, reason: str) -> None:
        """GetObject under `prefix`, where a missing key must read as 404 (not yet written)."""
        self._allow(
            function,
            sid,
            ["s3:GetObject"],
            [self._bucket.arn_for_objects(f"{prefix}*")],
            wildcard_reason=reason,
        )
        self._tell_missing_from_denied(function)

    def _tell_missing_from_denied(self, function: lambda_.Function) -> None:
        # S3 answers GetObject/HeadObject on a missing key with 403 unless the caller may list
        # the bucket; the handlers treat 404 as "not written (yet)" and re-raise anything else.
        self._allow(function, "TellMissingFromDenied", ["s3:ListBucket"], [self._bucket.bucket_arn])

    def _send_command(self, function: lambda_.Function) -> None:
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


class StepPermissions(FunctionPermissions):
    """Grants each step function (by its TRAIN_RUN_STEPS name) the calls its handler makes."""

    def __init__(
        self,
        *,
        bucket: s3.IBucket,
        runs_table: dynamodb.ITable,
        compute: Compute,
        images: Images,
        subnet_ids: tuple[str, ...],
        data_buckets: tuple[str, ...],
    ) -> None:
        super().__init__(bucket=bucket, runs_table=runs_table, compute=compute)
        self._images = images
        self._subnet_ids = subnet_ids
        self._data_bucket_arns = [
            f"arn:{self._stack.partition}:s3:::{name}" for name in data_buckets
        ]
        self._by_step = {
            "ValidateRun": self._grant_validate_run,
            "RecordRun": self._grant_record_run,
            "BuildImage": self._grant_build_image,
            "LaunchInstance": self._grant_launch_instance,
            "CheckInstance": self._grant_check_instance,
            "BootstrapInstance": self._send_command,
            "CheckBootstrap": self._grant_check_bootstrap,
            "StartAgent": self._grant_start_agent,
            "FinalizeRun": self._grant_finalize_run,
            "PlanNextAttempt": self._grant_plan_next_attempt,
            "ReleasePreviousAttempt": self._grant_release_previous_attempt,
        }

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
            "HeadBuildContext",
            ["s3:GetObject"],
            [self._bucket.arn_for_objects(f"{CONTEXTS_PREFIX}*")],
            wildcard_reason="contexts/ holds every Docker build context, named by content hash "
            "at submit time",
        )
        self._allow(
            function,
            "ListRunAndDataBuckets",
            ["s3:ListBucket"],
            [self._bucket.bucket_arn, *self._data_bucket_arns],
        )
        # Unknown instance types and an image that does not suit them are refused here.
        self._allow(
            function,
            "DescribeInstanceTypesAndImages",
            ["ec2:DescribeInstanceTypes", "ec2:DescribeImages"],
            ["*"],
            wildcard_reason="ec2:Describe* actions " + NO_RESOURCE_SCOPE,
        )

    def _grant_record_run(self, function: lambda_.Function) -> None:
        self._read_write_runs_table(function)

    # --- container images (issue #12) -----------------------------------------------------------

    def _grant_build_image(self, function: lambda_.Function) -> None:
        images = self._images
        # An image already in the repository under its tag (the hash of the build's inputs) is
        # not built again; its digest goes on the run.
        self._allow(
            function,
            "FindBuiltImage",
            ["ecr:DescribeImages"],
            [images.repository.repository_arn],
        )
        self._allow(
            function,
            "StartAndFollowBuild",
            ["codebuild:StartBuild", "codebuild:BatchGetBuilds"],
            [images.project.project_arn],
        )
        # A failed build's last lines, from its stream builds/<tag>/<build uuid>.
        self._allow(
            function,
            "ReadBuildLog",
            ["logs:GetLogEvents", "logs:DescribeLogStreams"],
            [images.run_log_group.log_group_arn],
        )
        # The build's id (and its image's digest) on the run item.
        self._update_run_record(function)

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
        self._read_run_records(function)  # a stop request ends the boot

    def _grant_check_bootstrap(self, function: lambda_.Function) -> None:
        self._allow(
            function,
            "ReadCommandResult",
            ["ssm:GetCommandInvocation"],
            ["*"],
            wildcard_reason="ssm:GetCommandInvocation " + NO_RESOURCE_SCOPE,
        )
        self._read_run_records(function)  # a stop request ends the install

    def _grant_start_agent(self, function: lambda_.Function) -> None:
        self._send_command(function)
        # It waits for the start command's output: the agent's pid, or why it did not start.
        self._allow(
            function,
            "ReadStartCommandResult",
            ["ssm:GetCommandInvocation"],
            ["*"],
            wildcard_reason="ssm:GetCommandInvocation " + NO_RESOURCE_SCOPE,
        )
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
        self._describe_instances_and_spot_prices(function)
        # result.json is missing after a failed launch or a lost instance: must read as 404;
        # metrics.jsonl of each attempt is read for the run's metrics summary.
        self._read_run_files(function, "runs/<run_id>/attempts/<n>/result.json and metrics.jsonl")
        self._read_write_runs_table(function)

    def _grant_plan_next_attempt(self, function: lambda_.Function) -> None:
        # The run record's budgets and the conditional advance to the next attempt.
        self._update_run_record(function)
        # A retryable Runctl.ScriptFailed is retried only on the exit codes the RunSpec lists,
        # read from the attempt's result.json (lambdas/logic/next_attempt.py).
        self._read_run_files(function, "runs/<run_id>/attempts/<n>/result.json")

    def _grant_release_previous_attempt(self, function: lambda_.Function) -> None:
        # Waits for runs/<id>/attempts/<n>/handoff.json (HeadObject), then ends attempt n.
        self._read_run_files(function, "runs/<run_id>/attempts/<n>/handoff.json")
        self._describe_instances(function)
        self._terminate_runctl_instances(function, "the previous attempt's instance")


class EventHandlerPermissions(FunctionPermissions):
    """Grants each EVENT_HANDLERS function (by name) the calls its handler makes."""

    def __init__(
        self,
        *,
        bucket: s3.IBucket,
        runs_table: dynamodb.ITable,
        compute: Compute,
        train_run: sfn.StateMachine,
    ) -> None:
        super().__init__(bucket=bucket, runs_table=runs_table, compute=compute)
        self._train_run = train_run
        self._by_step = {
            "OnInstanceEvent": self._grant_on_instance_event,
            "ReapOrphans": self._grant_reap_orphans,
        }

    def train_run_executions_arn(self) -> str:
        """`arn:...:execution:<TrainRun's name>:*`. It references the state machine's Name, so
        the reaper's policy depends on the state machine; nothing depends back on the reaper."""
        return self._stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self._train_run.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _grant_on_instance_event(self, function: lambda_.Function) -> None:
        # The rules cannot filter on tags: the handler reads the instance's runctl tags itself.
        self._describe_instances(function)
        # The run's attempt, status and task token; the CHECKPOINTING / lost transitions.
        self._update_run_record(function)
        self._allow(
            function,
            "FailTaskToken",
            ["states:SendTaskFailure"],
            ["*"],
            wildcard_reason="states:SendTaskFailure " + NO_RESOURCE_SCOPE,
        )
        # Writes $RUNCTL_HOME/notice.json on the instance for a warning or rebalance.
        self._send_command(function)

    def _grant_reap_orphans(self, function: lambda_.Function) -> None:
        # Spot prices and the attempts' metrics.jsonl: a run the reaper ends gets the cost and
        # metrics summary FinalizeRun would have recorded.
        self._describe_instances_and_spot_prices(function)
        self._read_run_files(function, "runs/<run_id>/attempts/<n>/metrics.jsonl")
        self._terminate_runctl_instances(function, "instances no live run owns")
        self._allow(
            function,
            "ScanRuns",
            ["dynamodb:Scan"],
            [self._table.table_arn],
        )
        self._update_run_record(function)
        self._allow(
            function,
            "StopOrphanedOrOverdueTrainRuns",
            ["states:DescribeExecution", "states:StopExecution"],
            [self.train_run_executions_arn()],
            wildcard_reason="executions of the TrainRun state machine only (its name, then "
            "'*' for the execution names, which are chosen per run at start time)",
        )


class ClientFunctionPermissions(FunctionPermissions):
    """Grants each CLIENT_FUNCTIONS function (by name) the calls its handler makes."""

    def __init__(
        self, *, bucket: s3.IBucket, runs_table: dynamodb.ITable, compute: Compute
    ) -> None:
        super().__init__(bucket=bucket, runs_table=runs_table, compute=compute)
        self._by_step = {"StopRun": self._grant_stop_run}

    def _grant_stop_run(self, function: lambda_.Function) -> None:
        # Reads the run, marks it stop-requested (a conditional update).
        self._update_run_record(function)
        # Writes $RUNCTL_HOME/notice.json ("stop-requested") for the run's agent.
        self._send_command(function)


class PipelinePermissions(FunctionPermissions):
    """Grants StartPipelineRun what it calls: list the watched prefixes (to find markers),
    remember triggers, start TrainRun."""

    def __init__(
        self,
        *,
        bucket: s3.IBucket,
        runs_table: dynamodb.ITable,
        compute: Compute,
        train_run: sfn.StateMachine,
        triggers_table: dynamodb.ITable,
        pipelines: tuple[Pipeline, ...],
    ) -> None:
        super().__init__(bucket=bucket, runs_table=runs_table, compute=compute)
        self._train_run = train_run
        self._triggers_table = triggers_table
        self._pipelines = pipelines
        self._by_step = {START_PIPELINE_RUN.name: self._grant_start_pipeline_run}

    def _grant_start_pipeline_run(self, function: lambda_.Function) -> None:
        self._allow(
            function,
            "StartTrainRun",
            ["states:StartExecution"],
            [self._train_run.state_machine_arn],
        )
        # Powertools' idempotency record: conditional put, read, complete, delete on failure.
        self._allow(
            function,
            "RecordTriggers",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            [self._triggers_table.table_arn],
        )
        # Markers are found by listing (ListObjectsV2), never read: ListBucket on each watched
        # bucket, limited by s3:prefix to the pipelines' prefixes.
        prefixes: dict[str | None, list[str]] = {}
        for pipeline in self._pipelines:
            prefixes.setdefault(pipeline.watch.bucket, []).append(f"{pipeline.watch.prefix}*")
        for index, (name, listed) in enumerate(prefixes.items()):
            arn = (
                self._bucket.bucket_arn
                if name is None
                else f"arn:{self._stack.partition}:s3:::{name}"
            )
            self._allow(
                function,
                f"ListWatchedPrefixes{index}",
                ["s3:ListBucket"],
                [arn],
                {"StringLike": {"s3:prefix": sorted(set(listed))}},
            )

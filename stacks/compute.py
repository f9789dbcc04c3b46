"""What a training instance is: its role, security group, launch template, and the agent it runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import CfnTag, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from lambdas.constants import (
    AGENT_PREFIX,
    CODE_PREFIX,
    DATA_PREFIX,
    ENVS_PREFIX,
    RUNS_PREFIX,
    TAG_MANAGED,
)
from stacks.nag_acknowledgements import (
    NO_RESOURCE_SCOPE,
    acknowledge_managed_policy,
    acknowledge_resource_wildcard,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
AGENT_DIR = REPO_ROOT / "instance_agent"
# Tool caches too: a lint run inside the folder must not ship with the agent.
AGENT_ASSET_EXCLUDE = ["__pycache__", "*.pyc", "ruff.toml", ".ruff_cache", ".mypy_cache"]

ROOT_DEVICE = "/dev/xvda"  # Amazon Linux 2023 and its Deep Learning AMIs
# The only run-table attributes the agent may write (and test, in its condition expressions).
AGENT_WRITABLE_ATTRIBUTES = [
    "run_id",
    "status",
    "updated_at",
    "latest_metrics",
    "attempt",
    "interrupted_by",  # set with CHECKPOINTING: spot-interrupted or rebalance
    "setup",  # setup.<attempt>: the environment and GPU phases, as soon as they are known
    "checkpoints",  # checkpoints.<attempt>: resumed from, the newest durable, never durable
]


class Compute(Construct):
    """Instance role and profile, security group (no ingress), launch template, agent asset."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        runs_table: dynamodb.ITable,
        run_log_group: logs.ILogGroup,
        data_buckets: tuple[str, ...],
        vpc_id: str | None,
        root_volume_gib: int,
        pull_repository_arns: Sequence[str],
        group_in_request: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        # The agent: a zip of the package folder's contents (Bootstrap unzips it into
        # $RUNCTL_HOME/instance_agent). AWS keeps it in the CDK asset bucket.
        self.agent_asset = s3_assets.Asset(
            self, "InstanceAgent", path=str(AGENT_DIR), exclude=AGENT_ASSET_EXCLUDE
        )

        ssm_core = iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")
        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="runctl training instances: SSM agent, run data, task token, run log",
            managed_policies=[ssm_core],
        )
        acknowledge_managed_policy(
            self.instance_role,
            ssm_core.managed_policy_arn,
            "AmazonSSMManagedInstanceCore is the AWS-maintained minimum for the SSM agent, which "
            "Bootstrap and StartAgent need (Run Command); a copy would not follow its updates",
        )
        self.instance_profile = iam.InstanceProfile(
            self, "InstanceProfile", role=self.instance_role
        )
        self._grant_instance_access(bucket, runs_table, run_log_group, data_buckets, stack)
        self._grant_image_pull(pull_repository_arns)
        acknowledge_resource_wildcard(
            self.instance_role,
            "*",
            "states:SendTaskHeartbeat/Success/Failure and ecr:GetAuthorizationToken "
            + NO_RESOURCE_SCOPE,
        )

        # No ingress at all: the instance is reached only through SSM, which it dials out to.
        # All egress: training code installs packages and fetches data from anywhere (PyPI,
        # Hugging Face, S3, ...), and the SSM agent needs HTTPS to the SSM endpoints.
        # Without a VpcId, CloudFormation puts the group in the default VPC and rejects an explicit
        # egress list (VpcId is a dependency of SecurityGroupEgress); EC2's default rule for a new
        # group is the same "all outbound to 0.0.0.0/0".
        all_outbound = ec2.CfnSecurityGroup.EgressProperty(
            ip_protocol="-1",
            cidr_ip="0.0.0.0/0",
            description="training code and SSM reach the internet",
        )
        self.security_group = ec2.CfnSecurityGroup(
            self,
            "SecurityGroup",
            group_description="runctl training instances: no inbound, all outbound",
            vpc_id=vpc_id,
            security_group_egress=[all_outbound] if vpc_id else None,
        )

        managed_tag = [CfnTag(key=TAG_MANAGED, value="true")]
        # With runctl:publicIp decided (group_in_request), LaunchInstance sends a network interface
        # carrying the subnet, this group and AssociatePublicIpAddress; EC2 then refuses a group
        # at the instance level ("Network interfaces and an instance-level security groups may
        # not be specified on the same request"), so the template leaves it out.
        # No ImageId: LaunchInstance picks the AMI per run (and may resize the root volume).
        self.launch_template = ec2.CfnLaunchTemplate(
            self,
            "LaunchTemplate",
            launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty(
                iam_instance_profile=ec2.CfnLaunchTemplate.IamInstanceProfileProperty(
                    arn=self.instance_profile.instance_profile_arn
                ),
                security_group_ids=None
                if group_in_request
                else [self.security_group.attr_group_id],
                metadata_options=ec2.CfnLaunchTemplate.MetadataOptionsProperty(
                    http_endpoint="enabled",
                    http_tokens="required",
                    # 2: a container on the instance can still reach IMDS; nothing further.
                    http_put_response_hop_limit=2,
                    instance_metadata_tags="enabled",
                ),
                block_device_mappings=[
                    ec2.CfnLaunchTemplate.BlockDeviceMappingProperty(
                        device_name=ROOT_DEVICE,
                        ebs=ec2.CfnLaunchTemplate.EbsProperty(
                            encrypted=True,
                            volume_type="gp3",
                            volume_size=root_volume_gib,
                            delete_on_termination=True,
                        ),
                    )
                ],
                tag_specifications=[
                    ec2.CfnLaunchTemplate.TagSpecificationProperty(
                        resource_type=kind, tags=managed_tag
                    )
                    for kind in ("instance", "volume")
                ],
            ),
        )

    def _grant_instance_access(
        self,
        bucket: s3.IBucket,
        runs_table: dynamodb.ITable,
        run_log_group: logs.ILogGroup,
        data_buckets: tuple[str, ...],
        stack: Stack,
    ) -> None:
        role = self.instance_role
        data_bucket_arns = [f"arn:{stack.partition}:s3:::{name}" for name in data_buckets]
        read_only = {
            bucket.arn_for_objects(f"{CODE_PREFIX}*"): "code/ holds the code archives, "
            "content-addressed by the client, so their keys are not known at deploy time",
            bucket.arn_for_objects(f"{AGENT_PREFIX}*"): "agent/ is where local mode (and "
            "anyone replacing the CDK asset) puts the agent zip; read-only",
            bucket.arn_for_objects(f"{DATA_PREFIX}*"): "data/ holds the datasets users upload "
            "to the runctl bucket, under names chosen at upload time; read-only",
            **{
                f"{arn}/*": "a data bucket the operator listed in runctl:dataBuckets; read-only"
                for arn in data_bucket_arns
            },
        }
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadCodeAgentAndData", actions=["s3:GetObject"], resources=list(read_only)
            )
        )
        # Read and write, no delete (but old checkpoint versions, below): run files, and the
        # scripts' built Python environments (cached by the hash of their inputs).
        read_write = {
            "ReadWriteRunFiles": (
                RUNS_PREFIX,
                "runs/<run_id>/ keys are made per run and attempt (config, checkpoints, "
                "outputs, logs); no delete",
            ),
            "ReadWriteEnvironmentCache": (
                ENVS_PREFIX,
                "envs/<hash>.tar.gz are named by the hash of a requirements file, image and "
                "Python, known only on the instance; no delete",
            ),
        }
        for sid, (prefix, reason) in read_write.items():
            objects = bucket.arn_for_objects(f"{prefix}*")
            role.add_to_policy(
                iam.PolicyStatement(
                    sid=sid,
                    actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[objects],
                )
            )
            acknowledge_resource_wildcard(role, objects, reason)
        for resource, reason in read_only.items():
            acknowledge_resource_wildcard(role, resource, reason)
        # Retention (RunSpec checkpoints.keep): older checkpoint versions, and a version whose
        # file changed mid-upload, are deleted; nothing else under runs/ ever is.
        versions = bucket.arn_for_objects(f"{RUNS_PREFIX}*/checkpoints/v/*")
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DeleteOldCheckpointVersions", actions=["s3:DeleteObject"], resources=[versions]
            )
        )
        acknowledge_resource_wildcard(
            role, versions, "checkpoint versions are named per run and upload on the instance"
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListRunAndDataBuckets",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn, *data_bucket_arns],
            )
        )
        # Exactly the agent zip (Asset.grant_read would open the whole CDK asset bucket).
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadAgentAsset",
                actions=["s3:GetObject"],
                resources=[
                    f"arn:{stack.partition}:s3:::{self.agent_asset.s3_bucket_name}/"
                    f"{self.agent_asset.s3_object_key}"
                ],
            )
        )
        run_log_group.grant_write(role)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="FindRunLogStreams",
                actions=["logs:DescribeLogStreams"],
                resources=[run_log_group.log_group_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EndTaskToken",
                actions=[
                    "states:SendTaskHeartbeat",
                    "states:SendTaskSuccess",
                    "states:SendTaskFailure",
                ],
                resources=["*"],
            )
        )
        # The agent updates its run's progress only; the condition also covers the attributes
        # its condition expressions read (attempt, status).
        role.add_to_policy(
            iam.PolicyStatement(
                sid="UpdateRunProgress",
                actions=["dynamodb:UpdateItem"],
                resources=[runs_table.table_arn],
                conditions={
                    "ForAllValues:StringEquals": {"dynamodb:Attributes": AGENT_WRITABLE_ATTRIBUTES},
                    # ALL_NEW/ALL_OLD would return attributes outside that list.
                    "StringEqualsIfExists": {
                        "dynamodb:ReturnValues": ["NONE", "UPDATED_OLD", "UPDATED_NEW"]
                    },
                },
            )
        )

    def _grant_image_pull(self, repository_arns: Sequence[str]) -> None:
        """Container runs (issue #12): the agent logs in to ECR and pulls the run's image, from
        the stack's repository or one of runctl:pullRepositories; no push, no other repository."""
        role = self.instance_role
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PullRunImages",
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=list(repository_arns),
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="LogInToEcr", actions=["ecr:GetAuthorizationToken"], resources=["*"]
            )
        )

"""Where runs live: the runctl bucket, the runs table, and the run log group."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambdas.constants import ENVS_PREFIX

RUNS_TABLE_KEY = "run_id"
EXPERIMENT_INDEX = "experiment-index"
TTL_ATTRIBUTE = "expires_at"
# How long a built script environment stays cached in the bucket (envs/).
ENVIRONMENT_CACHE_DAYS = 30


class Storage(Construct):
    """Bucket (code, agent configs, checkpoints, outputs), runs table, run log group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stack_name: str,
        event_bridge_enabled: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)

        # cdk-nag S1 accepts this bucket unlogged: it is the access-log destination itself.
        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )

        # Retained: it holds every run's checkpoints and outputs, which outlive the stack.
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="runctl-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireOldVersionsAndAbandonedUploads",
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                # Built script environments are a cache (GBs each with CUDA packages): a run after
                # this builds its environment again. Counted from the upload, not the last use.
                s3.LifecycleRule(
                    id="ExpireCachedEnvironments",
                    prefix=ENVS_PREFIX,
                    expiration=Duration.days(ENVIRONMENT_CACHE_DAYS),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        if event_bridge_enabled:
            # A pipeline watches this bucket (stacks/pipelines.py). Set on the bucket resource
            # itself: the L2 `event_bridge_enabled` deploys a custom-resource Lambda to do it.
            cfn_bucket = self.bucket.node.default_child
            assert isinstance(cfn_bucket, s3.CfnBucket)
            cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
                event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                    event_bridge_enabled=True
                )
            )

        self.runs_table = dynamodb.Table(
            self,
            "RunsTable",
            partition_key=dynamodb.Attribute(
                name=RUNS_TABLE_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.runs_table.add_global_secondary_index(
            index_name=EXPERIMENT_INDEX,
            partition_key=dynamodb.Attribute(name="experiment", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="created_at", type=dynamodb.AttributeType.STRING),
        )

        # Destroyed with the stack: the agent also copies every attempt's stdout/stderr to the
        # retained bucket, and a retained log group with this fixed name would make the next
        # deploy of the same stack name fail ("already exists").
        self.run_log_group = logs.LogGroup(
            self,
            "RunLogGroup",
            log_group_name=f"/runctl/{stack_name}/runs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )

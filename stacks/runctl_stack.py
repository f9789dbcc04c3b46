"""RunctlStack: composes storage, compute, orchestration and instance events; names the outputs."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.client_functions import ClientFunctions
from stacks.compute import Compute
from stacks.config import RunctlConfig
from stacks.images import Images
from stacks.instance_events import InstanceEvents
from stacks.orchestration import Orchestration
from stacks.pipelines import Pipelines
from stacks.step_permissions import (
    ClientFunctionPermissions,
    EventHandlerPermissions,
    StepPermissions,
)
from stacks.storage import Storage
from stacks.sweeps import SweepPermissions, Sweeps
from stacks.vpc_endpoints import VpcEndpoints


class RunctlStack(Stack):
    """Everything one AWS account needs to run training scripts on spot instances."""

    def __init__(self, scope: Construct, *, config: RunctlConfig, **kwargs: Any) -> None:
        super().__init__(scope, config.stack_name, **kwargs)
        self.config = config

        self.storage = Storage(
            self,
            "Storage",
            stack_name=self.stack_name,
            event_bridge_enabled=any(item.watch.bucket is None for item in config.pipelines),
        )
        # Container images (issue #12): the run images' repository and the project building them.
        self.images = Images(
            self,
            "Images",
            bucket=self.storage.bucket,
            run_log_group=self.storage.run_log_group,
            images_keep=config.images_keep,
            pull_repositories=config.pull_repositories,
        )
        self.compute = Compute(
            self,
            "Compute",
            bucket=self.storage.bucket,
            runs_table=self.storage.runs_table,
            run_log_group=self.storage.run_log_group,
            data_buckets=config.data_buckets,
            vpc_id=config.vpc_id,
            root_volume_gib=config.root_volume_gib,
            group_in_request=bool(config.associate_public_ip),
            pull_repository_arns=self.images.pull_repository_arns,
        )
        # Private subnets: the endpoints the instances need (runctl:vpcEndpoints).
        self.vpc_endpoints = (
            VpcEndpoints(
                self,
                "VpcEndpoints",
                vpc_id=config.vpc_id,
                route_table_ids=config.route_table_ids,
                subnet_ids=config.endpoint_subnet_ids,
                instance_security_group=self.compute.security_group,
            )
            if config.vpc_endpoints and config.vpc_id
            else None
        )
        self.orchestration = Orchestration(
            self,
            "Orchestration",
            bucket=self.storage.bucket,
            runs_table=self.storage.runs_table,
            run_log_group=self.storage.run_log_group,
            compute=self.compute,
            images=self.images,
            default_instance_types=config.default_instance_types,
            subnet_ids=config.subnet_ids,
            data_buckets=config.data_buckets,
            train_run_settings=config.train_run_settings,
            associate_public_ip=config.associate_public_ip,
        )
        # Interruption handling (issue #3): EC2 instance events and the orphan reaper.
        self.instance_events = InstanceEvents(
            self,
            "InstanceEvents",
            orchestration=self.orchestration,
            permissions=EventHandlerPermissions(
                bucket=self.storage.bucket,
                runs_table=self.storage.runs_table,
                compute=self.compute,
                train_run=self.orchestration.state_machine,
            ),
            heartbeat_seconds=config.heartbeat_seconds,
        )
        # What the client invokes: `runctl stop`.
        self.client_functions = ClientFunctions(
            self,
            "ClientFunctions",
            orchestration=self.orchestration,
            permissions=ClientFunctionPermissions(
                bucket=self.storage.bucket,
                runs_table=self.storage.runs_table,
                compute=self.compute,
            ),
        )

        # Retrain when new data lands, or on a schedule (issue #5); only with runctl:pipelines.
        self.pipelines = (
            Pipelines(
                self,
                "Pipelines",
                pipelines=config.pipelines,
                orchestration=self.orchestration,
                bucket=self.storage.bucket,
                runs_table=self.storage.runs_table,
                compute=self.compute,
                train_run=self.orchestration.state_machine,
            )
            if config.pipelines
            else None
        )

        # Hyperparameter sweeps (issue #5): the Sweep state machine, and StopSweep to cancel one.
        self.sweeps = Sweeps(
            self,
            "Sweeps",
            orchestration=self.orchestration,
            permissions=SweepPermissions(
                bucket=self.storage.bucket,
                runs_table=self.storage.runs_table,
                compute=self.compute,
                train_run=self.orchestration.state_machine,
                run_validation=StepPermissions(
                    bucket=self.storage.bucket,
                    runs_table=self.storage.runs_table,
                    compute=self.compute,
                    images=self.images,
                    subnet_ids=config.subnet_ids,
                    data_buckets=config.data_buckets,
                ),
            ),
            train_run=self.orchestration.state_machine,
        )

        # Stable ids: the client and tests find resources by these names.
        outputs = {
            "StateMachineArn": self.orchestration.state_machine.state_machine_arn,
            "BucketName": self.storage.bucket.bucket_name,
            "RunsTableName": self.storage.runs_table.table_name,
            "LogGroupName": self.storage.run_log_group.log_group_name,
            "InstanceRoleArn": self.compute.instance_role.role_arn,
            "StopRunFunctionName": self.client_functions.functions["StopRun"].function_name,
            "SweepStateMachineArn": self.sweeps.state_machine.state_machine_arn,
            "StopSweepFunctionName": self.sweeps.functions["StopSweep"].function_name,
            "ImageRepositoryUri": self.images.repository_uri,
            "ImageBuildProjectName": self.images.project.project_name,
        }
        for output_id, value in outputs.items():
            CfnOutput(self, output_id, value=value)

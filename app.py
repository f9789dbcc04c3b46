#!/usr/bin/env python3
"""The runctl CDK app. Built from cdk.json context only: no AWS call happens at synth time.

Context keys (defaults in cdk.json; override one with `npx cdk synth -c runctl:<key>=<value>`,
lists as JSON or comma-separated):

  runctl:stackName            CloudFormation stack name (default "Runctl"); also names the run log
                              group /runctl/<stackName>/runs.
  runctl:region               region to deploy to (default "us-east-1"). The account is left
                              unresolved unless CDK_DEFAULT_ACCOUNT is set (the CDK CLI sets it).
  runctl:defaultInstanceTypes instance types tried in order when a RunSpec names none
                              (default ["g5.xlarge", "g4dn.xlarge", "g6.xlarge"]).
  runctl:vpcId                VPC of the instances' security group. Empty: the default VPC.
  runctl:subnetIds            subnets instances launch in (needs runctl:vpcId). Empty: the launch
                              Lambda discovers the default VPC's default subnets at run time.
  runctl:vpcEndpoints         true: S3/DynamoDB gateway and ssm, ssmmessages, ec2messages, logs,
                              states interface endpoints in runctl:vpcId, for private subnets
                              (default false; stacks/vpc_endpoints.py).
  runctl:routeTableIds        route tables the gateway endpoints go in (needs runctl:vpcEndpoints).
  runctl:endpointSubnetIds    subnets of the interface endpoints, one per AZ (default:
                              runctl:subnetIds).
  runctl:publicIp             auto (default) | always | never: a public IPv4 on the instance; auto
                              = none with runctl:vpcEndpoints, else the subnet's own setting.
  runctl:dataBuckets          extra buckets instances (and ValidateRun) may list and read data from.
  runctl:rootVolumeGiB        root volume size in the launch template (default 100); a RunSpec's
                              volume_gb overrides it per run.
  runctl:heartbeatSeconds     Train state's heartbeat timeout (ASL ${HeartbeatSeconds}); a lost-
                              instance event is retried for this long plus a minute.
  runctl:pollIntervalSeconds  wait between readiness checks (ASL ${PollIntervalSeconds}).
                              These two default to lambdas.functions.TRAIN_RUN_SETTINGS.
  runctl:imagesKeep           container images kept in the stack's ECR repository (default 30).
  runctl:pullRepositories     more ECR repositories (names here, or ARNs) instances may pull a
                              RunSpec's container.image from; others are refused before launch.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import ConfigError, RunctlConfig
from stacks.runctl_stack import RunctlStack

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context, so `python app.py` and tests see what `cdk synth` sees."""
    return dict(json.loads(CDK_JSON.read_text())["context"])


def build_app(
    context: Mapping[str, Any] | None = None, outdir: str | None = None
) -> tuple[cdk.App, RunctlStack]:
    """The app with its one stack and cdk-nag attached; `context` overrides cdk.json and -c."""
    app = cdk.App(context=cdk_json_context(), post_cli_context=dict(context or {}), outdir=outdir)
    config = RunctlConfig.from_context(app.node.get_all_context())
    stack = RunctlStack(
        app,
        config=config,
        env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=config.region),
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


if __name__ == "__main__":
    try:
        runctl_app, _ = build_app()
    except ConfigError as error:
        sys.exit(f"runctl: {error}")
    runctl_app.synth()

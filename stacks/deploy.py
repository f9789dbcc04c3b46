"""`make deploy` and `make destroy`: the CDK CLI, with the target made ready and explained.

    python -m stacks.deploy deploy [--require-approval LEVEL] [-- CDK_ARGS...]
    python -m stacks.deploy destroy [--force] [-- CDK_ARGS...]

deploy synthesizes the app into cdk.out (`cdk synth`), reads the stack's account and region and
the CDK bootstrap version it needs from that cloud assembly, reads the version the account's
bootstrap stack (CDKToolkit) keeps in SSM (/cdk-bootstrap/hnb659fds/version), runs
`cdk bootstrap aws://ACCOUNT/REGION` when the parameter is missing or older, then deploys that
same assembly (`cdk deploy --app cdk.out`), so what was checked is what is deployed. Before all
that, when runctl:vpcId is empty, it checks that the region has a default VPC (NoDefaultVpc).

destroy synthesizes too, says which resources `cdk destroy` keeps (RemovalPolicy RETAIN: the
ones holding your runs) and whether runctl instances are still running, then runs
`cdk destroy --app cdk.out`, with --force only when asked.

Where: the region is the stack's own, `runctl:region` from cdk.json or `-c runctl:region=...`
among CDK_ARGS (app.py pins the stack to it, so AWS_REGION does not move the stack, and the check
does not use it either). Account and credentials come from the usual chain (AWS_PROFILE,
environment variables, SSO, ...), for the CDK CLI and this check alike; `--profile NAME` among
CDK_ARGS is used by both.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.constants import TAG_MANAGED

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
ASSEMBLY: Final = "cdk.out"  # relative to PROJECT_ROOT, where the CDK CLI runs
CDK: Final = ("npx", "cdk")
DEFAULT_APPROVAL: Final = "broadening"  # asks before IAM or security-group changes that widen
UNKNOWN_ACCOUNT: Final = "unknown-account"
DESCRIPTION: Final = "make deploy / make destroy: the CDK CLI, with the target made ready."
RETAIN_POLICIES: Final = ("Retain", "RetainExceptOnCreate")
NO_DEFAULT_VPC: Final = (
    "NoDefaultVpc: region {region} has no default VPC, and runctl:vpcId is empty, so the "
    "instances' security group and launches have no network. Set runctl:vpcId and "
    "runctl:subnetIds in cdk.json (or `make deploy CDK_ARGS='-c runctl:vpcId=vpc-... "
    "-c runctl:subnetIds=subnet-...,subnet-...'`); for subnets without internet access add "
    "runctl:vpcEndpoints and runctl:routeTableIds (README, Deploying). Nothing was deployed."
)

# What runs one CLI command in PROJECT_ROOT and gives its exit code (tests pass a recorder).
Runner = Callable[[Sequence[str]], int]
SessionFactory = Callable[[str | None], boto3.Session]


class DeployError(Exception):
    """Something to tell the user instead of a traceback."""


@dataclass(frozen=True)
class StackTarget:
    """One stack of the synthesized assembly, and what it needs from its environment."""

    stack_name: str
    account: str | None  # None: the assembly leaves it to the credentials
    region: str
    bootstrap_version: int  # the least bootstrap version the stack and its assets need
    version_parameter: str  # the SSM parameter the bootstrap stack keeps its version in
    template: Path


def stack_targets(assembly: Path) -> list[StackTarget]:
    """The CloudFormation stacks in a cloud assembly's manifest.json."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    artifacts: dict[str, Any] = manifest.get("artifacts", {})
    targets = []
    for artifact_id, artifact in artifacts.items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        properties = artifact.get("properties", {})
        _, _, location = artifact["environment"].partition("aws://")
        account, _, region = location.partition("/")
        if not region or region.startswith("unknown-"):
            raise DeployError(f"stack {artifact_id} has no region in {assembly}/manifest.json")
        # The stack's own requirement, and those of the asset manifests it depends on.
        needs = [properties] + [
            artifacts[name].get("properties", {})
            for name in artifact.get("dependencies", [])
            + properties.get("additionalDependencies", [])
            if name in artifacts
        ]
        versions = [
            item["requiresBootstrapStackVersion"]
            for item in needs
            if "requiresBootstrapStackVersion" in item
        ]
        parameters = {
            item["bootstrapStackVersionSsmParameter"]
            for item in needs
            if "bootstrapStackVersionSsmParameter" in item
        }
        if not versions or len(parameters) != 1:
            raise DeployError(
                f"stack {artifact_id}: no single bootstrap requirement in the assembly"
            )
        targets.append(
            StackTarget(
                stack_name=properties.get("stackName", artifact_id),
                account=None if account in ("", UNKNOWN_ACCOUNT) else account,
                region=region,
                bootstrap_version=max(versions),
                version_parameter=parameters.pop(),
                template=assembly / properties["templateFile"],
            )
        )
    if not targets:
        raise DeployError(f"no stack in {assembly}/manifest.json")
    return targets


def bootstrap_version(ssm: Any, parameter: str) -> int | None:
    """The version the bootstrap stack wrote to `parameter`; None when there is none."""
    try:
        value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise
    return int(value)


def ensure_bootstrapped(
    target: StackTarget, session: boto3.Session, run: Runner, profile_args: Sequence[str]
) -> None:
    """Runs `cdk bootstrap` for the target's environment unless it is bootstrapped at the version
    the stack needs; says so in one line either way."""
    try:
        account = target.account or _caller_account(session, target.region)
        environment = f"aws://{account}/{target.region}"
        found = bootstrap_version(
            session.client("ssm", region_name=target.region), target.version_parameter
        )
    except ClientError as error:
        if "AccessDenied" not in error.response.get("Error", {}).get("Code", ""):
            raise
        # A deployer allowed only to assume the CDK roles: cdk deploy checks the version itself
        # (through its deploy role) and names `cdk bootstrap` if it is missing.
        print(
            f"runctl: cannot read {target.version_parameter} in {target.region} ({error}); "
            "not checking the CDK bootstrap here, cdk deploy will.",
            flush=True,
        )
        return
    if found is not None and found >= target.bootstrap_version:
        print(f"runctl: {environment} is bootstrapped for CDK (version {found}).", flush=True)
        return
    why = (
        f"is not bootstrapped for CDK (no SSM parameter {target.version_parameter})"
        if found is None
        else f"has CDK bootstrap version {found}, this stack needs {target.bootstrap_version}"
    )
    print(f"runctl: {environment} {why}: running cdk bootstrap.", flush=True)
    if run([*CDK, "bootstrap", environment, *profile_args]) != 0:
        raise DeployError(f"cdk bootstrap {environment} failed (see its output above)")


def needs_default_vpc(target: StackTarget) -> bool:
    """Whether the template puts a security group in the default VPC (one with no VpcId), which
    it does when runctl:vpcId is empty."""
    resources: dict[str, Any] = json.loads(target.template.read_text()).get("Resources", {})
    return any(
        body["Type"] == "AWS::EC2::SecurityGroup" and "VpcId" not in body.get("Properties", {})
        for body in resources.values()
    )


def check_default_vpc(target: StackTarget, session: boto3.Session) -> None:
    """Stops the deploy, naming the settings to use, when the stack needs the region's default
    VPC and there is none. Synth cannot know (it makes no AWS call); CloudFormation would fail
    later, on the security group, with a message that does not name runctl:vpcId."""
    if not needs_default_vpc(target):
        return
    try:
        found = session.client("ec2", region_name=target.region).describe_vpcs(
            Filters=[{"Name": "is-default", "Values": ["true"]}]
        )["Vpcs"]
    except ClientError as error:
        if "UnauthorizedOperation" not in str(error) and "AccessDenied" not in str(error):
            raise
        print(
            f"runctl: cannot look for a default VPC in {target.region} ({error}); "
            "not checking it here.",
            flush=True,
        )
        return
    if not found:
        raise DeployError(NO_DEFAULT_VPC.format(region=target.region))


def retained_resources(target: StackTarget) -> list[tuple[str, str]]:
    """(logical id, type) of the template's resources that `cdk destroy` leaves behind."""
    resources: dict[str, Any] = json.loads(target.template.read_text()).get("Resources", {})
    return [
        (logical_id, body["Type"])
        for logical_id, body in resources.items()
        if body.get("DeletionPolicy") in RETAIN_POLICIES
    ]


def deployed_names(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """Logical id -> physical name of a deployed stack's resources; empty if it is not there."""
    try:
        found = cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
    except (ClientError, BotoCoreError):
        return {}
    return {item["LogicalResourceId"]: item.get("PhysicalResourceId", "") for item in found}


def running_instances(ec2: Any) -> list[str]:
    """Ids of the instances runctl launched that are still pending or running."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [
        instance["InstanceId"]
        for page in pages
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]


def describe_what_stays(target: StackTarget, session: boto3.Session) -> None:
    """Prints what `cdk destroy` keeps of `target`, and how to delete it by hand; warns about
    runctl instances still running (runs launch them, the stack does not own them)."""
    names = deployed_names(
        session.client("cloudformation", region_name=target.region), target.stack_name
    )
    print(
        f"runctl: cdk destroy deletes stack {target.stack_name} ({target.region}) but keeps "
        "these (RemovalPolicy RETAIN), which hold your runs; delete them by hand once you no "
        "longer need them:",
        flush=True,
    )
    for logical_id, resource_type in retained_resources(target):
        print(f"  {_what_to_delete(target, logical_id, resource_type, names.get(logical_id))}")
    try:
        instances = running_instances(session.client("ec2", region_name=target.region))
    except (ClientError, BotoCoreError) as error:
        print(f"runctl: could not look for running runctl instances ({error}).", flush=True)
        return
    if instances:
        print(
            f"runctl: {len(instances)} runctl instance(s) still running ({', '.join(instances)}): "
            "they are not part of the stack and keep running (and billing) after it is gone; "
            "`runctl stop RUN` their runs first.",
            flush=True,
        )


def _what_to_delete(
    target: StackTarget, logical_id: str, resource_type: str, name: str | None
) -> str:
    """One line: the resource (its name if the stack is deployed) and how to delete it."""
    # CloudFormation names them <stack>-<logical id>-<random suffix> (buckets in lower case).
    prefix = f"{target.stack_name}-{logical_id}-"
    if resource_type == "AWS::S3::Bucket":
        label = name or f"{logical_id} (stack not found: its name starts with {prefix.lower()})"
        return (
            f"bucket {label}: empty it (every object version: the S3 console's Empty does it), "
            f"then `aws s3 rb s3://{name or 'NAME'}`"
        )
    if resource_type == "AWS::DynamoDB::Table":
        label = name or f"{logical_id} (stack not found: its name starts with {prefix})"
        return (
            f"table {label}: `aws dynamodb delete-table --table-name {name or 'NAME'} "
            f"--region {target.region}`"
        )
    if resource_type == "AWS::ECR::Repository":
        label = name or f"{logical_id} (stack not found: its name starts with {prefix.lower()})"
        return (
            f"image repository {label}: `aws ecr delete-repository --repository-name "
            f"{name or 'NAME'} --force --region {target.region}` (--force: with its images)"
        )
    return f"{resource_type} {name or logical_id}: delete it in the AWS console"


def profile_of(cdk_args: Sequence[str]) -> str | None:
    """The value of `--profile NAME` / `--profile=NAME` among the CDK CLI arguments."""
    for index, arg in enumerate(cdk_args):
        if arg == "--profile" and index + 1 < len(cdk_args):
            return cdk_args[index + 1]
        if arg.startswith("--profile="):
            return arg.partition("=")[2]
    return None


@dataclass(frozen=True)
class _Synthesized:
    """A freshly synthesized assembly's stacks, and what deploy and destroy act on them with."""

    run: Runner
    session: boto3.Session
    targets: list[StackTarget]


def _synthesized(
    cdk_args: Sequence[str],
    run: Runner | None,
    session_factory: SessionFactory | None,
    assembly: Path | None,
) -> _Synthesized | int:
    """`cdk synth` into the assembly, then its stacks and a session for them (--profile among
    cdk_args); synth's exit code when it fails."""
    run = run or run_command
    if code := run([*CDK, "synth", "--quiet", *cdk_args]):
        return code
    session = (session_factory or _session)(profile_of(cdk_args))
    return _Synthesized(run, session, stack_targets(assembly or PROJECT_ROOT / ASSEMBLY))


def deploy(
    cdk_args: Sequence[str] = (),
    *,
    require_approval: str = DEFAULT_APPROVAL,
    run: Runner | None = None,
    session_factory: SessionFactory | None = None,
    assembly: Path | None = None,
) -> int:
    """synth, bootstrap the stack's environment if needed, deploy the synthesized assembly."""
    synthesized = _synthesized(cdk_args, run, session_factory, assembly)
    if isinstance(synthesized, int):
        return synthesized
    profile = profile_of(cdk_args)
    profile_args = ["--profile", profile] if profile else []
    for target in synthesized.targets:  # before anything changes in the account
        check_default_vpc(target, synthesized.session)
    for target in synthesized.targets:
        ensure_bootstrapped(target, synthesized.session, synthesized.run, profile_args)
    return synthesized.run(
        [*CDK, "deploy", "--app", ASSEMBLY, "--require-approval", require_approval, *cdk_args]
    )


def destroy(
    cdk_args: Sequence[str] = (),
    *,
    force: bool = False,
    run: Runner | None = None,
    session_factory: SessionFactory | None = None,
    assembly: Path | None = None,
) -> int:
    """synth, say what stays, `cdk destroy` the synthesized assembly's stack."""
    synthesized = _synthesized(cdk_args, run, session_factory, assembly)
    if isinstance(synthesized, int):
        return synthesized
    for target in synthesized.targets:
        describe_what_stays(target, synthesized.session)
    force_args = ["--force"] if force else []
    return synthesized.run([*CDK, "destroy", "--app", ASSEMBLY, *force_args, *cdk_args])


def run_command(command: Sequence[str]) -> int:
    """Runs `command` in the project folder, showing it first."""
    print(f"+ {shlex.join(command)}", flush=True)
    return subprocess.run(list(command), cwd=PROJECT_ROOT, check=False).returncode


def _caller_account(session: boto3.Session, region: str) -> str:
    return str(session.client("sts", region_name=region).get_caller_identity()["Account"])


def _session(profile: str | None) -> boto3.Session:
    return boto3.Session(profile_name=profile) if profile else boto3.Session()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ours, cdk_args = (
        (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    )
    parser = argparse.ArgumentParser(prog="python -m stacks.deploy", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    deploy_parser = commands.add_parser("deploy", help="bootstrap if needed, then cdk deploy")
    deploy_parser.add_argument(
        "--require-approval",
        default=DEFAULT_APPROVAL,
        choices=["never", "any-change", "broadening", "destructive"],
        help=f"passed to cdk deploy (default {DEFAULT_APPROVAL})",
    )
    destroy_parser = commands.add_parser("destroy", help="say what stays, then cdk destroy")
    destroy_parser.add_argument(
        "--force", action="store_true", help="passed to cdk destroy: no confirmation"
    )
    options = parser.parse_args(ours)
    try:
        if options.command == "deploy":
            return deploy(cdk_args, require_approval=options.require_approval)
        return destroy(cdk_args, force=options.force)
    except DeployError as error:
        print(f"runctl: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(
            f"runctl: {error} (this needs AWS credentials for the stack's account and region: "
            "README, Deploying)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

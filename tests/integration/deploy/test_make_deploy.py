"""`make deploy` / `make destroy` (stacks/deploy.py) against moto, with a recording CDK CLI.

The recorder stands in for `npx cdk`: it writes a small cloud assembly when asked to synth (the
manifest fields the CDK CLI writes, see tests/infra/test_infra_deploy.py for the real one) and
answers every command with an exit code, so a test sees exactly which commands would run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stacks import deploy as deploy_module
from stacks.deploy import DeployError, deploy, destroy, main

PARAMETER = "/cdk-bootstrap/hnb659fds/version"
ACCOUNT = "123456789012"  # moto's
STACK_REGION = (
    "eu-west-1"  # the stack's (runctl:region); tests/conftest.py sets AWS_REGION us-east-1
)
SYNTH = ["npx", "cdk", "synth", "--quiet"]
BOOTSTRAP = ["npx", "cdk", "bootstrap", f"aws://{ACCOUNT}/{STACK_REGION}"]
DEPLOY = ["npx", "cdk", "deploy", "--app", "cdk.out", "--require-approval", "broadening"]
DESTROY = ["npx", "cdk", "destroy", "--app", "cdk.out"]

RETAINED = {
    "StorageBucket5CB7C8EA": "AWS::S3::Bucket",
    "StorageAccessLogBucket76E80A12": "AWS::S3::Bucket",
    "StorageRunsTableF5CFB6AB": "AWS::DynamoDB::Table",
}


@dataclass
class RecordingCdk:
    """`npx cdk ...`: records each command; `synth` writes the assembly; `failing` exit 1."""

    assembly: Path
    region: str = STACK_REGION
    account: str = "unknown-account"
    failing: set[str] = field(default_factory=set)
    commands: list[list[str]] = field(default_factory=list)

    def __call__(self, command: Sequence[str]) -> int:
        self.commands.append(list(command))
        subcommand = command[2]
        if subcommand == "synth":
            self._write_assembly()
        return 1 if subcommand in self.failing else 0

    def _write_assembly(self) -> None:
        self.assembly.mkdir(exist_ok=True)
        requirement = {
            "requiresBootstrapStackVersion": 6,
            "bootstrapStackVersionSsmParameter": PARAMETER,
        }
        manifest = {
            "version": "55.0.0",
            "artifacts": {
                "Runctl.assets": {
                    "type": "cdk:asset-manifest",
                    "properties": {"file": "Runctl.assets.json", **requirement},
                },
                "Runctl": {
                    "type": "aws:cloudformation:stack",
                    "environment": f"aws://{self.account}/{self.region}",
                    "properties": {
                        "templateFile": "Runctl.template.json",
                        **requirement,
                        "additionalDependencies": ["Runctl.assets"],
                    },
                },
            },
        }
        resources: dict[str, Any] = {
            logical_id: {"Type": resource_type, "DeletionPolicy": "Retain"}
            for logical_id, resource_type in RETAINED.items()
        }
        resources["RunLogGroup"] = {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Delete"}
        (self.assembly / "manifest.json").write_text(json.dumps(manifest))
        (self.assembly / "Runctl.template.json").write_text(json.dumps({"Resources": resources}))


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def cdk(tmp_path: Path) -> RecordingCdk:
    return RecordingCdk(assembly=tmp_path / "cdk.out")


def _bootstrapped(version: str, region: str = STACK_REGION) -> None:
    boto3.client("ssm", region_name=region).put_parameter(
        Name=PARAMETER, Value=version, Type="String"
    )


# --- deploy: the bootstrap check ---------------------------------------------------------------


def test_an_unbootstrapped_region_is_bootstrapped_then_deployed(aws, cdk, capsys):
    # Given no CDK bootstrap in the stack's account and region
    # When we deploy
    code = deploy(run=cdk, assembly=cdk.assembly)

    # Then the CLI synthesizes, bootstraps that environment, then deploys the same assembly
    assert code == 0
    assert cdk.commands == [SYNTH, BOOTSTRAP, DEPLOY]
    # And one line says why
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("runctl:")]
    assert said == [
        f"runctl: aws://{ACCOUNT}/{STACK_REGION} is not bootstrapped for CDK "
        f"(no SSM parameter {PARAMETER}): running cdk bootstrap."
    ]


@pytest.mark.parametrize("version", ["6", "27"])
def test_a_region_bootstrapped_at_version_6_or_later_is_not_bootstrapped_again(
    aws, cdk, capsys, version
):
    _bootstrapped(version)

    code = deploy(run=cdk, assembly=cdk.assembly)

    assert code == 0
    assert cdk.commands == [SYNTH, DEPLOY]
    assert f"is bootstrapped for CDK (version {version})" in capsys.readouterr().out


def test_a_stale_bootstrap_is_updated_before_deploying(aws, cdk, capsys):
    _bootstrapped("5")

    deploy(run=cdk, assembly=cdk.assembly)

    assert cdk.commands == [SYNTH, BOOTSTRAP, DEPLOY]
    assert "has CDK bootstrap version 5, this stack needs 6" in capsys.readouterr().out


def test_the_check_looks_in_the_stacks_region_not_aws_region(aws, cdk, monkeypatch):
    # Given AWS_REGION bootstrapped, and the stack's own region (runctl:region) not
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    _bootstrapped("27", region="us-east-1")

    deploy(run=cdk, assembly=cdk.assembly)

    # Then the stack's region is bootstrapped: that is where cdk deploy puts the stack
    assert cdk.commands == [SYNTH, BOOTSTRAP, DEPLOY]


def test_the_assemblys_account_is_the_one_bootstrapped(aws, tmp_path):
    cdk = RecordingCdk(assembly=tmp_path / "cdk.out", account="210987654321")

    deploy(run=cdk, assembly=cdk.assembly)

    assert cdk.commands[1] == ["npx", "cdk", "bootstrap", f"aws://210987654321/{STACK_REGION}"]


def test_cdk_arguments_and_approval_level_reach_the_cli(aws, cdk):
    _bootstrapped("6")
    args = ["-c", "runctl:region=eu-west-1", "--verbose"]

    deploy(args, require_approval="never", run=cdk, assembly=cdk.assembly)

    assert cdk.commands == [
        [*SYNTH, *args],
        ["npx", "cdk", "deploy", "--app", "cdk.out", "--require-approval", "never", *args],
    ]


def test_a_profile_among_the_cdk_arguments_is_used_for_the_check_and_bootstrap(aws, cdk):
    opened: list[str | None] = []

    def session_for(profile: str | None) -> boto3.Session:
        opened.append(profile)
        return boto3.Session()

    deploy(["--profile", "lab"], run=cdk, session_factory=session_for, assembly=cdk.assembly)

    assert opened == ["lab"]
    assert cdk.commands[1] == [*BOOTSTRAP, "--profile", "lab"]


def test_a_failed_bootstrap_stops_before_deploying(aws, cdk):
    cdk.failing.add("bootstrap")

    with pytest.raises(DeployError, match=r"cdk bootstrap aws://\S+ failed"):
        deploy(run=cdk, assembly=cdk.assembly)

    assert cdk.commands == [SYNTH, BOOTSTRAP]


def test_a_failed_synth_stops_everything(aws, cdk):
    cdk.failing.add("synth")

    assert deploy(run=cdk, assembly=cdk.assembly) == 1
    assert cdk.commands == [SYNTH]


class _DeniedSsm:
    def get_parameter(self, **_: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetParameter"
        )


class _OnlyAssumesCdkRoles:
    """Credentials allowed to assume the CDK roles and little else (no ssm:GetParameter)."""

    def client(self, service: str, region_name: str) -> Any:
        if service == "ssm":
            return _DeniedSsm()
        return boto3.client(service, region_name=region_name)


def test_a_deployer_who_cannot_read_the_parameter_leaves_the_check_to_cdk_deploy(aws, cdk, capsys):
    code = deploy(run=cdk, session_factory=lambda _: _OnlyAssumesCdkRoles(), assembly=cdk.assembly)

    assert code == 0
    assert cdk.commands == [SYNTH, DEPLOY]
    assert "not checking the CDK bootstrap here, cdk deploy will" in capsys.readouterr().out


def test_main_splits_its_options_from_the_cdk_arguments(aws, cdk, monkeypatch, tmp_path):
    # Given the module's own runner replaced (no real npx) and the project folder a temp one
    monkeypatch.setattr(deploy_module, "run_command", cdk)
    monkeypatch.setattr(deploy_module, "PROJECT_ROOT", tmp_path)
    _bootstrapped("6")

    code = main(["deploy", "--require-approval", "any-change", "--", "-c", "a=b"])

    assert code == 0
    assert cdk.commands[-1] == [*DEPLOY[:-1], "any-change", "-c", "a=b"]


# --- destroy ------------------------------------------------------------------------------------


def test_destroy_asks_for_confirmation_unless_forced(aws, cdk):
    destroy(run=cdk, assembly=cdk.assembly)
    destroy(force=True, run=cdk, assembly=cdk.assembly)

    assert cdk.commands == [SYNTH, DESTROY, SYNTH, [*DESTROY, "--force"]]


def test_destroy_names_what_it_keeps_and_how_to_delete_it(aws, cdk, capsys):
    # Given the stack deployed with its retained bucket
    template = {
        "Resources": {"StorageBucket5CB7C8EA": {"Type": "AWS::S3::Bucket"}},
    }
    cloudformation = boto3.client("cloudformation", region_name=STACK_REGION)
    cloudformation.create_stack(StackName="Runctl", TemplateBody=json.dumps(template))
    [resource] = cloudformation.describe_stack_resources(StackName="Runctl")["StackResources"]
    bucket = resource["PhysicalResourceId"]

    destroy(run=cdk, assembly=cdk.assembly)

    # Then every RETAIN resource is listed, the deployed one by its name, each with a way to
    # delete it; the log group (destroyed with the stack) is not
    out = capsys.readouterr().out
    assert "keeps these (RemovalPolicy RETAIN)" in out
    assert f"  bucket {bucket}: empty it" in out
    assert f"`aws s3 rb s3://{bucket}`" in out
    assert (
        "  bucket StorageAccessLogBucket76E80A12 (stack not found: its name starts with "
        "runctl-storageaccesslogbucket76e80a12-)" in out
    )
    assert "  table StorageRunsTableF5CFB6AB (stack not found: its name starts with " in out
    assert "aws dynamodb delete-table --table-name NAME --region eu-west-1" in out
    assert "RunLogGroup" not in out


def test_destroy_warns_about_runctl_instances_still_running(aws, cdk, capsys):
    ec2 = boto3.client("ec2", region_name=STACK_REGION)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tagged = {"ResourceType": "instance", "Tags": [{"Key": "runctl:managed", "Value": "true"}]}
    [ours] = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=[tagged])[
        "Instances"
    ]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)  # not runctl's

    destroy(run=cdk, assembly=cdk.assembly)

    out = capsys.readouterr().out
    assert f"1 runctl instance(s) still running ({ours['InstanceId']})" in out

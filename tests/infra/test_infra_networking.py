"""Networking (issue #10, part 6): private subnets with VPC endpoints, the public-IP rule, and the
NoDefaultVpc check of `make deploy`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from app import cdk_json_context
from lambdas.env import LambdaEnv
from lambdas.logic.launch_plan import LaunchOption
from lambdas.logic.launching import run_instances_request
from stacks.config import ConfigError, RunctlConfig
from stacks.deploy import DeployError, check_default_vpc, deploy, needs_default_vpc, stack_targets
from stacks.vpc_endpoints import GATEWAY_SERVICES, INTERFACE_SERVICES
from tests.infra.conftest import Synthesized, synthesize

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

VPC = "vpc-0123456789abcdef0"
SUBNETS = ["subnet-0123abcd", "subnet-4567ef01"]
ROUTE_TABLES = ["rtb-0123abcd", "rtb-4567ef01"]
PRIVATE_CONTEXT = {
    "runctl:stackName": "RunctlPrivate",
    "runctl:region": "eu-west-1",
    "runctl:vpcId": VPC,
    "runctl:subnetIds": SUBNETS,
    "runctl:vpcEndpoints": True,
    "runctl:routeTableIds": ROUTE_TABLES,
}


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Private subnets with the endpoints, synthesized (so cdk-nag checked) like the default."""
    return synthesize(tmp_path_factory.mktemp("cdk.out.private"), PRIVATE_CONTEXT)


def _endpoints(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """service (the last part of its ServiceName) -> the endpoint's properties"""
    found = {}
    for body in synthesized.resources_of_type("AWS::EC2::VPCEndpoint").values():
        properties = body["Properties"]
        found[properties["ServiceName"].rsplit(".", 1)[1]] = properties
    return found


def _variables(synthesized: Synthesized) -> dict[str, Any]:
    launch = synthesized.stack.orchestration.functions["LaunchInstance"]
    return dict(synthesized.resource(launch)["Properties"]["Environment"]["Variables"])


def _group_id(synthesized: Synthesized, group: Any) -> dict[str, Any]:
    return {"Fn::GetAtt": [synthesized.logical_id(group), "GroupId"]}


# --- endpoints -------------------------------------------------------------------------------


def test_no_endpoints_without_the_flag(synthesized, configured):
    for stack in (synthesized, configured):
        assert stack.resources_of_type("AWS::EC2::VPCEndpoint") == {}
        assert stack.stack.vpc_endpoints is None


def test_endpoints_are_exactly_the_services_the_instance_calls(private):
    endpoints = _endpoints(private)

    assert sorted(endpoints) == sorted(GATEWAY_SERVICES + INTERFACE_SERVICES)
    assert set(GATEWAY_SERVICES) == {"s3", "dynamodb"}
    assert set(INTERFACE_SERVICES) == {"ssm", "ssmmessages", "ec2messages", "logs", "states"}
    for service, properties in endpoints.items():
        assert properties["ServiceName"] == f"com.amazonaws.eu-west-1.{service}"
        assert properties["VpcId"] == VPC


def test_s3_and_dynamodb_are_gateways_in_the_configured_route_tables(private):
    endpoints = _endpoints(private)

    for service in ("s3", "dynamodb"):
        assert endpoints[service]["VpcEndpointType"] == "Gateway"
        assert endpoints[service]["RouteTableIds"] == ROUTE_TABLES
        assert "SubnetIds" not in endpoints[service]


def test_interface_endpoints_have_private_dns_in_the_subnets_behind_their_own_group(private):
    endpoints_group = _group_id(private, private.stack.vpc_endpoints.security_group)

    for service in INTERFACE_SERVICES:
        properties = _endpoints(private)[service]
        assert properties["VpcEndpointType"] == "Interface"
        assert properties["PrivateDnsEnabled"] is True
        assert properties["SubnetIds"] == SUBNETS
        assert properties["SecurityGroupIds"] == [endpoints_group]


def test_endpoint_group_admits_https_from_the_instances_group_only(private):
    endpoints = private.stack.vpc_endpoints
    group = private.resource(endpoints.security_group)["Properties"]

    # Then the one ingress rule is TCP 443 from the instances' group, nothing from a CIDR
    [ingress] = private.resources_of_type("AWS::EC2::SecurityGroupIngress").values()
    assert ingress["Properties"] == {
        "GroupId": _group_id(private, endpoints.security_group),
        "IpProtocol": "tcp",
        "FromPort": 443,
        "ToPort": 443,
        "SourceSecurityGroupId": _group_id(private, private.stack.compute.security_group),
        "Description": "HTTPS from runctl training instances",
    }
    assert "SecurityGroupIngress" not in group
    # And no outbound traffic at all (the rule matches nothing)
    assert group["VpcId"] == VPC
    [egress] = group["SecurityGroupEgress"]
    assert egress["CidrIp"] == "255.255.255.255/32"
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("icmp", 252, 86)
    # And the instances' group still admits nothing
    instances = private.resource(private.stack.compute.security_group)["Properties"]
    assert "SecurityGroupIngress" not in instances


def test_endpoint_subnets_can_differ_from_the_instance_subnets():
    context = {**cdk_json_context(), **PRIVATE_CONTEXT, "runctl:endpointSubnetIds": SUBNETS[:1]}

    config = RunctlConfig.from_context(context)

    assert config.endpoint_subnet_ids == tuple(SUBNETS[:1])
    assert config.subnet_ids == tuple(SUBNETS)


def test_private_stack_passes_cdk_nag_and_cfn_lint(private):
    [nag] = [
        report
        for report in private.validation_report["pluginReports"]
        if report["pluginName"] == "AwsSolutions"
    ]

    assert nag["violations"] == []
    assert private.cfn_lint_problems("eu-west-1") == []


@pytest.mark.parametrize(
    ("override", "key"),
    [
        (
            {"runctl:vpcEndpoints": True, "runctl:routeTableIds": ROUTE_TABLES},
            "runctl:vpcEndpoints",
        ),
        ({**PRIVATE_CONTEXT, "runctl:routeTableIds": []}, "runctl:routeTableIds"),
        ({**PRIVATE_CONTEXT, "runctl:routeTableIds": ["route-1"]}, "runctl:routeTableIds"),
        ({**PRIVATE_CONTEXT, "runctl:vpcEndpoints": "yes"}, "runctl:vpcEndpoints"),
        (
            {
                "runctl:vpcId": VPC,
                "runctl:subnetIds": SUBNETS,
                "runctl:routeTableIds": ROUTE_TABLES,
            },
            "runctl:routeTableIds",
        ),
        ({"runctl:publicIp": "sometimes"}, "runctl:publicIp"),
        ({"runctl:publicIp": "never"}, "runctl:publicIp"),  # the default VPC needs one
    ],
)
def test_inconsistent_network_settings_are_rejected_with_their_key(override, key):
    context = {**cdk_json_context(), **override}

    with pytest.raises(ConfigError) as raised:
        RunctlConfig.from_context(context)

    assert raised.value.key == key
    assert key in str(raised.value)


# --- public IP --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({}, ""),  # default VPC: its default subnets assign one, and need it
        ({"runctl:vpcId": VPC, "runctl:subnetIds": SUBNETS}, ""),  # the subnet's own setting
        ({"runctl:publicIp": "always"}, "true"),
        ({"runctl:vpcId": VPC, "runctl:subnetIds": SUBNETS, "runctl:publicIp": "never"}, "false"),
        (PRIVATE_CONTEXT, "false"),  # endpoints: no public IP needed
        ({**PRIVATE_CONTEXT, "runctl:publicIp": "always"}, "true"),
        ({**PRIVATE_CONTEXT, "runctl:vpcEndpoints": "true"}, "false"),  # as `-c` passes it
    ],
)
def test_public_ip_rule(override, expected):
    config = RunctlConfig.from_context({**cdk_json_context(), **override})

    assert config.associate_public_ip == expected


def test_default_stack_leaves_the_public_ip_to_the_subnet_with_the_group_in_the_template(
    synthesized,
):
    variables = _variables(synthesized)
    data = synthesized.resource(synthesized.stack.compute.launch_template)["Properties"]

    assert variables["ASSOCIATE_PUBLIC_IP"] == ""
    assert data["LaunchTemplateData"]["SecurityGroupIds"] == [
        _group_id(synthesized, synthesized.stack.compute.security_group)
    ]
    assert "NetworkInterfaces" not in data["LaunchTemplateData"]


def test_private_stack_tells_the_launch_no_public_ip_and_which_group(private):
    variables = _variables(private)
    data = private.resource(private.stack.compute.launch_template)["Properties"]

    # Then the setting and the group reach the launch Lambda's environment
    assert variables["ASSOCIATE_PUBLIC_IP"] == "false"
    assert variables["SECURITY_GROUP_ID"] == _group_id(
        private, private.stack.compute.security_group
    )
    # And the template has no instance-level group (EC2 refuses it beside a network interface)
    assert "SecurityGroupIds" not in data["LaunchTemplateData"]


@pytest.mark.parametrize(("setting", "associate"), [("true", True), ("false", False)])
def test_launch_request_carries_the_public_ip_setting_on_its_network_interface(setting, associate):
    # Given the environment the stack sets, and one launch option
    env = LambdaEnv.model_validate(
        {
            "RUNS_TABLE_NAME": "runs",
            "BUCKET_NAME": "bucket",
            "LOG_GROUP_NAME": "/runctl/Runctl/runs",
            "LAUNCH_TEMPLATE_ID": "lt-0123456789abcdef0",
            "AGENT_S3_URI": "s3://assets/agent.zip",
            "DEFAULT_INSTANCE_TYPES": "g5.xlarge",
            "ASSOCIATE_PUBLIC_IP": setting,
            "SECURITY_GROUP_ID": "sg-0123456789abcdef0",
        }
    )
    request = _request(env)

    # Then the subnet and group travel on the interface, with AssociatePublicIpAddress
    assert "SubnetId" not in request
    assert "SecurityGroupIds" not in request
    assert request["NetworkInterfaces"] == [
        {
            "DeviceIndex": 0,
            "SubnetId": "subnet-0123abcd",
            "Groups": ["sg-0123456789abcdef0"],
            "AssociatePublicIpAddress": associate,
            "DeleteOnTermination": True,
        }
    ]


def test_launch_request_without_the_setting_is_unchanged():
    env = LambdaEnv.model_validate(
        {
            "RUNS_TABLE_NAME": "runs",
            "BUCKET_NAME": "bucket",
            "LOG_GROUP_NAME": "/runctl/Runctl/runs",
            "LAUNCH_TEMPLATE_ID": "lt-0123456789abcdef0",
            "AGENT_S3_URI": "s3://assets/agent.zip",
            "DEFAULT_INSTANCE_TYPES": "g5.xlarge",
        }
    )
    request = _request(env)

    assert request["SubnetId"] == "subnet-0123abcd"
    assert "NetworkInterfaces" not in request


def _request(env: LambdaEnv) -> dict[str, Any]:
    option = LaunchOption("g5.xlarge", "subnet-0123abcd", "eu-west-1a", "spot")
    run: Any = SimpleNamespace(run_id="run-1", attempt=1, spec=SimpleNamespace(volume_gb=100))
    return run_instances_request(run, option, env, "ami-0123456789abcdef0", "/dev/xvda")


# --- NoDefaultVpc -----------------------------------------------------------------------------


def test_only_a_stack_without_runctl_vpc_id_needs_the_default_vpc(synthesized, configured):
    [default_target] = stack_targets(synthesized.outdir)
    [configured_target] = stack_targets(configured.outdir)

    assert needs_default_vpc(default_target)
    assert not needs_default_vpc(configured_target)


def _without_default_vpc(region: str) -> None:
    ec2 = boto3.client("ec2", region_name=region)
    for vpc in ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]:
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
        for subnet in subnets["Subnets"]:
            ec2.delete_subnet(SubnetId=subnet["SubnetId"])
        ec2.delete_vpc(VpcId=vpc["VpcId"])


class _Recorder:
    """`npx cdk ...` that records and succeeds (the assembly is already synthesized)."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> int:
        self.commands.append(list(command))
        return 0


def test_make_deploy_stops_with_no_default_vpc_naming_the_setting(synthesized):
    with mock_aws():
        # Given an account whose us-east-1 (the default stack's region) has no default VPC
        _without_default_vpc("us-east-1")
        cdk = _Recorder()

        # When we deploy the default stack (runctl:vpcId empty)
        with pytest.raises(DeployError) as raised:
            deploy(
                run=cdk,
                assembly=Path(synthesized.outdir),
                session_factory=lambda profile: boto3.Session(),
            )

    # Then it stops after synth, before bootstrapping or deploying, naming what to set
    message = str(raised.value)
    assert message.startswith("NoDefaultVpc: region us-east-1 has no default VPC")
    assert "runctl:vpcId" in message and "runctl:subnetIds" in message
    assert [command[2] for command in cdk.commands] == ["synth"]


def test_a_region_with_a_default_vpc_passes_the_check(synthesized):
    [target] = stack_targets(synthesized.outdir)
    with mock_aws():
        check_default_vpc(target, boto3.Session())  # moto's regions have a default VPC


def test_a_stack_with_its_own_vpc_is_not_checked(configured):
    [target] = stack_targets(configured.outdir)
    with mock_aws():
        _without_default_vpc(target.region)

        check_default_vpc(target, boto3.Session())

"""A deployment with every optional context key set: own VPC and subnets, extra data buckets."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

SUBNETS = ["subnet-0123abcd", "subnet-4567ef01"]


def test_configured_stack_passes_cdk_nag_and_is_named_by_context(configured):
    [nag] = [
        report
        for report in configured.validation_report["pluginReports"]
        if report["pluginName"] == "AwsSolutions"
    ]

    assert nag["violations"] == []
    assert configured.stack.stack_name == "RunctlLab"
    assert configured.stack.region == "eu-west-1"
    log_group = configured.resource(configured.stack.storage.run_log_group)
    assert log_group["Properties"]["LogGroupName"] == "/runctl/RunctlLab/runs"


def test_security_group_in_a_configured_vpc_allows_all_outbound_and_no_inbound(configured):
    [group] = configured.resources_of_type("AWS::EC2::SecurityGroup").values()

    assert group["Properties"]["VpcId"] == "vpc-0123456789abcdef0"
    assert group["Properties"]["SecurityGroupEgress"] == [
        {
            "CidrIp": "0.0.0.0/0",
            "Description": "training code and SSM reach the internet",
            "IpProtocol": "-1",
        }
    ]
    assert "SecurityGroupIngress" not in group["Properties"]
    assert not configured.resources_of_type("AWS::EC2::SecurityGroupIngress")


def test_launches_are_limited_to_the_configured_subnets(configured):
    # Given the LaunchInstance step's RunInstances resources and environment
    launch = configured.stack.orchestration.functions["LaunchInstance"]
    resources = [
        json.dumps(resource)
        for statement in configured.role_statements(launch.role)
        if statement["Action"] == "ec2:RunInstances"
        for resource in configured.listed(statement["Resource"])
    ]
    variables = configured.resource(launch)["Properties"]["Environment"]["Variables"]

    # Then the subnets it may use are exactly the configured ones, and it is told which
    subnets = [resource for resource in resources if ":subnet/" in resource]
    assert sorted(subnets) == sorted(
        f'{{"Fn::Join": ["", ["arn:aws:ec2:eu-west-1:", {{"Ref": "AWS::AccountId"}}, '
        f'":subnet/{subnet}"]]}}'
        for subnet in SUBNETS
    )
    assert variables["SUBNET_IDS"] == ",".join(SUBNETS)


def test_data_buckets_are_readable_by_instances_and_checked_by_validate_run(configured):
    instance_role = configured.stack.compute.instance_role
    validate = configured.stack.orchestration.functions["ValidateRun"]

    def resources(role, action):
        return {
            json.dumps(resource)
            for statement in configured.role_statements(role)
            if action in configured.listed(statement["Action"])
            for resource in configured.listed(statement["Resource"])
        }

    for bucket in ("lab-datasets", "shared.corpora"):
        assert f'"arn:aws:s3:::{bucket}/*"' in resources(instance_role, "s3:GetObject")
        assert f'"arn:aws:s3:::{bucket}"' in resources(instance_role, "s3:ListBucket")
        assert f'"arn:aws:s3:::{bucket}"' in resources(validate.role, "s3:ListBucket")
    # Write access stays on the runctl bucket's runs/ prefix
    writable = resources(instance_role, "s3:PutObject")
    assert not [item for item in writable if "arn:aws:s3:::" in item]


def test_context_settings_reach_the_template(configured):
    launch_template = configured.resource(configured.stack.compute.launch_template)
    state_machine = configured.resource(configured.stack.orchestration.state_machine)

    [root] = launch_template["Properties"]["LaunchTemplateData"]["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeSize"] == 250
    assert state_machine["Properties"]["DefinitionSubstitutions"]["HeartbeatSeconds"] == "120"

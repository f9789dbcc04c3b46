"""The instances' launch template, security group, role and agent asset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _launch_template_data(synthesized):
    launch_template = synthesized.resource(synthesized.stack.compute.launch_template)
    return launch_template["Properties"]["LaunchTemplateData"]


def test_launch_template_requires_imdsv2(synthesized):
    data = _launch_template_data(synthesized)

    assert data["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 2,
        "InstanceMetadataTags": "enabled",
    }


def test_launch_template_root_volume_is_encrypted_gp3(synthesized):
    data = _launch_template_data(synthesized)

    [root] = data["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/xvda"
    assert root["Ebs"] == {
        "Encrypted": True,
        "VolumeType": "gp3",
        "VolumeSize": 100,
        "DeleteOnTermination": True,
    }


def test_launch_template_leaves_the_ami_to_the_run_and_has_no_key_pair(synthesized):
    data = _launch_template_data(synthesized)

    assert "ImageId" not in data
    assert "KeyName" not in data
    profile_id = synthesized.logical_id(synthesized.stack.compute.instance_profile)
    assert data["IamInstanceProfile"] == {"Arn": {"Fn::GetAtt": [profile_id, "Arn"]}}


def test_launch_template_tags_instance_and_volume_as_managed(synthesized):
    data = _launch_template_data(synthesized)

    tagged = {spec["ResourceType"]: spec["Tags"] for spec in data["TagSpecifications"]}
    assert tagged == {
        "instance": [{"Key": "runctl:managed", "Value": "true"}],
        "volume": [{"Key": "runctl:managed", "Value": "true"}],
    }


def test_security_group_allows_no_inbound_traffic(synthesized):
    # Given every security group in the stack
    groups = synthesized.resources_of_type("AWS::EC2::SecurityGroup")

    # Then none has an ingress rule, inline or as a separate resource
    assert len(groups) == 1
    for group in groups.values():
        assert "SecurityGroupIngress" not in group["Properties"]
    assert not synthesized.resources_of_type("AWS::EC2::SecurityGroupIngress")


def test_security_group_is_in_the_default_vpc_unless_one_is_configured(synthesized):
    [group] = synthesized.resources_of_type("AWS::EC2::SecurityGroup").values()

    # No VpcId: CloudFormation uses the default VPC, whose new groups allow all outbound.
    assert "VpcId" not in group["Properties"]
    assert "SecurityGroupEgress" not in group["Properties"]


def test_instance_role_is_for_ec2_with_ssm_core(synthesized):
    role = synthesized.resource(synthesized.stack.compute.instance_role)["Properties"]

    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
    [managed] = role["ManagedPolicyArns"]
    assert managed["Fn::Join"][1][-1] == ":iam::aws:policy/AmazonSSMManagedInstanceCore"


def test_instance_may_update_only_progress_attributes_of_runs(synthesized):
    # Given the instance role's DynamoDB permissions
    found = [
        statement
        for statement in synthesized.role_statements(synthesized.stack.compute.instance_role)
        if any(action.startswith("dynamodb:") for action in synthesized.listed(statement["Action"]))
    ]

    # Then there is one: UpdateItem on the runs table, restricted to the agent's attributes
    [statement] = found
    assert statement["Action"] == "dynamodb:UpdateItem"
    assert statement["Resource"] == {
        "Fn::GetAtt": [synthesized.logical_id(synthesized.stack.storage.runs_table), "Arn"]
    }
    allowed = statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert set(allowed) == {
        "run_id",
        "status",
        "updated_at",
        "latest_metrics",
        "attempt",
        "interrupted_by",
        "setup",  # setup.<attempt>: the environment and GPU phases
        "checkpoints",  # checkpoints.<attempt>: resumed from, newest durable
    }


def test_instance_can_end_its_task_token_but_not_start_executions(synthesized):
    actions = {
        action
        for statement in synthesized.role_statements(synthesized.stack.compute.instance_role)
        for action in synthesized.listed(statement["Action"])
    }

    assert {"states:SendTaskHeartbeat", "states:SendTaskSuccess", "states:SendTaskFailure"} <= (
        actions
    )
    assert not {action for action in actions if action.startswith("states:Start")}
    assert not {action for action in actions if action.endswith("*") and ":" not in action}


def test_instance_reads_exactly_the_agent_zip(synthesized):
    # Given the agent asset's S3 object
    asset = synthesized.stack.compute.agent_asset
    statements = synthesized.role_statements(synthesized.stack.compute.instance_role)
    [agent_read] = [item for item in statements if item.get("Sid") == "ReadAgentAsset"]

    # Then the instance may get that one key of the CDK asset bucket, nothing else there
    resource = json.dumps(agent_read["Resource"])
    assert agent_read["Action"] == "s3:GetObject"
    assert resource.endswith("/" + asset.s3_object_key + '"]]}')
    assert "*" not in resource


def test_agent_asset_is_the_package_without_caches(synthesized):
    # Given the staged agent asset
    asset_hash = synthesized.stack.compute.agent_asset.asset_hash
    staged = synthesized.outdir / f"asset.{asset_hash}"

    # Then it holds the package's files at its root, without bytecode or lint config
    files = {path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()}
    source = Path(__file__).resolve().parents[2] / "instance_agent"
    if (source / "__main__.py").exists():
        assert "__main__.py" in files
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    assert "ruff.toml" not in files


def test_instance_reads_and_writes_the_environment_cache_but_deletes_nothing(synthesized):
    statements = synthesized.role_statements(synthesized.stack.compute.instance_role)
    [cache] = [item for item in statements if item.get("Sid") == "ReadWriteEnvironmentCache"]

    assert set(synthesized.listed(cache["Action"])) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    }
    assert json.dumps(cache["Resource"]).endswith('/envs/*"]]}')


def test_the_only_objects_the_instance_may_delete_are_checkpoint_versions(synthesized):
    # Retention (RunSpec checkpoints.keep) deletes older versions; nothing else under runs/ goes
    statements = synthesized.role_statements(synthesized.stack.compute.instance_role)
    deleting = [
        statement
        for statement in statements
        if any("Delete" in action for action in synthesized.listed(statement["Action"]))
    ]

    [statement] = deleting
    assert statement["Action"] == "s3:DeleteObject"
    assert json.dumps(statement["Resource"]).endswith('/runs/*/checkpoints/v/*"]]}')

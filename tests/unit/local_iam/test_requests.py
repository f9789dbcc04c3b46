"""What each request the stack makes must be authorized for (runctl/local/iam/requests.py)."""

from __future__ import annotations

from typing import Any

from runctl.local.iam.requests import Call, authorizations, expression_attributes

ACCOUNT, REGION = "123456789012", "us-east-1"
EC2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"


class FakeLookup:
    def __init__(self) -> None:
        self.tags = {"i-1": {"runctl:managed": "true", "runctl:run-id": "r1"}}
        self.template = {"MetadataOptions": {"HttpTokens": "required"}, "ImageId": "ami-lt"}

    def instance_tags(self, instance_id: str) -> dict[str, str]:
        return self.tags.get(instance_id, {})

    def launch_template(self, id_or_name: str) -> tuple[str, dict[str, Any]]:
        return "lt-0abc", self.template


def needed(service: str, operation: str, params: dict[str, Any], **s3: Any) -> list[Any]:
    found = authorizations(Call(service, operation, params, ACCOUNT, REGION, **s3), FakeLookup())
    assert found is not None
    return found


def by_resource(found: list[Any]) -> dict[tuple[str, str], dict[str, list[str]]]:
    return {(item.action, item.resource): item.context for item in found}


RUN_INSTANCES = {
    "LaunchTemplate.LaunchTemplateId": "lt-0abc",
    "ImageId": "ami-123",
    "InstanceType": "g5.xlarge",
    "SubnetId": "subnet-1",
    "InstanceMarketOptions.MarketType": "spot",
    "TagSpecification.1.ResourceType": "instance",
    "TagSpecification.1.Tag.1.Key": "runctl:managed",
    "TagSpecification.1.Tag.1.Value": "true",
    "TagSpecification.2.ResourceType": "volume",
    "TagSpecification.2.Tag.1.Key": "runctl:managed",
    "TagSpecification.2.Tag.1.Value": "true",
}


def test_run_instances_is_authorized_on_every_resource_it_uses_and_creates():
    found = by_resource(needed("ec2", "RunInstances", RUN_INSTANCES))
    run = "ec2:RunInstances"
    assert set(found) == {
        (run, f"{EC2}:instance/*"),
        (run, f"{EC2}:volume/*"),
        (run, f"{EC2}:network-interface/*"),
        (run, f"{EC2}:spot-instances-request/*"),
        (run, f"arn:aws:ec2:{REGION}::image/ami-123"),
        (run, f"{EC2}:launch-template/lt-0abc"),
        (run, f"{EC2}:subnet/subnet-1"),
        ("ec2:CreateTags", f"{EC2}:instance/*"),
        ("ec2:CreateTags", f"{EC2}:volume/*"),
    }
    instance = found[(run, f"{EC2}:instance/*")]
    # HttpTokens comes from the launch template when the request leaves it out.
    assert instance["ec2:metadatahttptokens"] == ["required"]
    assert instance["ec2:instancemarkettype"] == ["spot"]
    assert instance["aws:requesttag/runctl:managed"] == ["true"]
    tagging = found[("ec2:CreateTags", f"{EC2}:volume/*")]
    assert tagging["ec2:createaction"] == ["RunInstances"]


def test_on_demand_run_instances_creates_no_spot_request():
    params = {k: v for k, v in RUN_INSTANCES.items() if "Market" not in k}
    params["MetadataOptions.HttpTokens"] = "optional"
    found = by_resource(needed("ec2", "RunInstances", params))
    assert not any("spot-instances-request" in resource for _, resource in found)
    assert found[("ec2:RunInstances", f"{EC2}:instance/*")]["ec2:metadatahttptokens"] == [
        "optional"
    ]


def test_terminate_carries_the_instances_tags():
    found = needed("ec2", "TerminateInstances", {"InstanceId.1": "i-1", "InstanceId.2": "i-2"})
    assert [
        (item.resource, item.context.get("aws:resourcetag/runctl:managed")) for item in found
    ] == [
        (f"{EC2}:instance/i-1", ["true"]),
        (f"{EC2}:instance/i-2", None),
    ]


def test_describe_calls_have_no_resource():
    assert [(i.action, i.resource) for i in needed("ec2", "DescribeSubnets", {})] == [
        ("ec2:DescribeSubnets", "*")
    ]


def test_send_command_needs_the_document_and_each_tagged_instance():
    params = {"DocumentName": "AWS-RunShellScript", "InstanceIds": ["i-1"]}
    found = needed("ssm", "SendCommand", params)
    assert [item.resource for item in found] == [
        f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript",
        f"{EC2}:instance/i-1",
    ]
    assert found[1].context["ssm:resourcetag/runctl:managed"] == ["true"]


def test_public_parameters_have_no_account():
    found = needed("ssm", "GetParameter", {"Name": "/aws/service/ami-amazon-linux-latest/x"})
    assert (
        found[0].resource
        == f"arn:aws:ssm:{REGION}::parameter/aws/service/ami-amazon-linux-latest/x"
    )
    assert needed("ssm", "GetCommandInvocation", {})[0].resource == "*"


def test_update_item_names_every_attribute_it_touches():
    params = {
        "TableName": "runs",
        "Key": {"run_id": {"S": "r1"}},
        "UpdateExpression": "SET #s = :s, latest_metrics = :m, setup.#a = :x REMOVE stale",
        "ConditionExpression": "attempt = :n AND #s IN (:a, :b) AND attribute_exists(run_id)",
        "ExpressionAttributeNames": {"#s": "status", "#a": "1"},
        "ReturnValues": "UPDATED_NEW",
    }
    (found,) = needed("dynamodb", "UpdateItem", params)
    assert found.action == "dynamodb:UpdateItem"
    assert found.resource == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/runs"
    assert found.context["dynamodb:attributes"] == [
        "attempt",
        "latest_metrics",
        "run_id",
        "setup",
        "stale",
        "status",
    ]
    assert found.context["dynamodb:leadingkeys"] == ["r1"]
    assert found.context["dynamodb:returnvalues"] == ["UPDATED_NEW"]


def test_expression_attributes_skip_values_functions_and_nested_parts():
    names = {"#m": "metrics"}
    assert expression_attributes("SET #m.loss = list_append(a, :v), b[0].c = :w", names) == {
        "metrics",
        "a",
        "b",
    }


def test_query_on_an_index_and_batch_calls():
    (query,) = needed("dynamodb", "Query", {"TableName": "runs", "IndexName": "experiment-index"})
    assert query.resource.endswith("table/runs/index/experiment-index")
    batch = needed("dynamodb", "BatchGetItem", {"RequestItems": {"runs": {}, "other": {}}})
    assert [item.resource.rsplit("/", 1)[-1] for item in batch] == ["runs", "other"]


def test_states_calls():
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:TrainRun:r1"
    assert needed("states", "StopExecution", {"executionArn": arn})[0].resource == arn
    assert needed("states", "SendTaskHeartbeat", {"taskToken": "t"})[0].resource == "*"


def test_log_stream_calls_are_on_the_stream_and_group_calls_on_the_group():
    params = {"logGroupName": "/runctl/x/runs", "logStreamName": "r1/1"}
    base = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/runctl/x/runs"
    assert needed("logs", "PutLogEvents", params)[0].resource == f"{base}:log-stream:r1/1"
    assert needed("logs", "CreateLogGroup", params)[0].resource == f"{base}:log-stream:"


def test_s3_operations_map_to_their_iam_actions():
    def s3(method: str, key: str = "", query: dict[str, Any] | None = None, **more: Any) -> list:
        found = needed("s3", "", {}, bucket="b", key=key, method=method, query=query or {}, **more)
        return [(item.action, item.resource, item.context.get("s3:prefix")) for item in found]

    assert s3("HEAD", "runs/x") == [("s3:GetObject", "arn:aws:s3:::b/runs/x", None)]
    assert s3("POST", "runs/x", {"uploads": [""]}) == [
        ("s3:PutObject", "arn:aws:s3:::b/runs/x", None)
    ]
    assert s3("DELETE", "runs/x", {"uploadId": ["u"]})[0][0] == "s3:AbortMultipartUpload"
    assert s3("GET", "", {"list-type": ["2"], "prefix": ["runs/"]}) == [
        ("s3:ListBucket", "arn:aws:s3:::b", ["runs/"])
    ]
    assert s3("HEAD")[0][0] == "s3:ListBucket"
    copy = s3("PUT", "runs/y", headers={"x-amz-copy-source": "/b/code/a.tgz"})
    assert copy[1] == ("s3:GetObject", "arn:aws:s3:::b/code/a.tgz", None)


def test_an_unmapped_operation_is_none_so_it_can_be_denied_by_name():
    call = Call("ec2", "CreateFleet", {}, ACCOUNT, REGION)
    assert authorizations(call, FakeLookup()) is None
    assert authorizations(Call("sqs", "SendMessage", {}, ACCOUNT, REGION), FakeLookup()) is None


def test_a_network_interface_launch_is_authorized_on_its_group_and_subnet():
    params = {
        "LaunchTemplate.LaunchTemplateId": "lt-0abc",
        "NetworkInterface.1.SubnetId": "subnet-2",
        "NetworkInterface.1.SecurityGroupId.1": "sg-1",
        "NetworkInterface.1.DeviceIndex": "0",
    }
    resources = {item.resource for item in needed("ec2", "RunInstances", params)}
    assert {f"{EC2}:subnet/subnet-2", f"{EC2}:security-group/sg-1"} <= resources

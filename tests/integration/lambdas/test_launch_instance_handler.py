"""LaunchInstance handler: one tagged IMDSv2 instance per attempt, spot first, capacity fallback."""

from __future__ import annotations

from datetime import datetime

import pytest
from botocore.exceptions import ClientError

from lambdas.constants import TAG_ATTEMPT, TAG_MANAGED, TAG_RUN_ID
from lambdas.errors import CapacityUnavailable, NoDefaultVpc, RunNotLive
from lambdas.handlers import launch_instance

# A launch that raises adds no metric; Powertools warns about the empty flush.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture
def launch(invoke, recorded_run, ec2_spy):
    """Run LaunchInstance for the recorded run; every RunInstances call goes through `ec2_spy`."""
    return lambda: invoke(launch_instance, {"run": recorded_run})


def _tags(resource) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def _all_instances(aws) -> list[dict]:
    reservations = aws.ec2.describe_instances()["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def test_given_recorded_run_when_launched_then_one_tagged_imdsv2_instance_runs(
    launch, instances_of, default_subnets
):
    info = launch()

    (instance,) = instances_of("run-1")
    assert instance["InstanceId"] == info["instance_id"]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpEndpoint"] == "enabled"
    tags = _tags(instance)
    assert (tags[TAG_MANAGED], tags[TAG_RUN_ID], tags[TAG_ATTEMPT]) == ("true", "run-1", "1")
    # spot first, the first instance type, the first zone
    assert instance["InstanceLifecycle"] == "spot"
    assert instance["InstanceType"] == "g5.xlarge"
    assert instance["Placement"]["AvailabilityZone"] == default_subnets[0][1]
    assert instance["SubnetId"] == default_subnets[0][0]


def test_given_recorded_run_when_launched_then_request_asks_imdsv2_and_encrypted_root(
    launch, ec2_spy
):
    launch()

    (request,) = ec2_spy.run_requests
    assert request["MetadataOptions"]["HttpTokens"] == "required"
    (mapping,) = request["BlockDeviceMappings"]
    assert mapping["DeviceName"] == "/dev/sda1"  # the image's own root device
    assert mapping["Ebs"]["Encrypted"] is True
    assert mapping["Ebs"]["VolumeSize"] == 64
    assert request["LaunchTemplate"]["LaunchTemplateId"].startswith("lt-")
    assert request["ClientToken"].startswith("runctl-")


def test_given_recorded_run_when_launched_then_root_volume_is_tagged_and_encrypted(launch, aws):
    info = launch()

    volumes = aws.ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [info["instance_id"]]}]
    )["Volumes"]
    (volume,) = volumes
    assert volume["Encrypted"] is True
    assert volume["Size"] == 64
    assert _tags(volume)[TAG_RUN_ID] == "run-1"
    assert _tags(volume)[TAG_ATTEMPT] == "1"


def test_given_recorded_run_when_launched_then_record_is_launching_with_the_attempt(
    launch, read_record, clock
):
    info = launch()

    item = read_record("run-1")
    assert item["status"] == "LAUNCHING"
    assert item["instance_id"] == info["instance_id"]
    assert item["updated_at"] == clock().isoformat()
    assert item["attempts"]["1"] == {
        "number": 1,
        "instance_id": info["instance_id"],
        "instance_type": "g5.xlarge",
        "availability_zone": info["availability_zone"],
        "market": "spot",
        "started_at": clock().isoformat(),
    }


def test_given_recorded_run_when_launched_then_instance_info_has_a_ready_deadline(
    launch, lambda_environment
):
    info = launch()

    assert info["market"] == "spot"
    assert info["instance_type"] == "g5.xlarge"
    assert info["instance_id"].startswith("i-")
    # INSTANCE_READY_TIMEOUT_SECONDS defaults to 600, counted from the instance's own launch time
    launched = datetime.fromisoformat(info["launched_at"])
    assert info["ready_deadline"] == pytest.approx(launched.timestamp() + 600)


def test_given_launched_attempt_when_handler_is_retried_then_the_deadline_does_not_move(launch):
    first = launch()
    retried = launch()

    assert retried["instance_id"] == first["instance_id"]
    assert retried["launched_at"] == first["launched_at"]
    assert retried["ready_deadline"] == first["ready_deadline"]


def test_given_launched_attempt_when_handler_is_retried_then_exactly_one_instance_exists(
    launch, ec2_spy, instances_of, read_record
):
    first = launch()
    second = launch()

    assert second["instance_id"] == first["instance_id"]
    assert len(instances_of("run-1")) == 1
    assert len(ec2_spy.run_requests) == 1  # the retry found the instance by its tags
    assert read_record("run-1")["instance_id"] == first["instance_id"]


def test_given_no_capacity_for_first_type_when_launched_then_second_type_is_used(
    launch, ec2_spy, instances_of, default_subnets
):
    ec2_spy.refuse = lambda request: (
        "InsufficientInstanceCapacity" if request["InstanceType"] == "g5.xlarge" else None
    )

    info = launch()

    assert [request["InstanceType"] for request in ec2_spy.run_requests] == [
        "g5.xlarge",
        "g4dn.xlarge",
    ]
    assert info["instance_type"] == "g4dn.xlarge"
    assert info["availability_zone"] == default_subnets[0][1]
    assert info["market"] == "spot"
    (instance,) = instances_of("run-1")
    assert instance["InstanceType"] == "g4dn.xlarge"


def test_given_no_capacity_anywhere_when_launched_then_capacity_unavailable_names_each_option(
    launch, ec2_spy, read_record, default_subnets, aws
):
    ec2_spy.refuse = lambda request: "InsufficientInstanceCapacity"

    with pytest.raises(CapacityUnavailable) as caught:
        launch()

    message = str(caught.value)
    zones = ", ".join(zone for _, zone in default_subnets)
    # one line per market and type, in the order tried, naming every zone
    expected = [
        f"{market} {instance_type} in {zones}: InsufficientInstanceCapacity"
        for market in ("spot", "on-demand")
        for instance_type in ("g5.xlarge", "g4dn.xlarge")
    ]
    assert len(ec2_spy.run_requests) == 2 * 2 * len(default_subnets)
    assert message == "no capacity for any allowed option: " + "; ".join(expected)
    assert _all_instances(aws) == []
    assert read_record("run-1")["status"] == "PENDING"


def test_given_no_default_vpc_and_no_subnets_when_launched_then_no_default_vpc_and_nothing_tried(
    launch, ec2_spy, read_record, default_subnets, aws
):
    # Given the default VPC's subnets are gone (deleted after the deploy) and none are configured
    for subnet_id, _ in default_subnets:
        aws.ec2.delete_subnet(SubnetId=subnet_id)

    with pytest.raises(NoDefaultVpc) as caught:
        launch()

    # Then the error says what to configure, and no launch was tried
    assert "runctl:vpcId" in str(caught.value)
    assert ec2_spy.run_requests == []
    assert _all_instances(aws) == []
    assert read_record("run-1")["status"] == "PENDING"


def test_given_spot_without_fallback_and_no_capacity_when_launched_then_on_demand_never_tried(
    invoke, record, make_run_context, ec2_spy
):
    run = record(make_run_context(on_demand_fallback=False))
    ec2_spy.refuse = lambda request: "InsufficientInstanceCapacity"

    with pytest.raises(CapacityUnavailable):
        invoke(launch_instance, {"run": run})

    assert ec2_spy.run_requests
    assert all("InstanceMarketOptions" in request for request in ec2_spy.run_requests)


def test_given_other_ec2_error_when_launched_then_it_is_raised_without_trying_more(
    launch, ec2_spy, read_record, aws
):
    ec2_spy.refuse = lambda request: "UnauthorizedOperation"

    with pytest.raises(ClientError) as caught:
        launch()

    assert caught.value.response["Error"]["Code"] == "UnauthorizedOperation"
    assert len(ec2_spy.run_requests) == 1
    assert _all_instances(aws) == []
    assert read_record("run-1")["status"] == "PENDING"


def test_given_no_spot_capacity_when_launched_then_on_demand_only_after_every_spot_option(
    launch, ec2_spy, instances_of, read_record, default_subnets
):
    ec2_spy.refuse = lambda request: (
        "InsufficientInstanceCapacity" if "InstanceMarketOptions" in request else None
    )

    info = launch()

    markets = [
        "spot" if "InstanceMarketOptions" in request else "on-demand"
        for request in ec2_spy.run_requests
    ]
    spot_options = 2 * len(default_subnets)
    assert markets == ["spot"] * spot_options + ["on-demand"]
    assert info["market"] == "on-demand"
    assert info["instance_type"] == "g5.xlarge"
    (instance,) = instances_of("run-1")
    assert "InstanceLifecycle" not in instance
    assert read_record("run-1")["attempts"]["1"]["market"] == "on-demand"


def test_given_on_demand_run_when_launched_then_no_spot_request_is_made(
    invoke, record, make_run_context, ec2_spy
):
    run = record(make_run_context(market="on-demand"))

    info = invoke(launch_instance, {"run": run})

    (request,) = ec2_spy.run_requests
    assert "InstanceMarketOptions" not in request
    assert info["market"] == "on-demand"


@pytest.mark.parametrize("load_default_amis", [True])
def test_given_al2023_alias_when_launched_then_ami_comes_from_public_parameter(
    invoke, record, make_run_context, ec2_spy, aws, load_default_amis
):
    run = record(make_run_context(image="al2023"))
    expected_ami = aws.ssm.get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )["Parameter"]["Value"]

    invoke(launch_instance, {"run": run})

    (request,) = ec2_spy.run_requests
    assert request["ImageId"] == expected_ami
    assert request["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"


def test_given_run_cancelled_while_launching_when_launched_then_run_not_live_and_instance_tagged(
    launch, aws, lambda_environment
):
    # Given the run was cancelled before LaunchInstance recorded its attempt
    aws.dynamodb.update_item(
        TableName=lambda_environment["RUNS_TABLE_NAME"],
        Key={"run_id": {"S": "run-1"}},
        UpdateExpression="SET #s = :c",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":c": {"S": "CANCELLED"}},
    )

    # Then the step fails (its Catch leads to FinalizeRun), and the instance it may have
    # launched carries the run's tags, which is how FinalizeRun finds and terminates it
    with pytest.raises(RunNotLive):
        launch()
    reservations = aws.ec2.describe_instances(
        Filters=[{"Name": f"tag:{TAG_RUN_ID}", "Values": ["run-1"]}]
    )["Reservations"]
    assert len([i for r in reservations for i in r["Instances"]]) == 1


def test_given_no_spot_capacity_when_launched_then_attempt_records_what_was_refused(
    launch, ec2_spy, read_record, default_subnets
):
    ec2_spy.refuse = lambda request: (
        "InsufficientInstanceCapacity" if "InstanceMarketOptions" in request else None
    )

    info = launch()

    assert info["market"] == "on-demand"
    zones = ", ".join(zone for _, zone in default_subnets)
    assert read_record("run-1")["attempts"]["1"]["refused"] == [
        f"spot g5.xlarge in {zones}: InsufficientInstanceCapacity",
        f"spot g4dn.xlarge in {zones}: InsufficientInstanceCapacity",
    ]


def test_given_first_choice_launches_when_launched_then_attempt_has_no_refusals(
    launch, read_record
):
    launch()

    assert "refused" not in read_record("run-1")["attempts"]["1"]


def test_given_launched_attempt_when_handler_is_retried_then_refusals_are_kept(
    launch, ec2_spy, read_record
):
    ec2_spy.refuse = lambda request: (
        "InsufficientInstanceCapacity" if request["InstanceType"] == "g5.xlarge" else None
    )
    launch()

    launch()  # the retry finds the instance and launches nothing

    refused = read_record("run-1")["attempts"]["1"]["refused"]
    assert refused and refused[0].startswith("spot g5.xlarge in ")


def test_given_little_time_left_when_launched_then_spot_is_skipped_for_on_demand(
    launch, ec2_spy, lambda_context, read_record
):
    # Less than the spot options' reserve (25 s) is left, more than the last call's (10 s).
    lambda_context.remaining_ms = 20_000

    info = launch()

    assert info["market"] == "on-demand"
    assert all("InstanceMarketOptions" not in request for request in ec2_spy.run_requests)
    refused = read_record("run-1")["attempts"]["1"]["refused"]
    assert refused[0].startswith("spot g5.xlarge in ")
    assert all(line.endswith(": not tried (launch time budget)") for line in refused)


def test_given_no_time_left_when_launched_then_capacity_unavailable_without_a_call(
    launch, ec2_spy, lambda_context, aws
):
    lambda_context.remaining_ms = 5_000

    with pytest.raises(CapacityUnavailable, match="not tried \\(launch time budget\\)"):
        launch()

    assert ec2_spy.run_requests == []
    assert _all_instances(aws) == []


def test_given_throttled_launch_when_launched_then_same_request_is_repeated_once(
    launch, ec2_spy, instances_of
):
    answers = iter(["RequestLimitExceeded"])
    ec2_spy.refuse = lambda request: next(answers, None)

    info = launch()

    first, repeated = ec2_spy.run_requests
    assert repeated == first  # same option, same ClientToken: EC2 launches at most once
    assert [instance["InstanceId"] for instance in instances_of("run-1")] == [info["instance_id"]]

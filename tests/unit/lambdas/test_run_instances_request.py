"""run_instances_request: the security settings of every instance runctl launches."""

from __future__ import annotations

import pytest

from lambdas.constants import TAG_ATTEMPT, TAG_MANAGED, TAG_RUN_ID
from lambdas.logic.launch_plan import LaunchOption, client_token
from lambdas.logic.launching import run_instances_request

SPOT = LaunchOption("g5.xlarge", "subnet-a", "us-east-1a", "spot")
ON_DEMAND = LaunchOption("g5.xlarge", "subnet-a", "us-east-1a", "on-demand")


@pytest.fixture
def run(make_run):
    return make_run(run_id="run-7", attempt=2, volume_gb=250)


def _request(run, env, option=SPOT, root_device="/dev/sda1"):
    return run_instances_request(run, option, env, "ami-0abc", root_device)


def test_given_any_option_when_requested_then_imdsv2_is_required(run, env):
    options = _request(run, env)["MetadataOptions"]

    assert options["HttpTokens"] == "required"
    assert options["HttpEndpoint"] == "enabled"
    assert options["HttpPutResponseHopLimit"] <= 2


def test_given_volume_size_and_device_when_requested_then_root_volume_is_encrypted(run, env):
    (mapping,) = _request(run, env, root_device="/dev/sda1")["BlockDeviceMappings"]

    assert mapping["DeviceName"] == "/dev/sda1"
    assert mapping["Ebs"]["Encrypted"] is True
    assert mapping["Ebs"]["VolumeSize"] == 250
    assert mapping["Ebs"]["DeleteOnTermination"] is True


def test_given_run_and_attempt_when_requested_then_instance_and_volume_are_tagged(run, env):
    specs = _request(run, env)["TagSpecifications"]

    assert sorted(spec["ResourceType"] for spec in specs) == ["instance", "volume"]
    for spec in specs:
        tags = {tag["Key"]: tag["Value"] for tag in spec["Tags"]}
        assert tags[TAG_MANAGED] == "true"
        assert tags[TAG_RUN_ID] == "run-7"
        assert tags[TAG_ATTEMPT] == "2"


def test_given_spot_option_when_requested_then_one_time_spot_market_is_asked(run, env):
    market = _request(run, env, SPOT)["InstanceMarketOptions"]

    assert market["MarketType"] == "spot"
    assert market["SpotOptions"]["SpotInstanceType"] == "one-time"
    assert market["SpotOptions"]["InstanceInterruptionBehavior"] == "terminate"


def test_given_on_demand_option_when_requested_then_no_market_options(run, env):
    assert "InstanceMarketOptions" not in _request(run, env, ON_DEMAND)


def test_given_option_when_requested_then_client_token_placement_and_template_are_set(run, env):
    request = _request(run, env)

    assert request["ClientToken"] == client_token("run-7", 2, SPOT)
    assert request["InstanceType"] == "g5.xlarge"
    assert request["SubnetId"] == "subnet-a"
    assert request["ImageId"] == "ami-0abc"
    assert (request["MinCount"], request["MaxCount"]) == (1, 1)
    assert request["LaunchTemplate"] == {
        "LaunchTemplateId": "lt-0123456789abcdef0",
        "Version": "$Default",
    }

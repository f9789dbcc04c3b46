"""Capacity faults in the emulator arrive over HTTP as EC2 sends them: InsufficientInstanceCapacity
is an HTTP 500 that botocore's standard retry mode retries (every attempt reaches the emulator),
MaxSpotInstanceCountExceeded a 400 it does not retry; a refusal names one pool (type, market)
and leaves the others launching."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runctl.local.capacity import CapacitySpecInvalid, NoCapacity
from runctl.local.emulator import REGION, Emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(Path(tmp_path_factory.mktemp("emulator"))) as emulator:
        yield emulator


@pytest.fixture
def capacity(emulator: Emulator) -> Iterator:
    yield emulator.capacity
    emulator.capacity.rules.clear()
    emulator.capacity.refusals.clear()
    emulator.capacity.requests.clear()


def _ec2(total_attempts: int) -> object:
    # total_max_attempts counts the first call (the retries dict's max_attempts does not)
    config = Config(retries={"mode": "standard", "total_max_attempts": total_attempts})
    return boto3.client("ec2", region_name=REGION, config=config)


def _run(ec2, instance_type: str, market: str | None = None) -> dict:
    # one of moto's built-in AMIs (listing them all takes seconds)
    request: dict = {
        "ImageId": "ami-03cf127a",
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
    }
    if market == "spot":
        request["InstanceMarketOptions"] = {"MarketType": "spot"}
    return ec2.run_instances(**request)


def test_given_no_spot_capacity_when_run_instances_then_http_500_retried_by_botocore(capacity):
    capacity.refuse(NoCapacity("g5.xlarge", "spot"))
    ec2 = _ec2(total_attempts=3)

    with pytest.raises(ClientError) as raised:
        _run(ec2, "g5.xlarge", "spot")

    response = raised.value.response
    assert response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
    # botocore's standard mode retried it: every attempt reached the emulator
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert capacity.requests[("g5.xlarge", "spot")] == 3


def test_given_spot_count_exceeded_when_run_instances_then_400_is_not_retried(capacity):
    capacity.refuse(NoCapacity("g5.xlarge", "spot", "MaxSpotInstanceCountExceeded"))

    with pytest.raises(ClientError) as raised:
        _run(_ec2(total_attempts=3), "g5.xlarge", "spot")

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert capacity.requests[("g5.xlarge", "spot")] == 1


def test_given_throttling_when_run_instances_then_503_request_limit_exceeded(capacity):
    capacity.refuse(NoCapacity("g5.xlarge", "on-demand", "RequestLimitExceeded"))

    with pytest.raises(ClientError) as raised:
        _run(_ec2(total_attempts=1), "g5.xlarge")

    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_given_spot_refused_when_on_demand_or_other_type_asked_then_they_launch(capacity, emulator):
    capacity.refuse(NoCapacity("g5.xlarge", "spot"))
    ec2 = _ec2(total_attempts=1)

    on_demand = _run(ec2, "g5.xlarge")["Instances"][0]
    other = _run(ec2, "g4dn.xlarge", "spot")["Instances"][0]

    assert on_demand["InstanceType"] == "g5.xlarge"
    assert other["InstanceLifecycle"] == "spot"
    # the launched ones became local instances, as any other launch does
    assert emulator.fleet.get(on_demand["InstanceId"]) is not None
    ec2.terminate_instances(InstanceIds=[on_demand["InstanceId"], other["InstanceId"]])


def test_given_type_without_market_when_refused_then_both_markets_are_refused(capacity):
    capacity.refuse(NoCapacity.parse("g5.xlarge"))
    ec2 = _ec2(total_attempts=1)

    for market in ("spot", None):
        with pytest.raises(ClientError) as raised:
            _run(ec2, "g5.xlarge", market)
        assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 0

    assert [(r.market, r.status) for r in capacity.refusals] == [("spot", 500), ("on-demand", 500)]


@pytest.mark.parametrize("text", ["g5.xlarge:cheap", ":spot", ""])
def test_given_bad_no_capacity_text_when_parsed_then_refused(text):
    with pytest.raises(CapacitySpecInvalid):
        NoCapacity.parse(text)

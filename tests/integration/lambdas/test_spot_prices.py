"""SpotPriceHistory: spot attempts priced from EC2's history (moto), static table otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lambdas.integrations.spot_prices import PRODUCT_DESCRIPTION, SpotPriceHistory
from lambdas.logic.pricing import InstanceUsage
from lambdas.logic.static_prices import ON_DEMAND_USD_PER_HOUR, SPOT_ESTIMATE_FRACTION

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
END = START + timedelta(hours=2)


def usage(
    market: str = "spot", zone: str | None = "us-east-1a", instance_type: str = "g5.xlarge"
) -> InstanceUsage:
    return InstanceUsage(instance_type, market, zone, START, END)


class StubEc2:
    """describe_spot_price_history through a paginator: given pages, or an error to raise."""

    def __init__(
        self, pages: list[list[dict[str, Any]]] | None = None, error: Exception | None = None
    ):
        self.pages = pages or []
        self.error = error
        self.requests: list[dict[str, Any]] = []

    def get_paginator(self, operation: str) -> StubEc2:
        assert operation == "describe_spot_price_history"
        return self

    def paginate(self, **request: Any) -> list[dict[str, Any]]:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return [{"SpotPriceHistory": page} for page in self.pages]


def price_change(zone: str, when: datetime, price: float) -> dict[str, Any]:
    return {
        "AvailabilityZone": zone,
        "InstanceType": "g5.xlarge",
        "ProductDescription": PRODUCT_DESCRIPTION,
        "SpotPrice": str(price),
        "Timestamp": when,
    }


def static_estimate(instance_type: str = "g5.xlarge") -> float:
    return ON_DEMAND_USD_PER_HOUR[instance_type] * SPOT_ESTIMATE_FRACTION


def test_spot_attempt_is_priced_from_the_zones_spot_price_history(aws):
    # moto reports one fixed price per zone, dated before the attempt: the price in effect
    (reported,) = aws.ec2.describe_spot_price_history(
        InstanceTypes=["g5.xlarge"],
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}],
    )["SpotPriceHistory"]

    price = SpotPriceHistory(aws.ec2).hourly_price(usage())

    assert price is not None
    assert price.source == "spot-price-history"
    assert price.usd_per_hour == pytest.approx(float(reported["SpotPrice"]))


def test_history_is_asked_for_the_attempts_type_zone_product_and_interval():
    ec2 = StubEc2(pages=[[price_change("us-east-1a", START - timedelta(days=1), 0.4)]])

    SpotPriceHistory(ec2).hourly_price(usage())

    (request,) = ec2.requests
    assert request["InstanceTypes"] == ["g5.xlarge"]
    assert request["ProductDescriptions"] == ["Linux/UNIX"]
    assert (request["StartTime"], request["EndTime"]) == (START, END)
    assert request["Filters"] == [{"Name": "availability-zone", "Values": ["us-east-1a"]}]


def test_price_change_during_the_attempt_is_time_weighted_across_pages():
    ec2 = StubEc2(
        pages=[
            [price_change("us-east-1a", START + timedelta(hours=1, minutes=30), 0.8)],
            [price_change("us-east-1a", START - timedelta(hours=3), 0.4)],
        ]
    )

    price = SpotPriceHistory(ec2).hourly_price(usage())

    assert price is not None
    assert price.usd_per_hour == pytest.approx((1.5 * 0.4 + 0.5 * 0.8) / 2)


def test_unknown_zone_takes_the_dearest_zone():
    ec2 = StubEc2(
        pages=[
            [
                price_change("us-east-1a", START - timedelta(hours=1), 0.3),
                price_change("us-east-1b", START - timedelta(hours=1), 0.5),
            ]
        ]
    )

    price = SpotPriceHistory(ec2).hourly_price(usage(zone=None))

    assert price is not None
    assert price.usd_per_hour == pytest.approx(0.5)
    assert "Filters" not in ec2.requests[0]


@pytest.mark.parametrize(
    "error",
    [
        ClientError(
            {"Error": {"Code": "UnauthorizedOperation", "Message": "denied"}},
            "DescribeSpotPriceHistory",
        ),
        ClientError(
            {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}},
            "DescribeSpotPriceHistory",
        ),
        EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com"),
    ],
    ids=["denied", "throttled", "unreachable"],
)
def test_unreadable_history_falls_back_to_the_labelled_static_estimate(error):
    price = SpotPriceHistory(StubEc2(error=error)).hourly_price(usage())

    assert price is not None
    assert price.source == "static-spot-estimate"
    assert price.usd_per_hour == pytest.approx(static_estimate())


def test_no_history_for_the_type_falls_back_to_the_static_estimate():
    # An empty history: the type is not offered in that zone, or its history is not kept
    price = SpotPriceHistory(StubEc2(pages=[[]])).hourly_price(usage(instance_type="p5.48xlarge"))

    assert price is not None
    assert price.source == "static-spot-estimate"
    assert price.usd_per_hour == pytest.approx(static_estimate("p5.48xlarge"))


def test_on_demand_attempt_gets_the_list_price_without_asking_ec2():
    ec2 = StubEc2()

    price = SpotPriceHistory(ec2).hourly_price(usage(market="on-demand"))

    assert price is not None
    assert (price.usd_per_hour, price.source) == (
        ON_DEMAND_USD_PER_HOUR["g5.xlarge"],
        "on-demand-list-price",
    )
    assert ec2.requests == []


def test_unknown_type_without_history_has_no_price():
    assert SpotPriceHistory(StubEc2()).hourly_price(usage(instance_type="x99.mega")) is None

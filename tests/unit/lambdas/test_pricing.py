"""Run cost: each attempt's hourly price times how long it ran; static fallbacks are labelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.logic.pricing import (
    HourlyPrice,
    InstanceUsage,
    run_cost,
    static_price_lookup,
    time_weighted_price,
)
from lambdas.logic.static_prices import (
    LIST_PRICES_AS_OF,
    ON_DEMAND_USD_PER_HOUR,
    SPOT_ESTIMATE_FRACTION,
)
from lambdas.models.run_record import RunRecord

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_record(*attempts: dict[str, Any]) -> RunRecord:
    return RunRecord.model_validate(
        {
            "run_id": "run-1",
            "status": "RUNNING",
            "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:TrainRun:run-1",
            "spec": {},
            "created_at": T0.isoformat(),
            "updated_at": T0.isoformat(),
            "attempt": len(attempts) or 1,
            "attempts": {str(item["number"]): item for item in attempts},
        }
    )


def attempt(
    number: int,
    start: float,
    end: float | None,
    instance_type: str = "g5.xlarge",
    market: str = "on-demand",
) -> dict[str, Any]:
    return {
        "number": number,
        "instance_type": instance_type,
        "availability_zone": "us-east-1a",
        "market": market,
        "started_at": at(start).isoformat(),
        "ended_at": at(end).isoformat() if end is not None else None,
    }


class FixedSpotPrices:
    """A spot price history stand-in: one price, and what it was asked."""

    def __init__(self, usd_per_hour: float) -> None:
        self.usd_per_hour = usd_per_hour
        self.asked: list[InstanceUsage] = []

    def hourly_price(self, usage: InstanceUsage) -> HourlyPrice | None:
        self.asked.append(usage)
        return HourlyPrice(self.usd_per_hour, "spot-price-history")


def test_on_demand_attempt_costs_its_list_price_times_its_hours():
    record = make_record(attempt(1, start=0, end=90))

    cost = run_cost(record, static_price_lookup(), now=at(500))

    (only,) = cost.attempts
    list_price = ON_DEMAND_USD_PER_HOUR["g5.xlarge"]
    assert only.seconds == 90 * 60
    assert only.usd_per_hour == list_price
    assert only.usd == pytest.approx(list_price * 1.5)
    assert only.price_source == "on-demand-list-price"
    assert cost.total_usd == pytest.approx(list_price * 1.5)
    assert cost.currency == "USD"
    assert cost.static_prices_as_of == LIST_PRICES_AS_OF
    assert cost.uses_static_fallback
    assert cost.is_complete


def test_spot_attempt_is_priced_by_the_lookup_over_its_own_interval():
    prices = FixedSpotPrices(0.3)
    record = make_record(attempt(1, start=10, end=40, market="spot"))

    cost = run_cost(record, prices, now=at(500))

    assert prices.asked == [InstanceUsage("g5.xlarge", "spot", "us-east-1a", at(10), at(40))]
    assert cost.attempts[0].usd == pytest.approx(0.3 * 0.5)
    assert cost.attempts[0].price_source == "spot-price-history"
    assert not cost.uses_static_fallback
    assert cost.static_prices_as_of is None


def test_static_spot_estimate_is_a_labelled_fraction_of_on_demand():
    record = make_record(attempt(1, start=0, end=60, instance_type="g4dn.xlarge", market="spot"))

    cost = run_cost(record, static_price_lookup(), now=at(60))

    estimate = ON_DEMAND_USD_PER_HOUR["g4dn.xlarge"] * SPOT_ESTIMATE_FRACTION
    assert cost.attempts[0].usd_per_hour == pytest.approx(estimate)
    assert cost.attempts[0].price_source == "static-spot-estimate"
    assert cost.uses_static_fallback


def test_live_attempt_counts_up_to_now_and_earlier_attempts_to_their_end():
    record = make_record(
        attempt(1, start=0, end=30, market="spot"),
        attempt(2, start=32, end=None, instance_type="g6.xlarge"),
    )

    cost = run_cost(record, static_price_lookup(), now=at(92))

    assert [item.number for item in cost.attempts] == [1, 2]
    assert [item.seconds for item in cost.attempts] == [30 * 60, 60 * 60]
    expected = (
        ON_DEMAND_USD_PER_HOUR["g5.xlarge"] * SPOT_ESTIMATE_FRACTION * 0.5
        + ON_DEMAND_USD_PER_HOUR["g6.xlarge"] * 1.0
    )
    assert cost.total_usd == pytest.approx(expected)


def test_attempts_are_in_number_order_beyond_nine():
    record = make_record(
        *(attempt(number, start=number, end=number + 1) for number in range(1, 12))
    )

    cost = run_cost(record, static_price_lookup(), now=at(100))

    assert [item.number for item in cost.attempts] == list(range(1, 12))


def test_unknown_instance_type_is_recorded_unpriced_and_left_out_of_the_total():
    record = make_record(
        attempt(1, start=0, end=60, instance_type="x99.mega"),
        attempt(2, start=60, end=120),
    )

    cost = run_cost(record, static_price_lookup(), now=at(120))

    unknown, known = cost.attempts
    assert (unknown.price_source, unknown.usd, unknown.usd_per_hour) == ("unpriced", None, None)
    assert unknown.seconds == 3600
    assert cost.total_usd == pytest.approx(known.usd)
    assert not cost.is_complete


def test_attempt_that_never_launched_costs_nothing_and_is_not_listed():
    record = make_record(attempt(1, start=0, end=60))
    record.attempts["2"] = record.attempts["1"].model_copy(update={"number": 2, "started_at": None})

    cost = run_cost(record, static_price_lookup(), now=at(120))

    assert [item.number for item in cost.attempts] == [1]


def test_end_before_start_counts_zero_seconds_not_a_negative_cost():
    record = make_record(attempt(1, start=10, end=5))

    cost = run_cost(record, static_price_lookup(), now=at(20))

    assert cost.attempts[0].seconds == 0
    assert cost.total_usd == 0


def test_run_without_attempts_costs_zero():
    cost = run_cost(make_record(), static_price_lookup(), now=at(20))

    assert (cost.total_usd, cost.attempts, cost.uses_static_fallback) == (0, [], False)


def test_timestamp_without_offset_is_read_as_utc():
    record = make_record(attempt(1, start=0, end=None))
    record.attempts["1"].started_at = at(0).replace(tzinfo=None).isoformat()

    cost = run_cost(record, static_price_lookup(), now=at(30))

    assert cost.attempts[0].seconds == 30 * 60


def test_cost_survives_a_round_trip_through_the_record():
    cost = run_cost(make_record(attempt(1, start=0, end=60)), static_price_lookup(), now=at(60))
    record = make_record(attempt(1, start=0, end=60)).model_dump(mode="json")

    reread = RunRecord.model_validate({**record, "cost": cost.model_dump(mode="json")})

    assert reread.cost == cost


# ---------------------------------------------------------------- time-weighted spot price


def test_price_that_changes_midway_is_averaged_by_time():
    changes = [(at(-30), 0.2), (at(45), 0.6)]

    # 45 minutes at 0.2, then 15 at 0.6
    assert time_weighted_price(changes, at(0), at(60)) == pytest.approx((45 * 0.2 + 15 * 0.6) / 60)


def test_changes_are_taken_in_time_order_whatever_order_they_come_in():
    changes = [(at(30), 0.4), (at(-10), 0.2), (at(50), 1.0)]

    expected = (30 * 0.2 + 20 * 0.4 + 10 * 1.0) / 60
    assert time_weighted_price(changes, at(0), at(60)) == pytest.approx(expected)


def test_price_before_the_first_change_is_the_first_price():
    assert time_weighted_price([(at(30), 0.5)], at(0), at(60)) == pytest.approx(0.5)


def test_empty_interval_gets_the_price_in_effect_at_its_start():
    changes = [(at(-10), 0.3), (at(10), 0.9)]

    assert time_weighted_price(changes, at(0), at(0)) == pytest.approx(0.3)


def test_no_changes_means_no_price():
    assert time_weighted_price([], at(0), at(60)) is None

"""What a run's instances cost: each attempt's hourly price times how long it ran (pure).

FinalizeRun (or the reaper, for a run it ends) records the cost of a finished run; the client
uses the same `run_cost` with `static_price_lookup()` for a live run's cost so far. Times are the
run record's: an attempt runs from `started_at` (LaunchInstance recorded it) to `ended_at` (the
next attempt was planned, or the run was finalized), or to `now` while it is live. An interrupted
instance that is still checkpointing after its successor was planned is not counted, so the figure
is a close estimate of EC2's per-second bill, not the bill itself; EBS, S3 and Lambda are not
included.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Protocol

from lambdas.logic.static_prices import (
    LIST_PRICES_AS_OF,
    ON_DEMAND_USD_PER_HOUR,
    SPOT_ESTIMATE_FRACTION,
)
from lambdas.models.run_record import (
    STATIC_PRICE_SOURCES,
    Attempt,
    AttemptCost,
    PriceSource,
    RunCost,
    RunRecord,
)

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class InstanceUsage:
    """One attempt's instance, as a price lookup needs it."""

    instance_type: str
    market: str | None  # "spot" | "on-demand"
    availability_zone: str | None
    start: datetime
    end: datetime


@dataclass(frozen=True)
class HourlyPrice:
    usd_per_hour: float
    source: PriceSource


class PriceLookup(Protocol):
    def hourly_price(self, usage: InstanceUsage) -> HourlyPrice | None:
        """The instance's price per hour over the usage, or None when it is not known."""
        ...


class StaticPriceLookup:
    """Prices from the static table only: on-demand list prices, and spot as a fixed fraction of
    them (labelled "static-spot-estimate"). Needs no AWS access."""

    def hourly_price(self, usage: InstanceUsage) -> HourlyPrice | None:
        on_demand = ON_DEMAND_USD_PER_HOUR.get(usage.instance_type)
        if on_demand is None:
            return None
        if usage.market == "spot":
            return HourlyPrice(on_demand * SPOT_ESTIMATE_FRACTION, "static-spot-estimate")
        return HourlyPrice(on_demand, "on-demand-list-price")


def static_price_lookup() -> StaticPriceLookup:
    return StaticPriceLookup()


def run_cost(record: RunRecord, prices: PriceLookup, now: datetime) -> RunCost:
    """Every started attempt's cost, in attempt order; a live attempt counts up to `now`."""
    costs = [
        _attempt_cost(attempt, prices, now)
        for attempt in sorted(record.attempts.values(), key=lambda item: item.number)
        if attempt.started_at is not None  # never launched: no instance, nothing to pay
    ]
    static_used = any(cost.price_source in STATIC_PRICE_SOURCES for cost in costs)
    return RunCost(
        total_usd=sum(cost.usd for cost in costs if cost.usd is not None),
        attempts=costs,
        static_prices_as_of=LIST_PRICES_AS_OF if static_used else None,
    )


def _attempt_cost(attempt: Attempt, prices: PriceLookup, now: datetime) -> AttemptCost:
    """An attempt's price times its running time; an unknown instance type is "unpriced"."""
    assert attempt.started_at is not None  # run_cost leaves out attempts that never launched
    start = _utc(attempt.started_at)
    end = _utc(attempt.ended_at) if attempt.ended_at else now
    seconds = max(0.0, (end - start).total_seconds())
    price = None
    if attempt.instance_type:
        usage = InstanceUsage(
            attempt.instance_type, attempt.market, attempt.availability_zone, start, end
        )
        price = prices.hourly_price(usage)
    if price is None:
        return AttemptCost(
            number=attempt.number,
            instance_type=attempt.instance_type,
            market=attempt.market,
            seconds=seconds,
            price_source="unpriced",
        )
    return AttemptCost(
        number=attempt.number,
        instance_type=attempt.instance_type,
        market=attempt.market,
        seconds=seconds,
        usd_per_hour=price.usd_per_hour,
        usd=price.usd_per_hour * seconds / SECONDS_PER_HOUR,
        price_source=price.source,
    )


def time_weighted_price(
    changes: Sequence[tuple[datetime, float]], start: datetime, end: datetime
) -> float | None:
    """The average over [start, end] of a price that took each value at its time. Before the
    first change the first price applies; an empty interval gets the price in effect at start."""
    if not changes:
        return None
    ordered = sorted(changes)
    times = [when for when, _ in ordered]

    def price_at(moment: datetime) -> float:
        return ordered[max(0, bisect_right(times, moment) - 1)][1]

    if end <= start:
        return price_at(start)
    bounds = [start, *(when for when in times if start < when < end), end]
    weighted = sum(
        price_at(left) * (right - left).total_seconds() for left, right in pairwise(bounds)
    )
    return weighted / (end - start).total_seconds()


def _utc(stamp: str) -> datetime:
    """Record times are ISO-8601 with an offset; one without is taken as UTC."""
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

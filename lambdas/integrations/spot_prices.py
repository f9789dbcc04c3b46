"""Spot prices from EC2's spot price history, with the static table as the labelled fallback."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.logic.pricing import (
    HourlyPrice,
    InstanceUsage,
    PriceLookup,
    static_price_lookup,
    time_weighted_price,
)
from lambdas.observability import logger

PRODUCT_DESCRIPTION = "Linux/UNIX"
# A day of history per type and zone is a handful of price changes; this bounds a pathological one.
MAX_HISTORY_ITEMS = 1000


class SpotPriceHistory:
    """A PriceLookup: a spot attempt is priced at the time-weighted average of the spot prices in
    effect while it ran (its zone's, or the dearest zone's when the zone is unknown). On-demand
    attempts, and spot attempts whose history cannot be read (denied, throttled, no data), get
    the static table's price, labelled as such in the price source."""

    def __init__(self, ec2: Any, fallback: PriceLookup | None = None) -> None:
        self.ec2 = ec2
        self.fallback = fallback or static_price_lookup()

    def hourly_price(self, usage: InstanceUsage) -> HourlyPrice | None:
        if usage.market != "spot":
            return self.fallback.hourly_price(usage)
        try:
            by_zone = self._history(usage)
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "spot price history unavailable: using the static estimate",
                extra={"instance_type": usage.instance_type, "error": str(error)},
            )
            return self.fallback.hourly_price(usage)
        averages = [
            price
            for changes in by_zone.values()
            if (price := time_weighted_price(changes, usage.start, usage.end)) is not None
        ]
        if not averages:
            logger.warning(
                "no spot price history: using the static estimate",
                extra={"instance_type": usage.instance_type, "zone": usage.availability_zone},
            )
            return self.fallback.hourly_price(usage)
        return HourlyPrice(max(averages), "spot-price-history")

    def _history(self, usage: InstanceUsage) -> dict[str, list[tuple[datetime, float]]]:
        """(time, price) changes by zone. AWS includes the change in effect at StartTime."""
        request: dict[str, Any] = {
            "InstanceTypes": [usage.instance_type],
            "ProductDescriptions": [PRODUCT_DESCRIPTION],
            "StartTime": usage.start,
            "EndTime": usage.end,
            "PaginationConfig": {"MaxItems": MAX_HISTORY_ITEMS},
        }
        if usage.availability_zone:
            request["Filters"] = [
                {"Name": "availability-zone", "Values": [usage.availability_zone]}
            ]
        by_zone: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        paginator = self.ec2.get_paginator("describe_spot_price_history")
        for page in paginator.paginate(**request):
            for item in page["SpotPriceHistory"]:
                by_zone[item["AvailabilityZone"]].append(
                    (item["Timestamp"], float(item["SpotPrice"]))
                )
        return by_zone

"""Capacity faults for local mode: EC2 refuses chosen (instance type, market) pools at the HTTP
layer, with the error code and HTTP status AWS uses, so botocore's own retry logic runs against
them (a ClientError raised from a Python stub would skip it: InsufficientInstanceCapacity is an
HTTP 500, which the standard retry mode retries with backoff)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock
from xml.sax.saxutils import escape

from moto.ec2.responses.instances import InstanceResponse

MARKETS = ("spot", "on-demand")
DEFAULT_CODE = "InsufficientInstanceCapacity"

# EC2's HTTP status per error code ("Error codes for the Amazon EC2 API": server errors are 5xx,
# client errors 4xx; RequestLimitExceeded is EC2's throttling answer).
ERROR_STATUS = {
    "InsufficientInstanceCapacity": 500,
    "InsufficientHostCapacity": 500,
    "InsufficientCapacity": 500,
    "InternalError": 500,
    "Unavailable": 503,
    "RequestLimitExceeded": 503,
    "MaxSpotInstanceCountExceeded": 400,
    "SpotMaxPriceTooLow": 400,
    "InstanceLimitExceeded": 400,
    "VcpuLimitExceeded": 400,
    "Unsupported": 400,
    "InsufficientFreeAddressesInSubnet": 400,
}

_ORIGINAL_RUN_INSTANCES = InstanceResponse.run_instances


class CapacitySpecInvalid(ValueError):
    """A --no-capacity value that is not TYPE, TYPE:spot or TYPE:on-demand."""


@dataclass(frozen=True)
class NoCapacity:
    """EC2 answers `code` to every RunInstances for this type in this market (None: both)."""

    instance_type: str
    market: str | None = None
    code: str = DEFAULT_CODE

    @classmethod
    def parse(cls, text: str) -> NoCapacity:
        """'g5.xlarge', 'g5.xlarge:spot' or 'g5.xlarge:on-demand'."""
        instance_type, _, market = text.partition(":")
        if not instance_type or (market and market not in MARKETS):
            raise CapacitySpecInvalid(
                f"--no-capacity {text!r}: expected TYPE, TYPE:spot or TYPE:on-demand"
            )
        return cls(instance_type, market or None)

    def refuses(self, instance_type: str, market: str) -> bool:
        return self.instance_type == instance_type and self.market in (None, market)


@dataclass(frozen=True)
class Refusal:
    instance_type: str
    market: str
    code: str
    status: int


class CapacityFaults:
    """The pools EC2 refuses, and every RunInstances it saw (refused or not), for assertions."""

    def __init__(self) -> None:
        self.rules: list[NoCapacity] = []
        self.refusals: list[Refusal] = []
        self.requests: Counter[tuple[str, str]] = Counter()  # (type, market) -> calls seen
        self._lock = threading.Lock()  # the server answers on several threads

    def refuse(self, rule: NoCapacity) -> None:
        if rule.code not in ERROR_STATUS:
            raise CapacitySpecInvalid(f"unknown EC2 error code {rule.code!r}")
        with self._lock:
            self.rules.append(rule)

    def answer(self, instance_type: str, market: str) -> Refusal | None:
        """Count the call; the refusal for it, if a rule names its pool."""
        with self._lock:
            self.requests[(instance_type, market)] += 1
            rule = next((r for r in self.rules if r.refuses(instance_type, market)), None)
            if rule is None:
                return None
            refusal = Refusal(instance_type, market, rule.code, ERROR_STATUS[rule.code])
            self.refusals.append(refusal)
            return refusal

    @contextmanager
    def installed(self) -> Iterator[CapacityFaults]:
        """While inside, moto's RunInstances (server and in-process mock alike) consults us."""
        faults = self

        def run_instances(response: InstanceResponse) -> Any:
            instance_type = response._get_param("InstanceType", "m1.small")
            market = response._get_param("InstanceMarketOptions.MarketType") or "on-demand"
            refusal = faults.answer(str(instance_type), str(market))
            if refusal is None:
                return _ORIGINAL_RUN_INSTANCES(response)
            # A (body, headers) pair: moto sends it as it is, status included.
            return error_body(refusal), {"status": refusal.status}

        with mock.patch.object(InstanceResponse, "run_instances", run_instances):
            yield self


def error_body(refusal: Refusal) -> str:
    """EC2's error document (Query protocol), as botocore parses it."""
    message = (
        f"We currently do not have sufficient {refusal.instance_type} capacity "
        f"({refusal.market}) in the Availability Zone you requested."
        if refusal.code.startswith("Insufficient")
        else f"{refusal.code} for {refusal.market} {refusal.instance_type}."
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(refusal.code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )

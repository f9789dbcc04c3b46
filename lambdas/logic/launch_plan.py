"""Where to try launching, in order: spot over types then zones, then on-demand if allowed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lambdas.integrations.ec2_fleet import Subnet
from lambdas.models.run_spec import RunSpec


@dataclass(frozen=True)
class LaunchOption:
    instance_type: str
    subnet_id: str
    availability_zone: str
    market: str  # "spot" | "on-demand"

    def describe(self) -> str:
        return f"{self.market} {self.instance_type} in {self.availability_zone}"


def launch_plan(
    spec: RunSpec, subnets: list[Subnet], avoid: tuple[str, ...] | list[str] = ()
) -> list[LaunchOption]:
    """Every option to try, best first: next instance type, other zones, then the next market."""
    markets = ["spot", "on-demand"] if spec.market == "spot" else ["on-demand"]
    if spec.market == "spot" and not spec.on_demand_fallback:
        markets = ["spot"]
    options = [
        LaunchOption(instance_type, subnet.subnet_id, subnet.availability_zone, market)
        for market in markets
        for subnet in subnets
        for instance_type in spec.instance_types or []
    ]
    # Where spot capacity was just reclaimed, try last within the same market (stable sort).
    avoided = set(avoid)
    return sorted(
        options,
        key=lambda option: (
            markets.index(option.market),
            f"{option.instance_type}@{option.availability_zone}" in avoided,
        ),
    )


def client_token(run_id: str, attempt: int, option: LaunchOption) -> str:
    """Same run, attempt and option -> same token, so EC2 dedupes a retried call (max 64 chars)."""
    raw = f"{run_id}|{attempt}|{option.instance_type}|{option.subnet_id}|{option.market}"
    return "runctl-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def summarize_refusals(refusals: list[tuple[LaunchOption, str]]) -> list[str]:
    """'spot g5.xlarge in us-east-1a, us-east-1b: InsufficientInstanceCapacity', one line per
    market, type and reason in the order tried: bounded by types x markets, not by zones, so the
    run record stays small however many subnets there are."""
    zones: dict[tuple[str, str, str], list[str]] = {}
    for option, reason in refusals:
        tried = zones.setdefault((option.market, option.instance_type, reason), [])
        if option.availability_zone not in tried:
            tried.append(option.availability_zone)
    return [
        f"{market} {instance_type} in {', '.join(where)}: {reason}"
        for (market, instance_type, reason), where in zones.items()
    ]

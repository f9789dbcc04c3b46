"""Where to try launching, in order: spot over types then zones, then on-demand if allowed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lambdas.integrations.ec2_fleet import Subnet
from lambdas.models.bounds import fit_head
from lambdas.models.run_spec import RunSpec

# The refusals are written with their attempt on the run item, which holds every attempt's within
# DynamoDB's 400 KB (docs/architecture.md, "Payload limits"): the first lines, in the order tried,
# then how many more there were. A line names its zones while it fits, else how many there were.
MAX_REFUSED_LINES = 8
MAX_REFUSED_LINE_BYTES = 160


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
    market, type and reason in the order tried: bounded by types x markets, not by zones. At most
    MAX_REFUSED_LINES: the first ones, the last saying how many more ('… and 33 more')."""
    zones: dict[tuple[str, str, str], list[str]] = {}
    for option, reason in refusals:
        tried = zones.setdefault((option.market, option.instance_type, reason), [])
        if option.availability_zone not in tried:
            tried.append(option.availability_zone)
    lines = [
        _refusal_line(market, instance_type, where, reason)
        for (market, instance_type, reason), where in zones.items()
    ]
    if len(lines) <= MAX_REFUSED_LINES:
        return lines
    kept = MAX_REFUSED_LINES - 1
    return [*lines[:kept], f"… and {len(lines) - kept} more"]


def _refusal_line(market: str, instance_type: str, zones: list[str], reason: str) -> str:
    """The line with its zones, or with their number when they make it too long; at most
    MAX_REFUSED_LINE_BYTES of UTF-8 either way (cut with … should the rest be too long)."""
    line = f"{market} {instance_type} in {', '.join(zones)}: {reason}"
    if len(line.encode()) > MAX_REFUSED_LINE_BYTES:
        line = f"{market} {instance_type} in {len(zones)} zones: {reason}"
    # fit_head counts the JSON string: quotes and escapes, never fewer bytes than UTF-8.
    return fit_head(line, MAX_REFUSED_LINE_BYTES + 2)

"""Where to try launching, in order: spot over types then zones, then on-demand if allowed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lambdas.integrations.ec2_fleet import Subnet
from lambdas.models.run_spec import RunSpec

# EC2 error codes that mean "not here, not now": try the next option instead of failing.
CAPACITY_ERROR_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientFreeAddressesInSubnet",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",  # the instance type is not offered in this zone
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
    }
)


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

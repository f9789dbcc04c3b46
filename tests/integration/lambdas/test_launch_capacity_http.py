"""LaunchInstance against capacity refusals that arrive over HTTP as EC2 sends them
(InsufficientInstanceCapacity, HTTP 500): each refused option costs one call, not botocore's
retries with backoff, so with every spot pool refused the run reaches on-demand far inside the
function's 60 s timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lambdas.handlers import launch_instance
from runctl.local.capacity import CapacityFaults, NoCapacity

TYPES = ["g5.xlarge", "g4dn.xlarge", "g6.xlarge"]


@pytest.fixture
def capacity(moto_backend: None) -> Iterator[CapacityFaults]:
    with CapacityFaults().installed() as faults:
        yield faults


def test_given_every_spot_pool_refused_over_http_when_launched_then_on_demand_well_in_time(
    invoke, record, make_run_context, capacity, default_subnets, read_record
):
    for instance_type in TYPES:
        capacity.refuse(NoCapacity(instance_type, "spot"))
    run = record(make_run_context(instance_types=TYPES))

    started = time.monotonic()
    info = invoke(launch_instance, {"run": run})
    elapsed = time.monotonic() - started

    assert (info["market"], info["instance_type"]) == ("on-demand", "g5.xlarge")
    # A behaviour bound, not a benchmark: the standard retry mode's backoff on these 500s would
    # take about 7 s per option (~2 minutes for 18).
    assert elapsed < 30
    spot_pools = len(TYPES) * len(default_subnets)
    assert len(capacity.refusals) == spot_pools
    # one call per refused option: botocore did not retry them
    assert all(capacity.requests[(name, "spot")] == len(default_subnets) for name in TYPES)
    assert capacity.requests[("g5.xlarge", "on-demand")] == 1
    assert len(read_record("run-1")["attempts"]["1"]["refused"]) == len(TYPES)

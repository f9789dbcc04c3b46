"""launch_plan and client_token: which options LaunchInstance tries, in which order."""

from __future__ import annotations

import pytest

from lambdas.integrations.ec2_fleet import Subnet
from lambdas.logic.launch_plan import LaunchOption, client_token, launch_plan

SUBNETS = [Subnet("subnet-a", "us-east-1a"), Subnet("subnet-b", "us-east-1b")]


def _plan(make_run, **spec_fields) -> list[tuple[str, str, str]]:
    run = make_run(instance_types=["g5.xlarge", "g4dn.xlarge"], **spec_fields)
    return [
        (option.market, option.availability_zone, option.instance_type)
        for option in launch_plan(run.spec, SUBNETS)
    ]


def test_given_spot_with_fallback_when_planned_then_types_then_zones_then_on_demand(make_run):
    assert _plan(make_run) == [
        ("spot", "us-east-1a", "g5.xlarge"),
        ("spot", "us-east-1a", "g4dn.xlarge"),
        ("spot", "us-east-1b", "g5.xlarge"),
        ("spot", "us-east-1b", "g4dn.xlarge"),
        ("on-demand", "us-east-1a", "g5.xlarge"),
        ("on-demand", "us-east-1a", "g4dn.xlarge"),
        ("on-demand", "us-east-1b", "g5.xlarge"),
        ("on-demand", "us-east-1b", "g4dn.xlarge"),
    ]


def test_given_no_on_demand_fallback_when_planned_then_spot_only(make_run):
    plan = _plan(make_run, on_demand_fallback=False)

    assert {market for market, _, _ in plan} == {"spot"}
    assert len(plan) == 4


def test_given_on_demand_market_when_planned_then_on_demand_only(make_run):
    plan = _plan(make_run, market="on-demand")

    assert [market for market, _, _ in plan] == ["on-demand"] * 4
    # on_demand_fallback means nothing for an on-demand run
    assert _plan(make_run, market="on-demand", on_demand_fallback=False) == plan


def test_given_option_when_planned_then_subnet_matches_its_zone(make_run):
    run = make_run()

    for option in launch_plan(run.spec, SUBNETS):
        expected = {"us-east-1a": "subnet-a", "us-east-1b": "subnet-b"}[option.availability_zone]
        assert option.subnet_id == expected


def test_given_no_subnets_when_planned_then_plan_is_empty(make_run):
    assert launch_plan(make_run().spec, []) == []


def test_given_option_when_described_then_market_type_and_zone_are_named():
    option = LaunchOption("g5.xlarge", "subnet-a", "us-east-1a", "spot")

    assert option.describe() == "spot g5.xlarge in us-east-1a"


OPTION = LaunchOption("g5.xlarge", "subnet-a", "us-east-1a", "spot")


def test_given_same_run_attempt_and_option_when_tokened_twice_then_token_is_stable():
    assert client_token("run-1", 1, OPTION) == client_token("run-1", 1, OPTION)


@pytest.mark.parametrize("run_id", ["r", "run-1", "x" * 80])
def test_given_any_run_id_when_tokened_then_token_fits_ec2_limit(run_id):
    token = client_token(run_id, 99, OPTION)

    assert len(token) <= 64
    assert token.isascii()
    assert token.startswith("runctl-")


@pytest.mark.parametrize(
    ("run_id", "attempt", "option"),
    [
        ("run-2", 1, OPTION),
        ("run-1", 2, OPTION),
        ("run-1", 1, LaunchOption("g4dn.xlarge", "subnet-a", "us-east-1a", "spot")),
        ("run-1", 1, LaunchOption("g5.xlarge", "subnet-b", "us-east-1b", "spot")),
        ("run-1", 1, LaunchOption("g5.xlarge", "subnet-a", "us-east-1a", "on-demand")),
    ],
)
def test_given_other_run_attempt_or_option_when_tokened_then_token_differs(run_id, attempt, option):
    assert client_token(run_id, attempt, option) != client_token("run-1", 1, OPTION)


def test_given_every_option_of_a_plan_when_tokened_then_tokens_are_distinct(make_run):
    plan = launch_plan(make_run().spec, SUBNETS)

    assert len({client_token("run-1", 1, option) for option in plan}) == len(plan)

"""Capacity faults in a whole local run: with no spot capacity for either allowed type (refused at
the HTTP layer, InsufficientInstanceCapacity, HTTP 500), the run starts on on-demand, succeeds,
and says why it is not on spot, while running, in `status` and in `runs show`."""

from __future__ import annotations

import re

import pytest

from tests.e2e_local.conftest import invoke_cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_capacity")]


def test_given_no_spot_capacity_when_run_locally_then_succeeds_on_demand_and_says_why(project):
    out = invoke_cli(
        "local",
        "run",
        "train_tiny.py",
        "--hp",
        "steps=5",
        "--hp",
        "step_seconds=0",
        "--no-capacity",
        "g5.xlarge:spot",
        "--no-capacity",
        "g4dn.xlarge:spot",
        "--instance-type",
        "g5.xlarge",
        "--instance-type",
        "g4dn.xlarge",
    )

    assert "SUCCEEDED run" in out
    # every attempt (a slow box may resume once) is on-demand, and says which spot pools refused
    assert {market for _, market in re.findall(r"attempt \d+: (\S+) (\S+) i-", out)} == {
        "on-demand"
    }
    why = [line.strip() for line in out.splitlines() if "launched after: " in line]
    assert why
    for line in why:
        assert "spot g5.xlarge in us-east-1" in line
        assert "spot g4dn.xlarge in us-east-1" in line
        assert line.count(": InsufficientInstanceCapacity") == 2
    run_id = re.search(r"started run (run-\S+)", out).group(1)  # type: ignore[union-attr]
    status = invoke_cli("local", "status", run_id)
    assert "on-demand" in status
    assert "launched after: spot g" in status
    shown = invoke_cli("local", "runs", "show", run_id)
    assert "not: spot g5.xlarge, spot g4dn.xlarge" in shown or (
        "not: spot g4dn.xlarge, spot g5.xlarge" in shown
    )


def test_given_an_unknown_market_when_run_locally_then_refused_before_starting(project):
    out = invoke_cli(
        "local", "run", "train_tiny.py", "--no-capacity", "g5.xlarge:cheap", exit_code=2
    )

    assert "expected TYPE, TYPE:spot or TYPE:on-demand" in out
    assert not (project / ".runctl-local").exists()

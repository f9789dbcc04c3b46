"""The agent's copy of the S3 layout agrees with lambdas/constants.py, function by function."""

from __future__ import annotations

import inspect

import pytest

import lambdas.constants as constants
from instance_agent import layout

SHARED = sorted(
    name
    for name, function in inspect.getmembers(layout, inspect.isfunction)
    if function.__module__ == layout.__name__ and hasattr(constants, name)
)
SAMPLE_ARGUMENTS = {"run_id": "run-20261123-abc", "attempt": 3, "version": "3-000017"}


def test_the_interruption_keys_are_among_the_shared_functions():
    assert {"handoff_key", "checkpoint_manifest_key", "checkpoints_prefix"} <= set(SHARED)


@pytest.mark.parametrize("name", SHARED)
def test_given_the_same_arguments_then_both_give_the_same_key(name: str):
    ours, theirs = getattr(layout, name), getattr(constants, name)
    parameters = list(inspect.signature(ours).parameters)
    assert parameters == list(inspect.signature(theirs).parameters)
    arguments = [SAMPLE_ARGUMENTS[parameter] for parameter in parameters]

    assert ours(*arguments) == theirs(*arguments)


def test_the_handoff_and_manifest_keys_are_where_the_contract_says():
    assert layout.handoff_key("r", 2) == "runs/r/attempts/2/handoff.json"
    assert layout.checkpoint_manifest_key("r") == "runs/r/checkpoints/latest.json"

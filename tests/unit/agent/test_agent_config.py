"""The agent config: the fields it needs, checked before anything is done with them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from instance_agent.config import ContainerSettings, InterruptionSettings, parse_config
from instance_agent.errors import ConfigError

VALID: dict[str, Any] = {
    "run_id": "run-20261123-abc",
    "attempt": 1,
    "region": "us-east-1",
    "bucket": "runctl-bucket",
    "table_name": "runctl-runs",
    "log_group": "/runctl/runs",
    "task_token": "token",
    "heartbeat_seconds": 300,
    "instance_id": "i-1",  # extra fields are ignored
    "spec": {
        "code": {"s3_uri": "s3://runctl-bucket/code/abc.tar.gz", "sha256": None},
        "entry_point": "train.py",
        "args": ["--x", "1"],
        "hyperparameters": {"lr": 0.1},
        "hyperparameters_as_args": True,
        "environment": {"MODE": "fast"},
        "interpreter": "python3",
        "data": [{"s3_uri": "s3://data/set/", "name": "train"}],
    },
}


def _with(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = raw
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return raw


def test_a_valid_config_is_parsed():
    config = parse_config(copy.deepcopy(VALID))

    assert config.run_id == "run-20261123-abc" and config.attempt == 1
    assert config.spec.code_uri == "s3://runctl-bucket/code/abc.tar.gz"
    assert config.spec.code_sha256 is None
    assert config.spec.args == ["--x", "1"]
    assert config.spec.hyperparameters_as_args is True
    assert config.spec.data[0].name == "train"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("task_token", ..., "task_token"),
        ("attempt", "1", "attempt"),
        ("attempt", True, "attempt"),
        ("attempt", 0, "attempt"),
        ("spec.code", ..., "spec.code"),
        ("spec.entry_point", ..., "spec.entry_point"),
        ("spec.entry_point", "../train.py", "relative path"),
        ("spec.entry_point", "/abs/train.py", "relative path"),
        ("run_id", "../other", "run_id"),
        ("run_id", "a/b", "run_id"),
        ("spec.data.0.name", "../up", "spec.data.0.name"),
        ("spec.args", ["ok", 3], "spec.args"),
    ],
)
def test_a_missing_or_bad_field_is_named_in_the_error(path, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_with(path, value))


def test_defaults_fill_in_optional_spec_fields():
    raw = copy.deepcopy(VALID)
    raw["spec"] = {"code": {"s3_uri": "s3://b/code/x.tar.gz"}, "entry_point": "t.py"}

    config = parse_config(raw)
    spec = config.spec

    assert (spec.args, spec.data, spec.environment) == ([], [], {})
    # A config written before images were chosen per type: AL2023's python3.
    assert (config.image.name, config.image.interpreter) == ("al2023", "python3")
    assert spec.hyperparameters_as_args is False


def test_given_no_interruption_policy_then_the_agent_checkpoints_on_rebalance_with_90_s_grace():
    spec = parse_config(copy.deepcopy(VALID)).spec

    assert spec.interruptions == InterruptionSettings(rebalance="checkpoint", grace_seconds=90.0)


def test_given_the_runspecs_interruption_policy_then_the_agent_keeps_what_it_acts_on():
    raw = _with(
        "spec.interruptions",
        {"max_interruptions": 3, "on_demand_after": 2, "rebalance": "migrate", "grace_seconds": 30},
    )

    assert parse_config(raw).spec.interruptions == InterruptionSettings("migrate", 30.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"rebalance": "ignore"}, "spec.interruptions.rebalance"),
        ({"grace_seconds": 0}, "grace_seconds"),
        ({"grace_seconds": True}, "grace_seconds"),
        ({"grace_seconds": "90"}, "grace_seconds"),
        ({"grace_seconds": float("nan")}, "grace_seconds"),
        ({"grace_seconds": float("inf")}, "grace_seconds"),
        ("checkpoint", "spec.interruptions must be an object"),
    ],
)
def test_given_a_bad_interruption_policy_then_the_config_is_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_with("spec.interruptions", value))


def test_the_checkpoints_kept_come_from_the_runspec_or_default_to_three():
    assert parse_config(VALID).spec.checkpoints_keep == 3
    assert parse_config(_with("spec.checkpoints", {"keep": 5})).spec.checkpoints_keep == 5


@pytest.mark.parametrize("value", [{"keep": 0}, {"keep": True}, {"keep": "3"}, [3]])
def test_a_bad_checkpoints_policy_is_refused(value):
    with pytest.raises(ConfigError, match=r"spec\.checkpoints"):
        parse_config(_with("spec.checkpoints", value))


def test_given_no_container_then_the_script_runs_on_the_instance():
    assert parse_config(copy.deepcopy(VALID)).container is None


def test_given_a_container_then_its_image_pull_policy_registry_and_interpreter_are_kept():
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    raw = _with(
        "container",
        {
            "image": f"{registry}/train:abc",
            "pull": "if-missing",
            "ecr_registry": registry,
            "interpreter": "/opt/conda/bin/python",
        },
    )

    assert parse_config(raw).container == ContainerSettings(
        f"{registry}/train:abc", "if-missing", registry, "/opt/conda/bin/python"
    )


def test_given_only_a_container_image_then_it_is_pulled_always_without_login_with_python3():
    container = parse_config(_with("container", {"image": "python:3.12"})).container

    assert container == ContainerSettings("python:3.12", "always", None, "python3")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("python:3.12", "container must be an object"),
        ({}, "container.image"),
        ({"image": 3}, "container.image"),
        ({"image": "--privileged"}, "container.image"),
        ({"image": "a b"}, "container.image"),
        ({"image": "x", "pull": "never"}, "container.pull"),
        ({"image": "x", "ecr_registry": 5}, "container.ecr_registry"),
        ({"image": "x", "ecr_registry": "-H"}, "container.ecr_registry"),
        ({"image": "x", "interpreter": ""}, "container.interpreter"),
    ],
)
def test_given_a_bad_container_then_the_config_is_refused_naming_the_field(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_with("container", value))

"""Command-line options become a RunSpec with typed hyperparameters and field-naming errors."""

from __future__ import annotations

import json

import pytest

from runctl.cli import app
from runctl.specs import SpecError, build_spec, parse_duration, parse_hyperparameter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr=0.01", ("lr", 0.01)),
        ("batch=64", ("batch", 64)),
        ("shuffle=true", ("shuffle", True)),
        ("shuffle=false", ("shuffle", False)),
        ("name=resnet 50", ("name", "resnet 50")),
        ('tag="1e3"', ("tag", "1e3")),
        ("expr=a=b", ("expr", "a=b")),
        ("empty=", ("empty", "")),
    ],
)
def test_hyperparameters_keep_their_types(text, expected):
    assert parse_hyperparameter(text) == expected
    assert type(parse_hyperparameter(text)[1]) is type(expected[1])


@pytest.mark.parametrize("text", ["lr", "=0.1", ""])
def test_hyperparameter_without_key_value_is_refused_with_an_example(text):
    with pytest.raises(SpecError, match="expected key=value"):
        parse_hyperparameter(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("6h", 21600), ("2d", 172800)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_says_how_to_write_one():
    with pytest.raises(SpecError, match="for example 6h"):
        parse_duration("six hours")


def test_build_spec_errors_name_the_field():
    with pytest.raises(SpecError, match=r"instance_types\.0"):
        build_spec(
            {
                "code": {"s3_uri": "s3://bucket/code/x.tar.gz"},
                "entry_point": "train.py",
                "instance_types": ["NOPE"],
            }
        )


def test_schema_command_prints_the_runspec_schema():
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "RunSpec"
    assert {"code", "entry_point"} <= set(schema["required"])

"""Command-line options become a RunSpec with typed hyperparameters and field-naming errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runctl.cli import app
from runctl.specs import (
    LocalData,
    S3Data,
    SpecError,
    build_spec,
    parse_data,
    parse_duration,
    parse_hyperparameter,
)


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


# --- --data: an s3:// URI, or (local mode) a local folder or file ---


@pytest.mark.parametrize(
    ("text", "name", "uri"),
    [
        ("s3://bkt/imagenet/", "imagenet", "s3://bkt/imagenet/"),
        ("s3://bkt/sets/train.csv", "train.csv", "s3://bkt/sets/train.csv"),
        ("img=s3://bkt/imagenet/", "img", "s3://bkt/imagenet/"),
        ("s3://bkt/k=v/", "k-v", "s3://bkt/k=v/"),
    ],
)
def test_given_an_s3_uri_then_it_is_s3_data_named_by_its_last_part(text, name, uri):
    assert parse_data(text) == S3Data(name=name, s3_uri=uri)


@pytest.mark.parametrize(
    ("text", "name", "relative"),
    [
        ("./ds", "ds", "ds"),
        ("ds/", "ds", "ds"),
        ("sets/train.csv", "train.csv", "sets/train.csv"),
        ("images=./ds", "images", "ds"),
        ("=./ds", "ds", "ds"),
        ("./a=b", "a-b", "a=b"),
        ("../up dir", "up-dir", "../up dir"),
    ],
)
def test_given_a_path_then_it_is_local_data_named_by_its_base_name(tmp_path, text, name, relative):
    # When a --data argument is a path (relative to the given base)
    item = parse_data(text, tmp_path / "here")

    # Then it is local data, named like an s3 URI's last part, with its absolute path
    assert item == LocalData(
        name=name, path=Path(os.path.normpath(tmp_path / "here" / relative)), argument=text
    )


def test_given_a_relative_path_without_base_then_it_is_from_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    item = parse_data("ds")
    assert isinstance(item, LocalData)
    assert item.path == tmp_path / "ds"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://example.com/x", "expected s3://bucket/key, a local folder"),
        ("s3://Bad_Bucket/x", "not a valid S3 URI"),
        ("bad name=s3://bkt/x/", "the name must be"),
        ("bad name=./ds", "the name must be"),
        ("ds=", "expected s3://bucket/key"),
    ],
)
def test_given_a_malformed_data_argument_then_the_error_names_the_flag(text, message):
    with pytest.raises(SpecError, match=message) as raised:
        parse_data(text)
    assert str(raised.value).startswith(f"--data {text!r}")

"""RunSpec: what is accepted as given, and what is refused with the offending field named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lambdas.models.run_spec import RunSpec, describe_validation_error, split_s3_uri

HOSTILE_STRINGS = [
    'it\'s "quoted"',
    "two words  and   spaces",
    "$(rm -rf /)",
    "`id`; echo pwned; exit 1",
    "line one\nline two\r\n",
    "--flag='a b' && true || false | cat > /tmp/x",
    "${HOME} $PATH ~root * ? [a]",
    "ünïcødé ✓",
]


def _problems(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        RunSpec.model_validate(spec)
    return describe_validation_error(caught.value)


def test_given_minimal_spec_when_validated_then_defaults_are_filled(minimal_spec):
    spec = RunSpec.model_validate(minimal_spec)

    assert spec.entry_point == "train.py"
    assert spec.args == []
    assert spec.instance_types is None  # the stack's default is applied by ValidateRun
    assert spec.market == "spot"
    assert spec.on_demand_fallback is True
    assert spec.image is None  # chosen per instance type at launch (lambdas/logic/images.py)
    assert spec.volume_gb == 100
    assert spec.limits.max_runtime_seconds == 24 * 3600
    assert spec.interpreter is None  # the image's Python


def test_given_full_spec_when_validated_then_every_field_is_kept():
    full = {
        "code": {"s3_uri": "s3://my-bucket/code/x.tgz", "sha256": "0" * 64},
        "entry_point": "src/train.py",
        "args": ["--epochs", "3"],
        "hyperparameters": {"lr": 0.001, "layers": 4, "amp": True, "optim": "adamw"},
        "hyperparameters_as_args": True,
        "environment": {"WANDB_MODE": "offline"},
        "interpreter": "/usr/bin/python3.11",
        "instance_types": ["g5.2xlarge", "p3.2xlarge"],
        "market": "on-demand",
        "on_demand_fallback": False,
        "image": "ami-0123456789abcdef0",
        "volume_gb": 500,
        "data": [
            {"s3_uri": "s3://data-bucket/imagenet/", "name": "imagenet"},
            {"s3_uri": "s3://data-bucket/labels.csv", "name": "labels"},
        ],
        "limits": {"max_runtime_seconds": 3600},
        "interruptions": {
            "max_interruptions": 3,
            "on_demand_after": 2,
            "rebalance": "migrate",
            "grace_seconds": 60,
            "signal_checkpoint": True,
        },
        "container": {
            "image": None,
            "build": {
                "context": {"s3_uri": "s3://my-bucket/contexts/c.tar.gz", "sha256": "1" * 64},
                "dockerfile": "docker/Dockerfile",
                "args": {"CUDA": "12.4"},
            },
        },
        "retries": {"max_retries": 2, "on_exit_codes": [137, 139]},
        "checkpoints": {"keep": 5},
        "experiment": "resnet-sweep_1",
        "source": {"git_commit": "0123456789abcdef", "git_dirty": True},
    }

    spec = RunSpec.model_validate(full)

    assert spec.model_dump(mode="json") == full


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"code": {"s3_uri": "https://bucket/code.tar.gz"}}, "code.s3_uri", "s3://"),
        ({"code": {"s3_uri": "s3://Upper_Case/code.tar.gz"}}, "code.s3_uri", "s3://"),
        ({"code": {"s3_uri": "s3://bucket/code.zip"}}, "code.s3_uri", ".tar.gz"),
        ({"code": {"s3_uri": "s3://bucket/c.tar.gz", "sha256": "xyz"}}, "code.sha256", "pattern"),
        ({"checkpoints": {"keep": 0}}, "checkpoints.keep", "greater than or equal to 1"),
        ({"checkpoints": {"keep": 21}}, "checkpoints.keep", "less than or equal to 20"),
        ({"entry_point": "/etc/passwd"}, "entry_point", "relative path"),
        ({"entry_point": "../outside.py"}, "entry_point", "'..'"),
        ({"entry_point": "src/../../outside.py"}, "entry_point", "'..'"),
        ({"entry_point": "~/train.py"}, "entry_point", "relative path"),
        ({"entry_point": ""}, "entry_point", "relative path"),
        ({"args": ["ok", "bad\x00arg"]}, "args.1", "NUL"),
        ({"hyperparameters": {"lr": "0.1\x00"}}, "hyperparameters.lr", "NUL"),
        ({"environment": {"X": "a\x00b"}}, "environment.X", "NUL"),
        ({"instance_types": ["m5.large", "M5 LARGE"]}, "instance_types.1", "pattern"),
        ({"instance_types": ["m5.large; reboot"]}, "instance_types.0", "pattern"),
        ({"instance_types": []}, "instance_types", "at least 1"),
        ({"gpu_count": 8}, "gpu_count", "Extra inputs are not permitted"),
        ({"code": {"s3_uri": "s3://bucket/c.tar.gz", "ref": "main"}}, "code.ref", "Extra inputs"),
        ({"environment": {"RUNCTL_RUN_ID": "x"}}, "environment", "reserved"),
        ({"environment": {"aws_secret_access_key": "x"}}, "environment", "reserved"),
        (
            {
                "data": [
                    {"s3_uri": "s3://data-bucket/x/", "name": "d"},
                    {"s3_uri": "s3://data-bucket/y/", "name": "d"},
                ]
            },
            "data",
            "unique",
        ),
        ({"data": [{"s3_uri": "s3://data-bucket/x/", "name": "../up"}]}, "data.0.name", "pattern"),
        ({"limits": {"max_runtime_seconds": 59}}, "limits.max_runtime_seconds", "60"),
        ({"image": "ubuntu"}, "image", "pattern"),
        ({"image": "ami-xyz"}, "image", "pattern"),
        ({"market": "reserved"}, "market", "'spot' or 'on-demand'"),
        ({"volume_gb": 4}, "volume_gb", "8"),
        ({"interpreter": "python3 -c evil"}, "interpreter", "pattern"),
    ],
)
def test_given_bad_field_when_validated_then_error_names_field(minimal_spec, change, field, words):
    problems = _problems({**minimal_spec, **change})

    assert problems.startswith(f"{field}: "), problems
    assert words in problems
    assert " at 0x" not in problems  # no validator reprs in what the user reads


def test_given_two_bad_fields_when_validated_then_each_is_named_once(minimal_spec):
    problems = _problems({**minimal_spec, "entry_point": "/abs.py", "volume_gb": 1})

    assert [line.split(":")[0] for line in problems.split("; ")] == ["entry_point", "volume_gb"]


def test_given_not_an_object_when_validated_then_error_names_the_runspec():
    assert _problems([1, 2]).startswith("(RunSpec): ")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", HOSTILE_STRINGS)
def test_given_shell_metacharacters_in_args_and_hparams_when_validated_then_kept_verbatim(
    minimal_spec, value
):
    spec = RunSpec.model_validate(
        {
            **minimal_spec,
            "args": [value, "--next"],
            "hyperparameters": {"note": value},
            "environment": {"NOTE": value},
        }
    )

    assert spec.args == [value, "--next"]
    assert spec.hyperparameters == {"note": value}
    assert spec.environment == {"NOTE": value}


def test_given_numeric_looking_string_hparam_when_validated_then_it_stays_a_string(minimal_spec):
    spec = RunSpec.model_validate(
        {**minimal_spec, "hyperparameters": {"a": "1", "b": 1, "c": 1.5, "d": True, "e": "true"}}
    )

    assert spec.hyperparameters == {"a": "1", "b": 1, "c": 1.5, "d": True, "e": "true"}
    assert [type(value) for value in spec.hyperparameters.values()] == [str, int, float, bool, str]


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/code/x.tar.gz\n", "s3://bucket/code/x.tar.gz\nrm -rf /"],
)
def test_given_s3_uri_with_newline_when_validated_then_refused(minimal_spec, uri):
    problems = _problems({**minimal_spec, "data": [{"s3_uri": uri, "name": "d"}]})

    assert problems.startswith("data.0.s3_uri: must look like s3://bucket/key")


def test_given_s3_uri_when_split_then_bucket_and_key_come_back():
    assert split_s3_uri("s3://my.bucket-1/a/b/c.tar.gz") == ("my.bucket-1", "a/b/c.tar.gz")
    assert split_s3_uri("s3://bucket/") == ("bucket", "")
    with pytest.raises(ValueError, match="not an s3:// URI"):
        split_s3_uri("s3://bucket")


def test_given_script_retries_over_twenty_when_validated_then_refused_naming_the_field(
    minimal_spec,
):
    # Each retry is another attempt on the run item (400 KB: docs/architecture.md, "Payload
    # limits"); tests/integration/lambdas/test_runs_table_item_size.py holds the cap there
    at_cap = RunSpec.model_validate({**minimal_spec, "retries": {"max_retries": 20}})
    problems = _problems({**minimal_spec, "retries": {"max_retries": 21}})

    assert at_cap.retries.max_retries == 20
    assert problems.startswith("retries.max_retries: "), problems
    assert "20" in problems

"""RunSpec size bounds: a spec that could push a TrainRun or Sweep state past Step Functions'
256 KiB is refused, on the client and by ValidateRun, with the field named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lambdas.errors import RunSpecInvalid
from lambdas.logic.validation import validate_run
from lambdas.models.bounds import json_size
from lambdas.models.run_spec import (
    MAX_ARGS,
    MAX_ARGS_JSON_BYTES,
    MAX_ENVIRONMENT_JSON_BYTES,
    MAX_ENVIRONMENT_VARIABLES,
    MAX_HYPERPARAMETERS,
    MAX_HYPERPARAMETERS_JSON_BYTES,
    MAX_S3_URI_CHARS,
    MAX_SPEC_JSON_BYTES,
    RunSpec,
    describe_validation_error,
)
from lambdas.models.steps import RunContext, ValidateInput
from runctl.specs import SpecError, build_spec
from tests.largest_payloads import QUOTE, largest_spec, spec_size, strings_filling

BUCKET = "runctl-bucket"
CODE = {"s3_uri": f"s3://{BUCKET}/code/" + "a" * 64 + ".tar.gz"}
DATA_PREFIX = f"s3://{BUCKET}/data/"
# 20 instance type names of 40 characters: the most ValidateRun's default may fill in.
LONGEST_INSTANCE_TYPES = [f"{'x' * 30}{index:02d}.xlarge" for index in range(20)]


def data_entry(index: int, uri_chars: int) -> dict[str, str]:
    return {"s3_uri": DATA_PREFIX + "k" * (uri_chars - len(DATA_PREFIX)), "name": f"d{index:02d}"}


@pytest.fixture
def largest() -> dict[str, Any]:
    return largest_spec({"code": CODE, "entry_point": "train.py"}, data_entry, len(DATA_PREFIX) + 1)


def problems(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        RunSpec.model_validate(spec)
    return describe_validation_error(caught.value)


def test_the_largest_spec_is_accepted_and_at_every_cap(largest):
    # Given args, environment and hyperparameters at their byte caps and data filling the rest
    spec = RunSpec.model_validate(largest)

    # Then each field and the whole spec are exactly at their caps
    assert json_size(spec.args) == MAX_ARGS_JSON_BYTES
    assert json_size(spec.environment) == MAX_ENVIRONMENT_JSON_BYTES
    assert json_size(spec.hyperparameters) == MAX_HYPERPARAMETERS_JSON_BYTES
    assert spec_size(largest) == MAX_SPEC_JSON_BYTES


@pytest.mark.parametrize(
    ("field", "cap"),
    [
        ("args", MAX_ARGS_JSON_BYTES),
        ("environment", MAX_ENVIRONMENT_JSON_BYTES),
        ("hyperparameters", MAX_HYPERPARAMETERS_JSON_BYTES),
    ],
)
def test_a_field_one_byte_over_its_cap_is_refused_naming_it(field, cap):
    # Given the field's values one byte over its cap (escaped quotes count twice)
    names = [f"N{index:02d}" for index in range(4)]

    def shaped(values: list[str]) -> Any:
        return values if field == "args" else dict(zip(names, values, strict=True))

    over = shaped(strings_filling(cap + 1, 4, shaped))
    spec = {"code": CODE, "entry_point": "train.py", field: over}

    # Then the spec is refused, naming the field and both sizes
    assert problems(spec) == (
        f"{field}: takes {cap + 1:,} bytes as JSON, more than the {cap:,} allowed: fewer or "
        "shorter values"
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("args", ["a"] * (MAX_ARGS + 1), f"args: List should have at most {MAX_ARGS} items"),
        (
            "environment",
            {f"V{index}": "" for index in range(MAX_ENVIRONMENT_VARIABLES + 1)},
            f"environment: Dictionary should have at most {MAX_ENVIRONMENT_VARIABLES} items",
        ),
        (
            "hyperparameters",
            {f"h{index}": 1 for index in range(MAX_HYPERPARAMETERS + 1)},
            f"hyperparameters: Dictionary should have at most {MAX_HYPERPARAMETERS} items",
        ),
    ],
)
def test_too_many_values_are_refused_naming_the_field(field, value, expected):
    spec = {"code": CODE, "entry_point": "train.py", field: value}

    assert problems(spec).startswith(expected)


def test_a_spec_one_byte_over_the_whole_cap_is_refused_naming_its_largest_fields(largest):
    # Given the largest spec, one byte longer (its last data entry's URI)
    largest["data"][-1]["s3_uri"] += "k"

    # Then it is refused as a whole, and the message says which fields take the room
    message = problems(largest)
    assert message.startswith(
        f"(RunSpec): takes {MAX_SPEC_JSON_BYTES + 1:,} bytes as JSON, more than the "
        f"{MAX_SPEC_JSON_BYTES:,} a RunSpec may take (largest fields, in bytes: "
    )
    largest_fields = message.partition("largest fields, in bytes: ")[2]
    assert largest_fields == "hyperparameters 16,384, environment 16,384, args 16,384)"


def test_an_s3_uri_longer_than_s3_allows_is_refused():
    spec = {"code": CODE, "entry_point": "t.py", "data": [data_entry(0, MAX_S3_URI_CHARS + 1)]}

    assert problems(spec) == (
        f"data.0.s3_uri: String should have at most {MAX_S3_URI_CHARS} characters"
    )


def test_the_default_instance_types_do_not_push_an_accepted_spec_over(largest):
    # Given the largest spec, accepted without instance types
    spec = RunSpec.model_validate(largest)

    # When ValidateRun fills in the longest default list and a later step parses the RunContext
    filled = spec.model_copy(update={"instance_types": LONGEST_INSTANCE_TYPES})
    context = RunContext(
        run_id="run-1", execution_arn="arn", spec=filled, train_timeout_seconds=600
    ).model_dump(mode="json")

    # Then it is still a valid RunContext (instance_types are bounded apart)
    assert RunContext.model_validate(context).spec.instance_types == LONGEST_INSTANCE_TYPES


def test_validate_run_refuses_a_spec_over_a_cap_before_any_aws_call():
    # Given args over their cap (validate_run would touch S3 and EC2 only after the model)
    spec = {"code": CODE, "entry_point": "train.py", "args": [QUOTE * MAX_ARGS_JSON_BYTES]}

    # Then ValidateRun fails with RunSpecInvalid naming the field
    with pytest.raises(RunSpecInvalid) as caught:
        validate_run(
            ValidateInput(spec=spec, run_id="run-1", execution_arn="arn"), None, None, None
        )  # type: ignore[arg-type]

    assert str(caught.value).startswith("RunSpec is invalid: args: takes ")


def test_the_client_refuses_a_spec_over_a_cap_naming_the_field():
    fields = {"code": CODE, "entry_point": "train.py", "environment": {"X": "y" * 20_000}}

    with pytest.raises(SpecError) as caught:
        build_spec(fields)

    assert str(caught.value).startswith("invalid run: environment.X: String should have at most")

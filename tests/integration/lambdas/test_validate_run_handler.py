"""ValidateRun handler: parses the step input, fails bad specs, returns the RunContext."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lambdas.errors import RunSpecInvalid
from lambdas.handlers import validate_run

BUCKET = "runctl-test-bucket"
CODE_URI = f"s3://{BUCKET}/code/" + "c" * 64 + ".tar.gz"
ARN = "arn:aws:states:us-east-1:123456789012:execution:TrainRun:run-42"


def _event(spec, run_id: str = "run-42") -> dict:
    return {
        "spec": spec,
        "run_id": run_id,
        "execution_arn": ARN,
        "started_at": "2026-11-23T12:00:00.000Z",
    }


def test_given_good_spec_when_validated_then_run_context_with_defaults_is_returned(
    invoke, lambda_environment
):
    result = invoke(validate_run, _event({"code": {"s3_uri": CODE_URI}, "entry_point": "t.py"}))

    assert result["run_id"] == "run-42"
    assert result["execution_arn"] == ARN
    assert result["attempt"] == 1
    assert result["spec"]["instance_types"] == ["g5.xlarge", "g4dn.xlarge"]
    assert result["spec"]["code"] == {"s3_uri": CODE_URI, "sha256": None}
    assert result["train_timeout_seconds"] == 24 * 3600 + 600


def test_given_bad_spec_when_validated_then_run_spec_invalid_names_the_field(
    invoke, lambda_environment
):
    spec = {"code": {"s3_uri": CODE_URI}, "entry_point": "../escape.py"}

    with pytest.raises(RunSpecInvalid, match=r"RunSpec is invalid: entry_point: "):
        invoke(validate_run, _event(spec))


def test_given_code_that_is_not_uploaded_when_validated_then_run_spec_invalid(
    invoke, lambda_environment
):
    spec = {"code": {"s3_uri": f"s3://{BUCKET}/code/missing.tar.gz"}, "entry_point": "t.py"}

    with pytest.raises(RunSpecInvalid, match=r"^code\.s3_uri: cannot read"):
        invoke(validate_run, _event(spec))


def test_given_bad_execution_name_when_validated_then_run_spec_invalid(invoke, lambda_environment):
    spec = {"code": {"s3_uri": CODE_URI}, "entry_point": "t.py"}

    with pytest.raises(RunSpecInvalid, match="run id"):
        invoke(validate_run, _event(spec, run_id="run 42"))


def test_given_event_without_run_id_when_invoked_then_parsing_fails(invoke, lambda_environment):
    with pytest.raises(ValidationError, match="run_id"):
        invoke(validate_run, {"spec": {}, "execution_arn": ARN})

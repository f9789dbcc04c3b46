"""validate_run: the run id, the shape of the input, defaults from the environment, S3 checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.errors import RunSpecInvalid
from lambdas.logic.validation import TRAIN_TIMEOUT_MARGIN_SECONDS, validate_run
from lambdas.models.steps import ValidateInput

BUCKET = "runctl-bucket"
CODE_KEY = "code/" + "a" * 64 + ".tar.gz"
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:TrainRun:run-1"


@pytest.fixture(scope="module")
def boto3_session() -> boto3.session.Session:
    return boto3.session.Session()


@pytest.fixture
def moto_backend(boto3_session: boto3.session.Session) -> Iterator[None]:
    with mock_aws():
        boto3.DEFAULT_SESSION = boto3_session  # reuse parsed service models (mock_aws drops it)
        yield


@pytest.fixture
def s3(moto_backend: None) -> Any:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=CODE_KEY, Body=b"archive")
    client.put_object(Bucket=BUCKET, Key="data/train/part-0.csv", Body=b"x,y\n")
    return client


# For checks that must fail before AWS is asked anything: touching them raises AttributeError.
NO_S3: Any = None
NO_EC2: Any = None


@pytest.fixture
def ec2(moto_backend: None) -> Any:
    return boto3.client("ec2", region_name="us-east-1")


def _request(spec: Any, run_id: str = "run-1") -> ValidateInput:
    return ValidateInput(spec=spec, run_id=run_id, execution_arn=EXECUTION_ARN)


@pytest.mark.parametrize(
    "run_id",
    ["", "-leading-dash", "has space", "dots.not.allowed", "slash/x", "x" * 81, "run-1\n"],
)
def test_given_bad_run_id_when_validated_then_run_spec_invalid_names_run_id(
    run_id, minimal_spec, env
):
    with pytest.raises(RunSpecInvalid, match=r"^run id \(execution name\)"):
        validate_run(_request(minimal_spec, run_id=run_id), env, NO_S3, NO_EC2)


@pytest.mark.parametrize("spec", [None, "a string", ["list"], 42])
def test_given_input_not_an_object_when_validated_then_run_spec_invalid(spec, env):
    with pytest.raises(RunSpecInvalid, match="must be a RunSpec JSON object"):
        validate_run(_request(spec), env, NO_S3, NO_EC2)


def test_given_invalid_spec_when_validated_then_cause_names_the_field(minimal_spec, env):
    with pytest.raises(RunSpecInvalid) as caught:
        validate_run(_request({**minimal_spec, "volume_gb": 2}), env, NO_S3, NO_EC2)

    assert str(caught.value).startswith("RunSpec is invalid: volume_gb: ")


def test_given_no_instance_types_when_validated_then_stack_defaults_are_used(
    minimal_spec, env, s3, ec2
):
    run = validate_run(_request(minimal_spec), env, s3, ec2)

    assert run.spec.instance_types == ["g5.xlarge", "g4dn.xlarge"]
    assert run.run_id == "run-1"
    assert run.execution_arn == EXECUTION_ARN
    assert run.attempt == 1
    assert run.train_timeout_seconds == 24 * 3600 + TRAIN_TIMEOUT_MARGIN_SECONDS


def test_given_instance_types_when_validated_then_they_win_over_defaults(
    minimal_spec, env, s3, ec2
):
    spec = {
        **minimal_spec,
        "instance_types": ["p4d.24xlarge"],
        "limits": {"max_runtime_seconds": 60},
    }

    run = validate_run(_request(spec), env, s3, ec2)

    assert run.spec.instance_types == ["p4d.24xlarge"]
    assert run.train_timeout_seconds == 60 + TRAIN_TIMEOUT_MARGIN_SECONDS


def test_given_missing_code_object_when_validated_then_cause_names_code_uri(
    minimal_spec, env, s3, ec2
):
    spec = {**minimal_spec, "code": {"s3_uri": f"s3://{BUCKET}/code/missing.tar.gz"}}

    with pytest.raises(RunSpecInvalid, match=r"^code\.s3_uri: cannot read .*missing\.tar\.gz"):
        validate_run(_request(spec), env, s3, ec2)


def test_given_code_in_missing_bucket_when_validated_then_cause_names_code_uri(
    minimal_spec, env, s3, ec2
):
    spec = {**minimal_spec, "code": {"s3_uri": "s3://no-such-bucket/code/x.tar.gz"}}

    with pytest.raises(RunSpecInvalid, match=r"^code\.s3_uri: "):
        validate_run(_request(spec), env, s3, ec2)


def test_given_empty_data_prefix_when_validated_then_cause_names_data_0(minimal_spec, env, s3, ec2):
    spec = {**minimal_spec, "data": [{"s3_uri": f"s3://{BUCKET}/data/none/", "name": "none"}]}

    with pytest.raises(RunSpecInvalid) as caught:
        validate_run(_request(spec), env, s3, ec2)

    assert str(caught.value) == f"data.0.s3_uri: no objects under s3://{BUCKET}/data/none/"


def test_given_second_data_prefix_empty_when_validated_then_cause_names_that_entry(
    minimal_spec, env, s3, ec2
):
    spec = {
        **minimal_spec,
        "data": [
            {"s3_uri": f"s3://{BUCKET}/data/train/", "name": "train"},
            {"s3_uri": f"s3://{BUCKET}/data/empty/", "name": "empty"},
        ],
    }

    with pytest.raises(RunSpecInvalid, match=r"^data\.1\.s3_uri: no objects under .*data/empty/"):
        validate_run(_request(spec), env, s3, ec2)


def test_given_data_in_missing_bucket_when_validated_then_cause_names_data_entry(
    minimal_spec, env, s3, ec2
):
    spec = {**minimal_spec, "data": [{"s3_uri": "s3://no-such-bucket/x/", "name": "x"}]}

    with pytest.raises(RunSpecInvalid, match=r"^data\.0\.s3_uri: cannot list .*NoSuchBucket"):
        validate_run(_request(spec), env, s3, ec2)


def test_given_existing_code_and_data_when_validated_then_spec_is_normalized(
    minimal_spec, env, s3, ec2
):
    spec = {**minimal_spec, "data": [{"s3_uri": f"s3://{BUCKET}/data/train/", "name": "train"}]}

    run = validate_run(_request(spec), env, s3, ec2)

    assert run.spec.data[0].name == "train"
    assert run.spec.code.s3_uri == f"s3://{BUCKET}/{CODE_KEY}"


def test_given_unknown_instance_type_when_validated_then_refused_naming_the_field(
    minimal_spec, env, s3, ec2
):
    spec = {**minimal_spec, "instance_types": ["g5.xlarge", "zz.fake"]}

    with pytest.raises(RunSpecInvalid) as caught:
        validate_run(_request(spec), env, s3, ec2)

    assert str(caught.value).startswith("instance_types.1: unknown instance type 'zz.fake'")


def test_given_dlami_on_a_cpu_instance_type_when_validated_then_refused_naming_image(
    minimal_spec, env, s3, ec2
):
    spec = {**minimal_spec, "image": "dlami-pytorch", "instance_types": ["g5.xlarge", "m5.large"]}

    with pytest.raises(RunSpecInvalid) as caught:
        validate_run(_request(spec), env, s3, ec2)

    message = str(caught.value)
    assert message.startswith("image: image 'dlami-pytorch' needs an NVIDIA GPU instance type")
    assert message.endswith("(instance_types.1)")


def test_given_an_arm64_ami_on_an_x86_type_when_validated_then_refused(minimal_spec, env, s3, ec2):
    # moto's register_image drops Architecture: take one of its own Amazon arm64 AMIs.
    arm_ami = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["arm64"]}]
    )["Images"][0]["ImageId"]
    spec = {**minimal_spec, "image": arm_ami, "instance_types": ["c7g.large", "m5.large"]}

    with pytest.raises(
        RunSpecInvalid, match=r"^image: AMI ami-\w+ is built for arm64 and m5\.large"
    ):
        validate_run(_request(spec), env, s3, ec2)


def test_given_no_image_on_mixed_types_when_validated_then_accepted(minimal_spec, env, s3, ec2):
    spec = {**minimal_spec, "instance_types": ["g5.xlarge", "c7g.large"]}

    run = validate_run(_request(spec), env, s3, ec2)

    assert run.spec.image is None  # each type gets its own at launch

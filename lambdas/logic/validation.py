"""ValidateRun: turn the raw input into a RunContext, or say exactly what is wrong."""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from lambdas.env import LambdaEnv
from lambdas.errors import RunSpecInvalid
from lambdas.integrations.instance_types import (
    UnknownInstanceTypes,
    ami_architecture,
    describe_instance_types,
)
from lambdas.logic.containers import container_problem
from lambdas.logic.images import InstanceTypeInfo, incompatibility, is_ami_id
from lambdas.models.run_spec import RunSpec, describe_validation_error, split_s3_uri
from lambdas.models.steps import RunContext, ValidateInput

# Step Functions execution names allow more, but the run id also names S3 keys, log streams and
# tags, so keep it to a portable alphabet (\Z: Python's $ would let a trailing newline through).
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}\Z")
# Margin for staging and the final uploads on top of the script's own max runtime.
TRAIN_TIMEOUT_MARGIN_SECONDS = 600


def validate_run(request: ValidateInput, env: LambdaEnv, s3: Any, ec2: Any) -> RunContext:
    if not RUN_ID_PATTERN.match(request.run_id):
        raise RunSpecInvalid(
            f"run id (execution name) {request.run_id!r} must be 1-80 letters, digits, '-' or '_'"
        )
    if not isinstance(request.spec, dict):
        raise RunSpecInvalid("the execution input must be a RunSpec JSON object")
    try:
        spec = RunSpec.model_validate(request.spec)
    except ValidationError as error:
        raise RunSpecInvalid(f"RunSpec is invalid: {describe_validation_error(error)}") from error
    if spec.instance_types is None:
        spec = spec.model_copy(update={"instance_types": list(env.DEFAULT_INSTANCE_TYPES)})
    infos = _check_instance_types_and_image(spec, ec2)
    problem = container_problem(spec, env, infos)
    if problem:
        raise RunSpecInvalid(problem)
    _check_code_exists(spec, s3)
    if spec.container is not None and spec.container.build is not None:
        _check_object("container.build.context.s3_uri", spec.container.build.context.s3_uri, s3)
    _check_data_exists(spec, s3)
    return RunContext(
        run_id=request.run_id,
        execution_arn=request.execution_arn,
        attempt=1,
        spec=spec,
        train_timeout_seconds=spec.limits.max_runtime_seconds + TRAIN_TIMEOUT_MARGIN_SECONDS,
    )


def _check_code_exists(spec: RunSpec, s3: Any) -> None:
    _check_object("code.s3_uri", spec.code.s3_uri, s3)


def _check_object(field: str, uri: str, s3: Any) -> None:
    bucket, key = split_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        reason = "no such object" if code in {"404", "NoSuchKey", "NotFound"} else code
        raise RunSpecInvalid(f"{field}: cannot read {uri} ({reason})") from error


def _check_data_exists(spec: RunSpec, s3: Any) -> None:
    for index, item in enumerate(spec.data):
        bucket, key = split_s3_uri(item.s3_uri)
        try:
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            raise RunSpecInvalid(
                f"data.{index}.s3_uri: cannot list {item.s3_uri} ({code})"
            ) from error
        if not listed.get("KeyCount"):
            raise RunSpecInvalid(f"data.{index}.s3_uri: no objects under {item.s3_uri}")


def _check_instance_types_and_image(spec: RunSpec, ec2: Any) -> dict[str, InstanceTypeInfo]:
    """Every instance type exists here, and the image suits each (before anything is created);
    the types' facts."""
    names = list(spec.instance_types or [])
    try:
        infos = describe_instance_types(ec2, names)
    except UnknownInstanceTypes as error:
        field = f"instance_types.{names.index(error.names[0])}"
        unknown = ", ".join(repr(name) for name in error.names)
        raise RunSpecInvalid(
            f"{field}: unknown instance type {unknown} (EC2 does not offer it in this region)"
        ) from error
    ami_arch = _ami_architecture(spec.image, ec2) if spec.image and is_ami_id(spec.image) else None
    for index, name in enumerate(names):
        problem = incompatibility(spec.image, infos[name], ami_arch)
        if problem:
            raise RunSpecInvalid(f"image: {problem} (instance_types.{index})")
    return infos


def _ami_architecture(image_id: str, ec2: Any) -> str | None:
    try:
        return ami_architecture(ec2, image_id)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        raise RunSpecInvalid(f"image: cannot use AMI {image_id} ({code})") from error

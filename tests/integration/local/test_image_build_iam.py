"""With IAM enforced, image builds are held to the stack's policies on both sides: the BuildImage
Lambda to its role (find an image, start and follow a build, read its log), and each local build
to the CodeBuild project's role (read the context, write the log, log in to ECR and push), as on
AWS. A grant missing from stacks/ fails here instead of in the first real build."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.integrations.aws_clients import aws_client
from runctl.local.deploy import LocalSettings
from runctl.local.iam.enforcer import acting_as
from runctl.local.iam.policy import Request
from runctl.local.iam.requests import Call, authorizations
from runctl.local.session import LocalSession
from tests.integration.local.image_build_support import (
    BASE_IMAGE,
    BUILD_TIMEOUT_SECONDS,
    context_archive,
    docker,
    require_docker_engine,
)

BUILD_IMAGE = "lambdas.handlers.build_image.lambda_handler"
LAUNCH = "lambdas.handlers.launch_instance.lambda_handler"
ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSession]:
    require_docker_engine()
    with LocalSession(tmp_path_factory.mktemp("iam"), LocalSettings(enforce_iam=True)) as session:
        yield session


def start_build(session: LocalSession, context_key: str, image_uri: str) -> dict[str, Any]:
    """StartBuild as BuildImage makes it (lambdas/integrations/image_builds.py)."""
    variables = {
        "RUNCTL_CONTEXT_URI": f"s3://{session.stack.bucket}/{context_key}",
        "RUNCTL_DOCKERFILE": "Dockerfile",
        "RUNCTL_BUILD_ARGS": "{}",
        "RUNCTL_IMAGE_URI": image_uri,
    }
    build: dict[str, Any] = aws_client("codebuild").start_build(
        projectName=session.stack.build_project,
        idempotencyToken=f"runctl-{uuid.uuid4().hex}",
        environmentVariablesOverride=[
            {"name": name, "value": value, "type": "PLAINTEXT"} for name, value in variables.items()
        ],
        logsConfigOverride={
            "cloudWatchLogs": {
                "status": "ENABLED",
                "groupName": session.stack.log_group,
                "streamName": "run-iam/build",
            }
        },
    )["build"]
    return build


def wait_for_build(build_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        (build,) = aws_client("codebuild").batch_get_builds(ids=[build_id])["builds"]
        if build["buildStatus"] != "IN_PROGRESS":
            return dict(build)
        time.sleep(0.2)
    raise AssertionError(f"build {build_id} still IN_PROGRESS after {BUILD_TIMEOUT_SECONDS} s")


def last_log_lines(build: dict[str, Any]) -> list[str]:
    events = aws_client("logs").get_log_events(
        logGroupName=build["logs"]["groupName"],
        logStreamName=build["logs"]["streamName"],
        startFromHead=False,
        limit=5,
    )["events"]
    return [event["message"] for event in events]


def test_build_image_finds_images_and_starts_follows_and_reads_a_build(session: LocalSession):
    # Given a build context uploaded by the client (content-addressed, under contexts/)
    key = f"contexts/{uuid.uuid4().hex}.tar.gz"
    dockerfile = f"FROM {BASE_IMAGE}\nRUN echo built-under-iam\n"
    session.s3.put_object(
        Bucket=session.stack.bucket, Key=key, Body=context_archive({"Dockerfile": dockerfile})
    )
    tag = f"iam-{uuid.uuid4().hex[:12]}"
    image_uri = f"{session.stack.image_repository_uri}:{tag}"
    assert session.iam is not None
    denied_before = len(session.iam.denied)

    try:
        with acting_as(BUILD_IMAGE):
            ecr = aws_client("ecr")
            # When BuildImage looks for the image, starts the build and follows it
            with pytest.raises(ecr.exceptions.ImageNotFoundException):
                ecr.describe_images(
                    repositoryName=session.stack.image_repository, imageIds=[{"imageTag": tag}]
                )
            build = wait_for_build(start_build(session, key, image_uri)["id"])
            lines = last_log_lines(build)
            found = ecr.describe_images(
                repositoryName=session.stack.image_repository, imageIds=[{"imageTag": tag}]
            )["imageDetails"]
    finally:
        docker("rmi", "--force", image_uri)

    # Then every call was allowed: BuildImage's and the build's (as the project's role)
    assert build["buildStatus"] == "SUCCEEDED", lines
    assert found[0]["imageDigest"].startswith("sha256:")
    assert session.iam.denied[denied_before:] == []


def test_a_build_reads_only_what_the_project_role_allows(session: LocalSession):
    # Given a context outside contexts/, where the project's role may not read
    key = f"code/{uuid.uuid4().hex}.tar.gz"
    session.s3.put_object(
        Bucket=session.stack.bucket,
        Key=key,
        Body=context_archive({"Dockerfile": f"FROM {BASE_IMAGE}\n"}),
    )

    with acting_as(BUILD_IMAGE):
        build = wait_for_build(
            start_build(session, key, f"{session.stack.image_repository_uri}:x")["id"]
        )
        lines = last_log_lines(build)

    assert build["buildStatus"] == "FAILED"
    assert "cannot download the build context" in lines[-1] and "403" in lines[-1]


def test_other_lambdas_may_not_build_images(session: LocalSession):
    with acting_as(LAUNCH):
        codebuild, ecr = aws_client("codebuild"), aws_client("ecr")
        with pytest.raises(codebuild.exceptions.ClientError) as started:
            codebuild.start_build(projectName=session.stack.build_project)
        with pytest.raises(ecr.exceptions.ClientError) as described:
            ecr.describe_images(repositoryName=session.stack.image_repository)

    assert started.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "codebuild:StartBuild" in started.value.response["Error"]["Message"]
    assert described.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ecr:DescribeImages" in described.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "build_id",
    [
        "runctl-local-image-build:0f1e2d3c-aaaa-bbbb-cccc-000000000000",
        f"arn:aws:codebuild:{REGION}:{ACCOUNT}:build/runctl-local-image-build:0f1e2d3c-aaaa",
    ],
)
def test_batch_get_builds_is_authorized_on_the_builds_project(build_id: str):
    call = Call("codebuild", "BatchGetBuilds", {"ids": [build_id]}, ACCOUNT, REGION)

    (request,) = authorizations(call, lookup=None)  # type: ignore[arg-type]

    project = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/runctl-local-image-build"
    assert (request.action, request.resource) == ("codebuild:BatchGetBuilds", project)


def test_ecr_calls_are_authorized_on_the_repository_they_name():
    def needed(operation: str, **params: Any) -> list[tuple[str, str]]:
        found: list[Request] = (
            authorizations(
                Call("ecr", operation, params, ACCOUNT, REGION),
                lookup=None,  # type: ignore[arg-type]
            )
            or []
        )
        return [(item.action, item.resource) for item in found]

    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/pytorch"
    assert needed("DescribeImages", repositoryName="team/pytorch") == [
        ("ecr:DescribeImages", repository)
    ]
    assert needed("PutImage", repositoryName="team/pytorch", imageManifest=json.dumps({})) == [
        ("ecr:PutImage", repository)
    ]
    assert needed("GetAuthorizationToken") == [("ecr:GetAuthorizationToken", "*")]

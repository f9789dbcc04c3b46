"""BuildImage against moto (ECR, CodeBuild, CloudWatch Logs, the runs table): an image already
built is not built again, a missing one is built once and polled, a failed build ends the run
with its last log lines, and a stop request is honoured before anything is started."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from lambdas.errors import ImageBuildFailed, RunStopped
from lambdas.handlers import build_image
from lambdas.models.run_spec import RunSpec

REPOSITORY = "runctl-images"
PROJECT = "runctl-image-build"
LOG_GROUP = "/runctl/runs"
CONTEXT = {"s3_uri": "s3://runctl-test-bucket/contexts/" + "d" * 64 + ".tar.gz", "sha256": "d" * 64}
BUILD = {"context": CONTEXT, "dockerfile": "docker/Dockerfile", "args": {"Q": "$(id) 'a b'"}}


@pytest.fixture
def image_stack(
    aws: Any, lambda_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> str:
    uri = aws.ecr.create_repository(repositoryName=REPOSITORY, imageTagMutability="IMMUTABLE")[
        "repository"
    ]["repositoryUri"]
    aws.codebuild.create_project(
        name=PROJECT,
        # moto 5.2.5 wants a location even for NO_SOURCE (AWS does not).
        source={"type": "NO_SOURCE", "buildspec": "version: 0.2", "location": "none"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
            "privilegedMode": True,
        },
        serviceRole="arn:aws:iam::123456789012:role/build",
    )
    aws.logs.create_log_group(logGroupName=LOG_GROUP)
    for name, value in {
        "IMAGE_REPOSITORY_NAME": REPOSITORY,
        "IMAGE_REPOSITORY_URI": uri,
        "BUILD_PROJECT_NAME": PROJECT,
    }.items():
        monkeypatch.setenv(name, value)
    return str(uri)


def _push(aws: Any, tag: str) -> str:
    """What the build's `docker push` leaves in the repository."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "e" * 64, "size": 1, "mediaType": "x"},
        "layers": [],
    }
    image = aws.ecr.put_image(
        repositoryName=REPOSITORY, imageManifest=json.dumps(manifest), imageTag=tag
    )["image"]
    return str(image["imageId"]["imageDigest"])


def _tag(run: dict[str, Any]) -> str:
    return RunSpec.model_validate(run["spec"]).container.build.tag  # type: ignore[union-attr]


def test_an_image_built_before_is_ready_at_once_and_no_build_starts(
    aws, invoke, image_stack, make_run_context, record, read_record, clock
):
    run = record(make_run_context(container={"build": BUILD}))
    digest = _push(aws, _tag(run))

    probe = invoke(build_image, {"run": run, "build": None, "poll_seconds": 10})

    assert probe["ready"] is True
    assert probe["image_uri"] == f"{image_stack}:{_tag(run)}"
    assert probe["digest"] == digest
    assert probe["build_id"] is None
    assert aws.codebuild.list_builds_for_project(projectName=PROJECT)["ids"] == []
    assert read_record("run-1")["image"] == {
        "uri": probe["image_uri"],
        "digest": digest,
        "build_id": None,
    }


class _RecordedBuilds:
    """The moto CodeBuild client, keeping each StartBuild request (moto's build keeps no
    environment overrides)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def start_build(self, **request: Any) -> Any:
        self.requests.append(request)
        return self._real.start_build(**request)


def test_a_missing_image_is_built_once_with_the_build_inputs_then_polled_until_pushed(
    aws, invoke, image_stack, make_run_context, record, read_record, client_overrides, clock
):
    run = record(make_run_context(container={"build": BUILD}))
    tag = _tag(run)
    builds = client_overrides.by_service["codebuild"] = _RecordedBuilds(aws.codebuild)

    started = invoke(build_image, {"run": run, "build": None, "poll_seconds": 10})

    assert started["ready"] is False and started["build_id"]
    assert started["wait_seconds"] == 10
    [request] = builds.requests
    assert request["projectName"] == PROJECT
    assert request["idempotencyToken"] == f"runctl-{tag[:48]}"
    assert request["logsConfigOverride"]["cloudWatchLogs"] == {
        "status": "ENABLED",
        "groupName": LOG_GROUP,
        "streamName": f"builds/{tag}",
    }
    env = {item["name"]: item["value"] for item in request["environmentVariablesOverride"]}
    assert env["RUNCTL_CONTEXT_URI"] == CONTEXT["s3_uri"]
    assert env["RUNCTL_DOCKERFILE"] == "docker/Dockerfile"
    assert json.loads(env["RUNCTL_BUILD_ARGS"]) == {"Q": "$(id) 'a b'"}  # verbatim, as JSON
    assert env["RUNCTL_IMAGE_URI"] == f"{image_stack}:{tag}"
    assert read_record("run-1")["image"]["build_id"] == started["build_id"]

    digest = _push(aws, tag)  # the build pushed its image
    ready = invoke(build_image, {"run": run, "build": started, "poll_seconds": 10})

    assert ready["ready"] is True and ready["digest"] == digest
    assert ready["build_id"] == started["build_id"]
    assert aws.codebuild.list_builds_for_project(projectName=PROJECT)["ids"] == [
        started["build_id"]
    ]


class _FailedBuilds:
    """CodeBuild answering that the build failed (moto reports every build SUCCEEDED)."""

    def __init__(self, real: Any, stream: str) -> None:
        self._real = real
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def batch_get_builds(self, ids: list[str]) -> dict[str, Any]:
        builds = self._real.batch_get_builds(ids=ids)["builds"]
        for build in builds:
            build.update(
                buildStatus="FAILED",
                currentPhase="BUILD",
                logs={"groupName": LOG_GROUP, "streamName": self._stream},
            )
        return {"builds": builds}


def test_a_failed_build_ends_the_run_with_its_last_log_lines(
    aws, invoke, image_stack, make_run_context, record, client_overrides, clock
):
    run = record(make_run_context(container={"build": BUILD}))
    started = invoke(build_image, {"run": run, "build": None, "poll_seconds": 10})
    stream = f"builds/{_tag(run)}/{started['build_id'].split(':')[-1]}"
    aws.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    lines = [
        "Step 1/3 : FROM base",
        "Step 2/3 : RUN pip install nope",
        "ERROR: No matching distribution found for nope",
        "",
    ]
    aws.logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=stream,
        logEvents=[
            {"timestamp": int(time.time() * 1000) + i, "message": line or " "}
            for i, line in enumerate(lines)
        ],
    )
    client_overrides.by_service["codebuild"] = _FailedBuilds(aws.codebuild, stream)

    with pytest.raises(ImageBuildFailed) as raised:
        invoke(build_image, {"run": run, "build": started, "poll_seconds": 10})

    message = str(raised.value)
    assert "ended FAILED in phase BUILD" in message
    assert message.endswith("ERROR: No matching distribution found for nope")
    assert "Step 2/3 : RUN pip install nope" in message


def test_a_stopped_run_starts_no_build(aws, invoke, image_stack, make_run_context, record, clock):
    from lambdas import wiring

    run = record(make_run_context(container={"build": BUILD}))
    wiring.runs_table().request_stop("run-1", clock().isoformat())

    with pytest.raises(RunStopped):
        invoke(build_image, {"run": run, "build": None, "poll_seconds": 10})

    assert aws.codebuild.list_builds_for_project(projectName=PROJECT)["ids"] == []


def test_runs_needing_the_same_image_send_the_same_start_build_request(
    aws, invoke, image_stack, make_run_context, record, client_overrides, clock
):
    # Given two runs of a sweep with the same build (other hyperparameters)
    builds = client_overrides.by_service["codebuild"] = _RecordedBuilds(aws.codebuild)
    runs = [
        record(make_run_context(run_id, container={"build": BUILD}, hyperparameters={"lr": lr}))
        for run_id, lr in (("run-1", 0.1), ("run-2", 0.2))
    ]

    # When each starts its build
    for run in runs:
        invoke(build_image, {"run": run, "build": None, "poll_seconds": 10})

    # Then the requests are identical, so CodeBuild's idempotency token makes them one build
    # (a token reused with other parameters is refused)
    first, second = builds.requests
    assert first == second

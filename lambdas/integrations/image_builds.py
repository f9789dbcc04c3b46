"""ECR, CodeBuild and the build's CloudWatch log stream, as BuildImage uses them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.constants import (
    BUILD_ENV_BUILD_ARGS,
    BUILD_ENV_CONTEXT_URI,
    BUILD_ENV_DOCKERFILE,
    BUILD_ENV_IMAGE_URI,
)

# CodeBuild's build states; every one but IN_PROGRESS is final.
BUILD_IN_PROGRESS = "IN_PROGRESS"
BUILD_SUCCEEDED = "SUCCEEDED"
# How long a StartBuild idempotency token holds (CodeBuild API reference, StartBuild).
IDEMPOTENCY_TOKEN_SECONDS = 5 * 60


@dataclass(frozen=True)
class BuildState:
    build_id: str
    status: str
    phase: str  # the current (or last) phase: SUBMITTED, PROVISIONING, BUILD, ...
    log_group: str | None
    log_stream: str | None


@dataclass(frozen=True)
class BuildRequest:
    project: str
    context_uri: str
    dockerfile: str
    build_args: dict[str, str]
    image_uri: str
    idempotency_token: str
    log_group: str
    log_stream: str  # CodeBuild appends "/<build uuid>"


class ImageBuilds:
    def __init__(self, ecr: Any, codebuild: Any, logs: Any) -> None:
        self._ecr = ecr
        self._codebuild = codebuild
        self._logs = logs

    def image_digest(self, repository: str, tag: str) -> str | None:
        """The digest of the repository's image under `tag`; None when there is none."""
        try:
            found = self._ecr.describe_images(
                repositoryName=repository, imageIds=[{"imageTag": tag}]
            )["imageDetails"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ImageNotFoundException":
                return None
            raise
        return str(found[0]["imageDigest"]) if found else None

    def start(self, request: BuildRequest) -> str:
        """Start the build; the same token within IDEMPOTENCY_TOKEN_SECONDS returns the build
        already started (a retried invocation, or runs of a sweep sharing one image)."""
        build = self._codebuild.start_build(
            projectName=request.project,
            idempotencyToken=request.idempotency_token,
            environmentVariablesOverride=[
                {"name": name, "value": value, "type": "PLAINTEXT"}
                for name, value in (
                    (BUILD_ENV_CONTEXT_URI, request.context_uri),
                    (BUILD_ENV_DOCKERFILE, request.dockerfile),
                    (BUILD_ENV_BUILD_ARGS, json.dumps(request.build_args)),
                    (BUILD_ENV_IMAGE_URI, request.image_uri),
                )
            ],
            logsConfigOverride={
                "cloudWatchLogs": {
                    "status": "ENABLED",
                    "groupName": request.log_group,
                    "streamName": request.log_stream,
                },
                "s3Logs": {"status": "DISABLED"},
            },
        )["build"]
        return str(build["id"])

    def state(self, build_id: str) -> BuildState:
        builds = self._codebuild.batch_get_builds(ids=[build_id])["builds"]
        if not builds:
            raise LookupError(f"CodeBuild has no build {build_id}")
        build = builds[0]
        logs = build.get("logs") or {}
        return BuildState(
            build_id=build_id,
            status=str(build.get("buildStatus", BUILD_IN_PROGRESS)),
            phase=str(build.get("currentPhase", "")),
            log_group=logs.get("groupName"),
            log_stream=logs.get("streamName"),
        )

    def last_log_lines(self, state: BuildState, count: int) -> list[str]:
        """The build's last non-empty log lines (none when its stream cannot be read)."""
        if not (state.log_group and state.log_stream):
            return []
        try:
            events = self._logs.get_log_events(
                logGroupName=state.log_group,
                logStreamName=state.log_stream,
                startFromHead=False,
                limit=max(count * 4, 50),
            )["events"]
        except ClientError:
            return []
        lines = [
            line.rstrip()
            for event in events
            for line in str(event.get("message", "")).splitlines()
            if line.strip()
        ]
        return lines[-count:]

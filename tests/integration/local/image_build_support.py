"""Drives local mode's image-build project in tests: an emulator with the repository and the
project local deploy makes, contexts uploaded to its S3, builds started and awaited as the
BuildImage Lambda does, and the Docker engine these tests need (a failure without it, not a skip).
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from runctl.local.container_engine import engine_problem
from runctl.local.deploy import ImageBuildResources, create_image_build
from runctl.local.emulator import REGION, Emulator

BASE_IMAGE = "runctl-local/python:bookworm"
LOG_GROUP = "/runctl/test/runs"
BUCKET = "runctl-image-build-tests"
BUILD_TIMEOUT_SECONDS = 180


def require_docker_engine() -> None:
    """The engine and the base image, or a test failure saying how to get them (never a skip)."""
    problem = engine_problem()
    if problem is not None:
        pytest.fail(f"these tests need a Docker engine: {problem}")
    if docker("image", "inspect", BASE_IMAGE).returncode != 0:
        pytest.fail(f"these tests need the base image {BASE_IMAGE}: run `make container-engine`")


def context_archive(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Builds:
    """The emulator's image-build project, and what a test needs to drive it."""

    emulator: Emulator
    images: ImageBuildResources
    clients: Any
    tags: list[str] = field(default_factory=list)

    def image_uri(self) -> str:
        tag = f"test-{uuid.uuid4().hex[:12]}"
        self.tags.append(tag)
        return f"{self.images.repository_uri}:{tag}"

    def upload(self, archive: bytes) -> str:
        key = f"contexts/{uuid.uuid4().hex}.tar.gz"
        self.clients.s3.put_object(Bucket=BUCKET, Key=key, Body=archive)
        return f"s3://{BUCKET}/{key}"

    def start(
        self,
        files: Mapping[str, str] | None = None,
        *,
        image_uri: str | None = None,
        build_args: Mapping[str, str] | None = None,
        dockerfile: str = "Dockerfile",
        token: str | None = None,
        context_uri: str | None = None,
    ) -> dict[str, Any]:
        variables = {
            "RUNCTL_CONTEXT_URI": context_uri or self.upload(context_archive(files or {})),
            "RUNCTL_DOCKERFILE": dockerfile,
            "RUNCTL_BUILD_ARGS": json.dumps(dict(build_args or {})),
            "RUNCTL_IMAGE_URI": image_uri or self.image_uri(),
        }
        request: dict[str, Any] = {
            "projectName": self.images.project,
            "environmentVariablesOverride": [
                {"name": name, "value": value, "type": "PLAINTEXT"}
                for name, value in variables.items()
            ],
            "logsConfigOverride": {
                "cloudWatchLogs": {
                    "status": "ENABLED",
                    "groupName": LOG_GROUP,
                    "streamName": "run-1/build",
                }
            },
        }
        if token:
            request["idempotencyToken"] = token
        build: dict[str, Any] = self.clients.codebuild.start_build(**request)["build"]
        return build

    def wait(self, build_id: str) -> dict[str, Any]:
        """The build once it is no longer IN_PROGRESS (polled; bounded)."""
        deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            (build,) = self.clients.codebuild.batch_get_builds(ids=[build_id])["builds"]
            if build["buildStatus"] != "IN_PROGRESS":
                return dict(build)
            time.sleep(0.2)
        raise AssertionError(f"build {build_id} still IN_PROGRESS after {BUILD_TIMEOUT_SECONDS} s")

    def log_lines(self, build: Mapping[str, Any]) -> list[str]:
        """The build's log so far; none before its stream exists (as on AWS, a build's stream
        appears once the build is under way, not at StartBuild)."""
        logs = self.clients.logs
        try:
            events = logs.get_log_events(
                logGroupName=build["logs"]["groupName"],
                logStreamName=build["logs"]["streamName"],
                startFromHead=True,
            )["events"]
        except logs.exceptions.ResourceNotFoundException:
            return []
        return [event["message"] for event in events]

    def ecr_image(self, image_uri: str) -> dict[str, Any] | None:
        tag = image_uri.rpartition(":")[2]
        ecr = self.clients.ecr
        try:
            (found,) = ecr.describe_images(
                repositoryName=self.images.repository, imageIds=[{"imageTag": tag}]
            )["imageDetails"]
        except ecr.exceptions.ImageNotFoundException:
            return None
        return dict(found)


@dataclass
class Clients:
    s3: Any
    logs: Any
    codebuild: Any
    ecr: Any


@contextmanager
def image_build_emulator(root: Path, name: str = "runctl-test") -> Iterator[Builds]:
    """An emulator with the image-build resources local deploy makes (a bucket and a log group
    for them too); on exit, the images the test tagged are removed from the engine."""
    require_docker_engine()
    with Emulator(root) as emulator:
        session = boto3.session.Session(region_name=REGION)
        clients = Clients(*(session.client(name) for name in ("s3", "logs", "codebuild", "ecr")))
        clients.s3.create_bucket(Bucket=BUCKET)
        clients.logs.create_log_group(logGroupName=LOG_GROUP)
        role = session.client("iam").create_role(
            RoleName="image-build", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        images = create_image_build(clients.ecr, name, role, LOG_GROUP)
        builds = Builds(emulator, images, clients)
        try:
            yield builds
        finally:
            uris = [f"{images.repository_uri}:{tag}" for tag in builds.tags]
            if uris:
                docker("rmi", "--force", *uris)


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)

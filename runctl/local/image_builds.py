"""CodeBuild for local mode: StartBuild really builds the image (runctl/local/docker_build.py)
and BatchGetBuilds reports how that build is going.

moto 5.2.5 records a build and nothing else: StartBuild ignores the environment variables, the
logs override and the idempotency token, and BatchGetBuilds calls every build SUCCEEDED at once.
These replacements keep moto's records (ListBuilds, ListBuildsForProject) and add what the stack's
BuildImage Lambda relies on: a build that runs in a daemon thread and ends SUCCEEDED, FAILED,
FAULT or STOPPED; its log stream `<streamName>/<build uuid>`, as CodeBuild names it; and AWS's
idempotency (the same token within 5 minutes returns the same build, a changed request with it is
refused). The Emulator stops every running build (its process group) on exit.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from moto.codebuild.exceptions import InvalidInputException
from moto.codebuild.models import CodeBuildBackend, codebuild_backends
from moto.codebuild.responses import CodeBuildResponse
from moto.core.responses import ActionResult
from moto.core.utils import iso_8601_datetime_with_milliseconds

from runctl.local.docker_build import BuildJob, BuildLog
from runctl.local.iam.enforcer import UNRESTRICTED_KEY

log = logging.getLogger(__name__)

# AWS: "The token ... is valid for 5 minutes."
IDEMPOTENCY_SECONDS = 300.0
# How long the emulator's exit waits for each stopped build's thread to end.
SHUTDOWN_JOIN_SECONDS = 20.0
_ORIGINAL_START_BUILD = CodeBuildResponse.start_build


@dataclass
class LocalBuild:
    build_id: str
    # The dict moto keeps in its history: changed only under ImageBuilds' lock, handed out as
    # copies (moto serializes responses outside any lock of ours).
    metadata: dict[str, Any]
    request: str  # the StartBuild request without its token, to compare a repeated token's
    job: BuildJob | None = None
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)


class ImageBuilds:
    """The builds of one emulator; `patches` are its replacements for moto's CodeBuild."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.endpoint, self.region = endpoint, region
        self._lock = threading.Lock()
        self._builds: dict[str, LocalBuild] = {}
        self._tokens: dict[tuple[str, str], LocalBuild] = {}
        self._closed = False
        # Whose calls the builds make: local mode's own key, or the build project's role once
        # IAM is enforced (Emulator.enforce_iam), so its policy is held to what builds do.
        self.access_key = UNRESTRICTED_KEY

    @property
    def patches(self) -> tuple[tuple[Any, str, Callable[..., Any]], ...]:
        return (
            (CodeBuildResponse, "start_build", self.start_build),
            (CodeBuildResponse, "batch_get_builds", self.batch_get_builds),
            (CodeBuildBackend, "stop_build", self.stop_build),
        )

    def docker_builds_started(self) -> int:
        """How many `docker build` processes this emulator started."""
        with self._lock:
            return sum(
                1 for b in self._builds.values() if b.job is not None and b.job.docker_started
            )

    # --- the API -------------------------------------------------------------------------------

    def start_build(self, response: CodeBuildResponse) -> ActionResult:
        request = json.loads(response.body or "{}")
        token = str(request.pop("idempotencyToken", "") or "")
        fingerprint = json.dumps(request, sort_keys=True)
        project = str(request.get("projectName", ""))
        with self._lock:
            if self._closed:
                raise InvalidInputException("the local emulator is shutting down")
            now = time.monotonic()
            self._tokens = {
                key: build
                for key, build in self._tokens.items()
                if now - build.started < IDEMPOTENCY_SECONDS
            }
            earlier = self._tokens.get((project, token)) if token else None
            if earlier is not None:
                if earlier.request != fingerprint:
                    raise InvalidInputException(
                        f"idempotencyToken {token!r} was used within the last 5 minutes with "
                        "other parameters (parameter mismatch)"
                    )
                return ActionResult({"build": copy.deepcopy(earlier.metadata)})
            result = _ORIGINAL_START_BUILD(response)  # checks the project; moto's record
            metadata: dict[str, Any] = result.result["build"]  # type: ignore[index]
            build = LocalBuild(metadata["id"], metadata, fingerprint)
            self._describe(build, response)
            self._builds[build.build_id] = build
            if token:
                self._tokens[(project, token)] = build
            build.thread = threading.Thread(
                target=self._run, args=(build,), name=f"image-build-{build.build_id}", daemon=True
            )
            build.thread.start()
            return ActionResult({"build": copy.deepcopy(metadata)})

    def batch_get_builds(self, response: CodeBuildResponse) -> ActionResult:
        ids = [str(item) for item in response._get_param("ids") or []]
        for build_id in ids:
            if ":" not in build_id:
                raise InvalidInputException("Invalid build ID provided")
        with self._lock:
            found = [self._builds.get(_build_id(item)) for item in ids]
            return ActionResult(
                {
                    "builds": [copy.deepcopy(b.metadata) for b in found if b is not None],
                    "buildsNotFound": [i for i, b in zip(ids, found, strict=True) if b is None],
                }
            )

    def stop_build(self, backend: CodeBuildBackend, build_id: str) -> dict[str, Any] | None:
        with self._lock:
            build = self._builds.get(_build_id(build_id))
            if build is None:
                return None
            metadata = copy.deepcopy(build.metadata)
        if build.job is not None and not metadata.get("buildComplete"):
            # The build thread reports STOPPED once `docker build` has gone.
            threading.Thread(target=build.job.cancel, daemon=True).start()
        return metadata

    # --- the build -----------------------------------------------------------------------------

    def _describe(self, build: LocalBuild, response: CodeBuildResponse) -> None:
        """What AWS reports for a started build that moto leaves out or makes up."""
        project = (
            codebuild_backends[response.current_account][response.region]
            .codebuild_projects[build.metadata["projectName"]]
            .project_metadata
        )
        variables = {
            item["name"]: item
            for source in (
                project.get("environment", {}).get("environmentVariables") or [],
                response._get_param("environmentVariablesOverride") or [],
            )
            for item in source
        }
        environment = copy.deepcopy(project.get("environment") or {})
        environment["environmentVariables"] = list(variables.values())
        cloudwatch = {
            **(project.get("logsConfig") or {}).get("cloudWatchLogs", {"status": "ENABLED"}),
            **((response._get_param("logsConfigOverride") or {}).get("cloudWatchLogs") or {}),
        }
        uuid = build.build_id.rsplit(":", 1)[-1]
        group = cloudwatch.get("groupName") or f"/aws/codebuild/{build.metadata['projectName']}"
        # CodeBuild appends the build's uuid to the stream name it is given.
        stream = f"{cloudwatch['streamName']}/{uuid}" if cloudwatch.get("streamName") else uuid
        arn = f"arn:aws:logs:{response.region}:{response.current_account}:log-group:{group}"
        build.metadata.update(
            source=copy.deepcopy(project.get("source") or {}),
            environment=environment,
            logs={
                "groupName": group,
                "streamName": stream,
                "deepLink": f"local: {group} {stream}",
                "cloudWatchLogsArn": f"{arn}:log-stream:{stream}",
                "cloudWatchLogs": {**cloudwatch, "groupName": group, "streamName": stream},
                "s3Logs": {"status": "DISABLED", "encryptionDisabled": False},
            },
        )

    def _run(self, build: LocalBuild) -> None:
        logs = build.metadata["logs"]
        variables = {
            item["name"]: str(item.get("value", ""))
            for item in build.metadata["environment"]["environmentVariables"]
        }
        status, build_log = "FAULT", None
        try:
            self._phase(build, "PROVISIONING")
            build_log = BuildLog(
                self._client("logs"),
                logs["groupName"],
                logs["streamName"],
                enabled=logs["cloudWatchLogs"].get("status", "ENABLED") == "ENABLED",
            )
            with self._lock:
                build.job = BuildJob(
                    variables, build_log, self._client, lambda p: self._phase(build, p)
                )
                if self._closed:
                    build.job.cancel()
            status = build.job.run()
        except Exception as error:
            # Not the user's build failing: ours (or the emulator going away under it).
            log.exception("local image build %s failed unexpectedly", build.build_id)
            with contextlib.suppress(Exception):
                if build_log is not None:
                    build_log.container(f"local mode's build failed unexpectedly: {error!r}")
        self._finish(build, status)

    def _phase(self, build: LocalBuild, phase: str) -> None:
        now = iso_8601_datetime_with_milliseconds()
        with self._lock:
            phases = build.metadata.setdefault("phases", [])
            for item in phases:
                if "endTime" not in item:
                    item.update(phaseStatus="SUCCEEDED", endTime=now)
            phases.append({"phaseType": phase, "startTime": now})
            build.metadata["currentPhase"] = phase

    def _finish(self, build: LocalBuild, status: str) -> None:
        now = iso_8601_datetime_with_milliseconds()
        with self._lock:
            phases = build.metadata.setdefault("phases", [])
            for item in phases:
                if "endTime" not in item:
                    item.update(phaseStatus=status, endTime=now)
            phases.append({"phaseType": "COMPLETED", "startTime": now})
            build.metadata.update(
                buildStatus=status, currentPhase="COMPLETED", buildComplete=True, endTime=now
            )

    def _client(self, service: str) -> Any:
        return _clients(self.endpoint, self.region, service, self.access_key)

    def shutdown(self) -> None:
        """Stop every running build and wait for its thread (called on the emulator's exit,
        before the server stops)."""
        with self._lock:
            self._closed = True
            builds = list(self._builds.values())
        for build in builds:
            if build.job is not None:
                build.job.cancel()
        deadline = time.monotonic() + SHUTDOWN_JOIN_SECONDS
        for build in builds:
            if build.thread is not None:
                build.thread.join(max(0.0, deadline - time.monotonic()))


def _build_id(id_or_arn: str) -> str:
    """A build's id from its id or ARN (arn:aws:codebuild:<region>:<account>:build/<id>)."""
    return id_or_arn.split(":build/", 1)[-1]


@cache
def _clients(endpoint: str, region: str, service: str, access_key: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=UNRESTRICTED_KEY, region_name=region
    )
    return session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]

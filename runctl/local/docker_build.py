"""One image build, done on this machine as the stack's buildspec does it in CodeBuild: download
the build context from (emulated) S3, extract it, `docker build` it (argv, never a shell), and
register the image in (emulated) ECR under its tag. runctl/local/image_builds.py runs it for
StartBuild and keeps its status for BatchGetBuilds.

docker's own output goes to the build's log stream line by line as it comes, so a client follows
it live; a failed `docker build` leaves docker's error lines last, as the lead's failure text
reads them. Lines of our own start with "[Container]", as CodeBuild's do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from lambdas.constants import (
    BUILD_ENV_BUILD_ARGS,
    BUILD_ENV_CONTEXT_URI,
    BUILD_ENV_DOCKERFILE,
    BUILD_ENV_IMAGE_URI,
    BUILD_ENV_REPOSITORY_URI,
)
from runctl.local.container_engine import engine_problem

# The buildspec's variables (stacks/ sets them per build through environmentVariablesOverride).
CONTEXT_URI = BUILD_ENV_CONTEXT_URI
DOCKERFILE = BUILD_ENV_DOCKERFILE
BUILD_ARGS = BUILD_ENV_BUILD_ARGS
IMAGE_URI = BUILD_ENV_IMAGE_URI
# Set on the project itself: the one repository its builds may push to.
REPOSITORY_URI = BUILD_ENV_REPOSITORY_URI
_BUILD_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# How long a stopped build's `docker build` gets to end after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 10.0
_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class BuildFailed(Exception):
    """The build cannot go on; the message (if any) becomes the log's last line."""


@dataclass(frozen=True)
class BuildInputs:
    context_uri: str
    dockerfile: str
    build_args: dict[str, str]
    image_uri: str
    repository: str  # the image's repository name in the registry
    tag: str

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> BuildInputs:
        missing = [name for name in (CONTEXT_URI, DOCKERFILE, IMAGE_URI) if not variables.get(name)]
        if missing:
            raise BuildFailed(f"the build has no {', '.join(missing)}: nothing to build")
        try:
            build_args = json.loads(variables.get(BUILD_ARGS) or "{}")
        except ValueError as error:
            raise BuildFailed(f"{BUILD_ARGS} is not JSON: {error}") from None
        if not isinstance(build_args, dict) or not all(
            isinstance(key, str) and _BUILD_ARG_NAME.fullmatch(key) and isinstance(value, str)
            for key, value in build_args.items()
        ):
            raise BuildFailed(f"{BUILD_ARGS} must be a JSON object of names to strings")
        image_uri = variables[IMAGE_URI]
        repository_uri = variables.get(REPOSITORY_URI)
        if repository_uri and not image_uri.startswith(repository_uri + ":"):
            raise BuildFailed(f"{image_uri} is not a tag of this project's repository")
        name, _, tag = image_uri.rpartition(":")
        _, slash, repository = name.partition("/")
        if not tag or "/" in tag or not slash or not repository:
            raise BuildFailed(f"{IMAGE_URI} {image_uri!r} is not <registry>/<repository>:<tag>")
        return cls(
            variables[CONTEXT_URI], variables[DOCKERFILE], build_args, image_uri, repository, tag
        )


class BuildLog:
    """The build's CloudWatch Logs stream (created with its group when missing, as CodeBuild
    does); `enabled=False` (logs disabled for the build) writes nothing."""

    def __init__(self, logs: Any, group: str, stream: str, enabled: bool = True) -> None:
        self._logs, self.group, self.stream, self.enabled = logs, group, stream, enabled
        if not enabled:
            return
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except logs.exceptions.ResourceNotFoundException:
            logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName=stream)

    def write(self, message: str) -> None:
        message = message.rstrip("\r\n")
        if not self.enabled or not message.strip():
            return  # CloudWatch Logs takes no empty events
        event = {"timestamp": int(time.time() * 1000), "message": message}
        self._logs.put_log_events(
            logGroupName=self.group, logStreamName=self.stream, logEvents=[event]
        )

    def container(self, message: str) -> None:
        """A line of the build's own, worded and stamped as CodeBuild's agent does."""
        self.write(f"[Container] {datetime.now(UTC):%Y/%m/%d %H:%M:%S.%f} {message}")


class BuildJob:
    """Run once with run(); cancel() from another thread stops it (the build ends STOPPED)."""

    def __init__(
        self,
        variables: Mapping[str, str],
        log: BuildLog,
        clients: Callable[[str], Any],
        on_phase: Callable[[str], None],
    ) -> None:
        self.variables = dict(variables)
        self.log = log
        self._client = clients
        self._on_phase = on_phase
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._cancelled = threading.Event()
        # Whether a `docker build` process was started (tests count them).
        self.docker_started = False

    def run(self) -> str:
        """The build's final status: SUCCEEDED, FAILED or STOPPED."""
        try:
            inputs = BuildInputs.from_variables(self.variables)
            problem = engine_problem()
            if problem is not None:
                raise BuildFailed(problem)
            with tempfile.TemporaryDirectory(prefix="runctl-image-build-") as scratch:
                self._on_phase("DOWNLOAD_SOURCE")
                context = self._download_context(inputs.context_uri, Path(scratch))
                self._on_phase("BUILD")
                self._docker_build(inputs, context)
            self._on_phase("POST_BUILD")
            self._register(inputs)
        except BuildFailed as failure:
            if self._cancelled.is_set():
                return "STOPPED"
            if str(failure):
                self.log.container(str(failure))
            return "FAILED"
        return "STOPPED" if self._cancelled.is_set() else "SUCCEEDED"

    def cancel(self) -> None:
        """Stop the build: its `docker build` process group gets SIGTERM, then SIGKILL."""
        with self._lock:
            self._cancelled.set()
            process = self._process
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def _download_context(self, uri: str, scratch: Path) -> Path:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise BuildFailed(f"{CONTEXT_URI} {uri!r} is not an s3://bucket/key URI")
        self.log.container(f"Downloading the build context {uri}")
        archive = scratch / "context.tar.gz"
        try:
            self._client("s3").download_file(bucket, key, str(archive))
        except ClientError as error:
            raise BuildFailed(f"cannot download the build context {uri}: {error}") from None
        context = scratch / "context"
        context.mkdir()
        try:
            with tarfile.open(archive, "r:*") as tar:
                # The "data" filter refuses absolute names, "..", links that leave the
                # directory and device files, and drops set-id bits: nothing lands outside.
                tar.extractall(context, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise BuildFailed(f"cannot extract the build context {uri}: {error}") from None
        return context

    def _docker_build(self, inputs: BuildInputs, context: Path) -> None:
        dockerfile = context / inputs.dockerfile
        real_context = os.path.realpath(context)
        if os.path.isabs(inputs.dockerfile) or not os.path.realpath(dockerfile).startswith(
            real_context + os.sep
        ):
            raise BuildFailed(f"{DOCKERFILE} {inputs.dockerfile!r} is not inside the build context")
        # --force-rm: a failed step leaves no intermediate container (the legacy builder would).
        argv = ["docker", "build", "--force-rm", "-f", str(dockerfile)]
        for name, value in inputs.build_args.items():
            argv += ["--build-arg", f"{name}={value}"]
        argv += ["-t", inputs.image_uri, str(context)]
        # As the stack's buildspec says it: build arg values are the user's, maybe secret.
        self.log.container(
            f"Running docker build -f {shlex.quote(inputs.dockerfile)} "
            f"({len(inputs.build_args)} build args) -t {inputs.image_uri}"
        )
        with self._lock:
            if self._cancelled.is_set():
                raise BuildFailed("")
            # Its own process group, so a stop (or the emulator's exit) ends all of it.
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._process = process
            self.docker_started = True
        said = False
        assert process.stdout is not None
        with process.stdout:
            for raw in process.stdout:
                text = raw.decode(errors="replace")
                said = said or bool(text.strip())
                self.log.write(text)
        status = process.wait()
        if status != 0:
            # docker's error lines are the log's last; say more only when it said nothing.
            raise BuildFailed("" if said else f"docker build exited with status {status}")

    def _register(self, inputs: BuildInputs) -> None:
        """Put the image in the repository under its tag, as `docker push` would; `-t` has
        tagged it locally with the full URI already, so the agent finds it without a pull."""
        repository, tag = inputs.repository, inputs.tag
        image = _inspect(inputs.image_uri)
        manifest = image_manifest(image)
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        self.log.container(f"Pushing {inputs.image_uri} ({digest})")
        ecr = self._client("ecr")
        # The buildspec's `docker login` first: the project's role needs that grant too.
        try:
            ecr.get_authorization_token()
        except ClientError as error:
            raise BuildFailed(f"cannot log in to the registry: {error}") from None
        try:
            ecr.put_image(
                repositoryName=repository, imageTag=tag, imageManifest=manifest, imageDigest=digest
            )
        except ecr.exceptions.ImageAlreadyExistsException:
            self.log.container(f"{inputs.image_uri} is already in the repository")
        except ecr.exceptions.ImageTagAlreadyExistsException:
            raise BuildFailed(
                f"tag invalid: The image tag '{tag}' already exists in the '{repository}' "
                "repository and cannot be overwritten because the repository is immutable."
            ) from None
        except ClientError as error:
            raise BuildFailed(f"pushing {inputs.image_uri} failed: {error}") from None


def image_manifest(image: Mapping[str, Any]) -> str:
    """A registry manifest for a local image (`docker image inspect` output): its config digest
    is the image's Id, as a pushed image's is. moto reports the config's size as the image's
    size, so the image's size goes there."""
    layers = image.get("RootFS", {}).get("Layers") or []
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": _MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": int(image.get("Size") or 0),
                "digest": image["Id"],
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "size": 0,
                    "digest": d,
                }
                for d in layers
            ],
        },
        separators=(",", ":"),
    )


def _inspect(reference: str) -> dict[str, Any]:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .}}", reference],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BuildFailed(f"docker build ended but {reference} is not in the engine: {done.stderr}")
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)

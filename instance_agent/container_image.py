"""The image the script's container runs (issue #12): Docker working, the image pulled (ECR
login first when it is an ECR image) or the local copy used, its digest and pull time recorded.

Only the docker CLI is used, as in container.py; the ECR password goes to `docker login` on
stdin, never in argv.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from .config import PULL_IF_MISSING, ContainerSettings
from .container import CALL_TIMEOUT, DOCKER, last_line, run_bounded
from .environment import EnvironmentFailed, EnvironmentInterrupted

logger = logging.getLogger(__name__)

# Bounds: an ECR login, a pull (multi-GB CUDA images), installing and starting Docker.
_LOGIN_TIMEOUT = 60.0
_PULL_TIMEOUT = 3600.0
_INSTALL_TIMEOUT = 600.0
_STOP_POLL = 0.5  # how often a pull checks should_stop
_OS_RELEASE = Path("/etc/os-release")

# run_bounded's shape: (argv, timeout, input=None) -> CompletedProcess; tests pass a fake.
Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass
class ImageFacts:
    """What the attempt records about its image."""

    image: str
    digest: str  # sha256:... of the repository digest when it has one, else the image id
    pull_seconds: float  # login and pull (0 when the local copy was used without pulling)
    pulled: bool
    installed_docker: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "pull_seconds": round(self.pull_seconds, 3),
            "pulled": self.pulled,
            "installed_docker": self.installed_docker,
        }


def prepare_image(
    settings: ContainerSettings,
    ecr_client: Any,
    should_stop: Callable[[], bool] = lambda: False,
    log_path: Path | None = None,
    docker: str | None = None,
    run: Runner = run_bounded,
) -> ImageFacts:
    """The image ready to run: Docker working (installed on AL2023 when missing), the image
    pulled (or, with pull "if-missing", the local copy used), its digest read.
    EnvironmentFailed when it cannot be had; EnvironmentInterrupted when should_stop() turned
    True during the pull. `log_path` gets docker's output (environment.log)."""
    docker, installed = ensure_engine(docker, run)
    image = settings.image
    present = _inspect(docker, image, run) is not None
    pulled = False
    started = time.monotonic()
    if present and settings.pull == PULL_IF_MISSING:
        logger.info("image %s is on this instance: not pulled", image)
    else:
        try:
            if settings.ecr_registry:
                _ecr_login(docker, settings.ecr_registry, ecr_client, run)
            _pull(docker, image, should_stop, log_path)
            pulled = True
        except EnvironmentFailed as error:
            if not present:
                raise
            logger.warning("%s; using the copy of %s already on this instance", error, image)
    seconds = time.monotonic() - started if pulled else 0.0
    inspected = _inspect(docker, image, run)
    if inspected is None:
        raise EnvironmentFailed(f"image {image} is not on this instance after the pull")
    facts = ImageFacts(image, image_digest(inspected), seconds, pulled, installed)
    logger.info("image: %s", facts.to_dict())
    return facts


def image_digest(inspected: Mapping[str, Any]) -> str:
    """`sha256:...` from RepoDigests[0] ("repo@sha256:...") when the image came from a registry;
    else the image Id (a locally built or imported image has no repository digest)."""
    digests = inspected.get("RepoDigests") or []
    if digests and "@" in str(digests[0]):
        return str(digests[0]).split("@", 1)[1]
    return str(inspected.get("Id") or "")


def ensure_engine(docker: str | None = None, run: Runner = run_bounded) -> tuple[str, bool]:
    """The docker CLI's path, and whether Docker was installed now; EnvironmentFailed when there
    is no working engine. On Amazon Linux 2023 as root a missing Docker is installed (dnf) and
    a stopped one started (systemctl); elsewhere that is the image's job."""
    found = docker or shutil.which(DOCKER)
    installed = False
    if found is None:
        _require_al2023_root("the docker CLI is not installed")
        logger.info("installing Docker (dnf install -y docker)")
        _check(run(["dnf", "install", "-y", "docker"], _INSTALL_TIMEOUT), "dnf install docker")
        found = shutil.which(DOCKER)
        if found is None:
            raise EnvironmentFailed("dnf installed docker but no docker CLI is on PATH")
        installed = True
    info = run([found, "info", "--format", "{{.ServerVersion}}"], CALL_TIMEOUT)
    if info.returncode != 0:
        _require_al2023_root(f"the Docker engine does not answer: {last_line(info.stderr)}")
        logger.info("starting Docker (systemctl start docker)")
        _check(run(["systemctl", "start", "docker"], _INSTALL_TIMEOUT), "systemctl start docker")
        info = run([found, "info", "--format", "{{.ServerVersion}}"], CALL_TIMEOUT)
        _check(info, "docker info")
    logger.info("Docker engine %s (CLI %s)", info.stdout.strip(), found)
    return found, installed


def _require_al2023_root(problem: str) -> None:
    if not (_is_al2023() and os.geteuid() == 0):
        raise EnvironmentFailed(f"{problem}; this image must ship a working Docker")


def _is_al2023() -> bool:
    try:
        fields = dict(
            line.split("=", 1) for line in _OS_RELEASE.read_text().splitlines() if "=" in line
        )
    except OSError:
        return False
    return fields.get("ID", "").strip('"') == "amzn" and fields.get("VERSION_ID", "").strip(
        '"'
    ).startswith("2023")


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        detail = last_line(done.stderr) or last_line(done.stdout) or f"exit {done.returncode}"
        raise EnvironmentFailed(f"{what} failed: {detail}")


def _inspect(docker: str, image: str, run: Runner) -> dict[str, Any] | None:
    done = run([docker, "image", "inspect", "--", image], CALL_TIMEOUT)
    if done.returncode != 0:
        return None
    try:
        found = json.loads(done.stdout)
    except ValueError:
        return None
    return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else None


def _ecr_login(docker: str, registry: str, ecr_client: Any, run: Runner) -> None:
    """`docker login` with an ECR token: the password goes on stdin, never in argv."""
    try:
        data = ecr_client.get_authorization_token()["authorizationData"][0]
        user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    except (BotoCoreError, ClientError, KeyError, IndexError, ValueError) as error:
        raise EnvironmentFailed(f"cannot get an ECR login token: {error}") from error
    done = run(
        [docker, "login", "--username", user, "--password-stdin", registry],
        _LOGIN_TIMEOUT,
        input=password,
    )
    _check(done, f"docker login to {registry}")


def _pull(docker: str, image: str, should_stop: Callable[[], bool], log_path: Path | None) -> None:
    """`docker pull`, bounded and stoppable; EnvironmentFailed with docker's last error line."""
    logger.info("pulling %s", image)
    with contextlib.ExitStack() as stack:
        errors: IO[bytes] = stack.enter_context(tempfile.TemporaryFile())
        out: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(log_path.open("ab"))
        try:
            process = subprocess.Popen(
                [docker, "pull", "--", image],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=errors,
                start_new_session=True,
            )
        except OSError as error:
            raise EnvironmentFailed(f"cannot run {docker} pull: {error}") from error
        deadline = time.monotonic() + _PULL_TIMEOUT
        while True:
            try:
                code = process.wait(timeout=_STOP_POLL)
                break
            except subprocess.TimeoutExpired:
                pass
            if should_stop() or time.monotonic() > deadline:
                process.kill()
                process.wait()
                if should_stop():
                    raise EnvironmentInterrupted(f"stopped while {image} was pulling")
                raise EnvironmentFailed(f"docker pull {image} took over {_PULL_TIMEOUT:.0f} s")
        errors.seek(0)
        text = errors.read().decode("utf-8", "replace")
        if not isinstance(out, int) and text:
            out.write(text.encode())
    if code != 0:
        raise EnvironmentFailed(f"docker pull {image} failed: {last_line(text) or f'exit {code}'}")

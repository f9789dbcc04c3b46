"""Whether this machine has a Docker engine that local mode can build and run containers with.

Local mode runs a container RunSpec in a real container or not at all (issue #12): without an
engine the CLI refuses the run, and the image-build stand-in fails the build, saying why.
"""

from __future__ import annotations

import shutil
import subprocess

# `docker info` asks the daemon; a healthy one answers in well under a second.
INFO_TIMEOUT_SECONDS = 20


def engine_problem() -> str | None:
    """None when `docker info` answers; else one sentence saying what is wrong and what to do."""
    docker = shutil.which("docker")
    if docker is None:
        return (
            "No `docker` command on PATH: local mode runs containers in a Docker engine on this "
            "machine; run `make container-engine` to install and start one."
        )
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=INFO_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return (
            f"The Docker engine did not answer `docker info` within {INFO_TIMEOUT_SECONDS} s: "
            "check that dockerd is healthy (restart it with `sudo dockerd`)."
        )
    except OSError as error:
        return f"`docker info` could not be run ({error}): run `make container-engine`."
    if done.returncode == 0 and done.stdout.strip():
        return None
    said = " ".join((done.stderr or done.stdout).split())[:300] or f"exit {done.returncode}"
    # The CLI exits 1 for every failure: its words are the only way to tell them apart.
    if "permission denied" in said.lower():
        return (
            f"Permission denied on the Docker engine's socket (docker info: {said}): run as root "
            "or add your user to the `docker` group, then log in again."
        )
    return (
        f"The Docker engine is not running (docker info: {said}): start it with "
        "`make container-engine` or `sudo dockerd`."
    )

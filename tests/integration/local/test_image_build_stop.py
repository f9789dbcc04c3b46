"""Leaving local mode stops the image builds still running: their `docker build` processes
(the whole process group) end, none is left behind as a zombie, and the engine drops the build's
container. Its own module: it starts and leaves an emulator of its own."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from tests.integration.local.image_build_support import (
    BASE_IMAGE,
    BUILD_TIMEOUT_SECONDS,
    docker,
    image_build_emulator,
)


def test_the_emulators_exit_stops_a_running_build(tmp_path: Path):
    # Given a build that would run for minutes, seen running its RUN step
    marker = f"runctl-stop-test-{uuid.uuid4().hex[:8]}"
    with image_build_emulator(tmp_path / "emulator", name="runctl-stop") as builds:
        files = {"Dockerfile": f"FROM {BASE_IMAGE}\nRUN echo {marker} && sleep 600\n"}
        started = builds.start(files)
        deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
        while not any(line.strip().endswith(marker) for line in builds.log_lines(started)):
            assert time.monotonic() < deadline, "the build never reached its RUN step"
            time.sleep(0.2)
        repository_uri = builds.images.repository_uri
        assert _docker_builds(repository_uri), "no docker build process found"
        exit_started = time.monotonic()

    # When the emulator exits, then the build's docker process and its container are gone
    assert time.monotonic() - exit_started < 30
    assert not _docker_builds(repository_uri)
    assert not _zombie_children()
    assert marker not in docker("ps", "--no-trunc", "--format", "{{.Command}}").stdout


def _docker_builds(repository_uri: str) -> list[int]:
    """This machine's `docker build` processes for the repository (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"build" in argv and any(repository_uri.encode() in arg for arg in argv):
            found.append(int(entry.name))
    return found


def _zombie_children() -> list[int]:
    """This process's children that ended and were never waited for."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(entry.name))
    return found

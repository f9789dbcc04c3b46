"""engine_problem(): local mode asks it before a container run (and before each image build) and
shows its sentence instead of running anything outside a container."""

from __future__ import annotations

from pathlib import Path

import pytest

from runctl.local.container_engine import engine_problem


def fake_docker(folder: Path, stderr: str) -> None:
    """A `docker` whose every command fails as the real CLI does, saying `stderr`."""
    script = folder / "docker"
    script.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")
    script.chmod(0o755)


def test_an_engine_that_answers_is_no_problem():
    assert engine_problem() is None


def test_no_docker_on_path_says_how_to_get_an_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("PATH", str(tmp_path))

    problem = engine_problem()

    assert problem is not None
    assert "No `docker` command on PATH" in problem and "make container-engine" in problem


def test_an_engine_that_is_not_running_says_how_to_start_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    fake_docker(
        tmp_path,
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?",
    )
    monkeypatch.setenv("PATH", str(tmp_path))

    problem = engine_problem()

    assert problem is not None
    assert problem.startswith("The Docker engine is not running")
    assert "Cannot connect to the Docker daemon" in problem and "sudo dockerd" in problem


def test_a_socket_without_permission_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    fake_docker(
        tmp_path,
        "permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock: Get ...: dial unix /var/run/docker.sock: connect: "
        "permission denied",
    )
    monkeypatch.setenv("PATH", str(tmp_path))

    problem = engine_problem()

    assert problem is not None
    assert problem.startswith("Permission denied on the Docker engine's socket")
    assert "`docker` group" in problem

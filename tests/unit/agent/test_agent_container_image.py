"""The container's image made ready: Docker working, the pull policy, ECR login, the digest.

The docker CLI is fake_docker.py here (tests/integration/agent/test_agent_container.py runs the
real engine).
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from instance_agent import container_image
from instance_agent.config import ContainerSettings
from instance_agent.container_image import ensure_engine, image_digest, prepare_image
from instance_agent.environment import EnvironmentFailed, EnvironmentInterrupted
from tests.unit.agent.fake_docker import FakeDocker, install_fake_docker

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:abc"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    return install_fake_docker(tmp_path, monkeypatch)


def test_the_digest_is_the_repository_digest_when_there_is_one_else_the_image_id():
    pulled = {"Id": "sha256:" + "1" * 64, "RepoDigests": [f"repo@sha256:{'d' * 64}"]}
    built = {"Id": "sha256:" + "2" * 64, "RepoDigests": []}

    assert image_digest(pulled) == "sha256:" + "d" * 64
    assert image_digest(built) == "sha256:" + "2" * 64


class FakeEcr:
    def __init__(self) -> None:
        self.calls = 0

    def get_authorization_token(self) -> dict[str, Any]:
        self.calls += 1
        token = base64.b64encode(b"AWS:ecr-password-xyz").decode()
        return {"authorizationData": [{"authorizationToken": token}]}


LOCAL = {"Id": "sha256:" + "2" * 64, "RepoDigests": []}


def test_given_pull_if_missing_and_the_image_here_then_it_is_not_pulled(fake_docker: FakeDocker):
    fake_docker.has_image(IMAGE, LOCAL)
    settings = ContainerSettings(IMAGE, "if-missing", REGISTRY, "python3")

    facts = prepare_image(settings, FakeEcr(), docker=fake_docker.path)

    assert (
        "pull --" not in fake_docker.commands() and "login --username" not in fake_docker.commands()
    )
    assert (facts.pulled, facts.pull_seconds, facts.digest) == (False, 0.0, LOCAL["Id"])


def test_given_an_ecr_image_then_the_agent_logs_in_with_the_password_on_stdin_and_pulls(
    fake_docker: FakeDocker, tmp_path: Path
):
    ecr = FakeEcr()
    settings = ContainerSettings(IMAGE, "always", REGISTRY, "python3")

    facts = prepare_image(settings, ecr, docker=fake_docker.path, log_path=tmp_path / "env.log")

    login = next(call for call in fake_docker.calls() if call["argv"][0] == "login")
    assert login["argv"] == ["login", "--username", "AWS", "--password-stdin", REGISTRY]
    assert login["stdin"] == "ecr-password-xyz"
    assert not any("ecr-password" in " ".join(call["argv"]) for call in fake_docker.calls())
    assert ["pull", "--", IMAGE] in [call["argv"] for call in fake_docker.calls()]
    assert facts.pulled and facts.pull_seconds > 0 and facts.digest == "sha256:" + "d" * 64
    assert ecr.calls == 1


def test_given_pull_always_then_a_present_image_is_pulled_again(fake_docker: FakeDocker):
    fake_docker.has_image(IMAGE, LOCAL)

    facts = prepare_image(
        ContainerSettings(IMAGE, "always", None, "python3"), None, docker=fake_docker.path
    )

    assert facts.pulled and "pull --" in fake_docker.commands()
    assert "login --username" not in fake_docker.commands()  # no registry to log in to


def test_given_a_failing_pull_and_a_local_copy_then_the_copy_is_used_with_a_warning(
    fake_docker: FakeDocker, caplog: pytest.LogCaptureFixture
):
    fake_docker.has_image(IMAGE, LOCAL)
    fake_docker.set("pull_fails")

    with caplog.at_level(logging.WARNING, logger="instance_agent.container_image"):
        facts = prepare_image(
            ContainerSettings(IMAGE, "always", None, "python3"), None, docker=fake_docker.path
        )

    assert (facts.pulled, facts.digest) == (False, LOCAL["Id"])
    assert "manifest unknown" in caplog.text and "already on this instance" in caplog.text


def test_given_a_failing_pull_and_no_local_copy_then_the_environment_failed_with_dockers_error(
    fake_docker: FakeDocker, tmp_path: Path
):
    fake_docker.set("pull_fails")
    log = tmp_path / "env.log"

    with pytest.raises(EnvironmentFailed, match="manifest unknown"):
        prepare_image(
            ContainerSettings(IMAGE, "if-missing", None, "python3"),
            None,
            docker=fake_docker.path,
            log_path=log,
        )

    assert "manifest unknown" in log.read_text()  # docker's whole output, for environment.log


def test_given_a_failing_ecr_login_and_no_local_copy_then_the_environment_failed(
    fake_docker: FakeDocker,
):
    fake_docker.set("login_fails")

    with pytest.raises(EnvironmentFailed, match="docker login"):
        prepare_image(
            ContainerSettings(IMAGE, "always", REGISTRY, "python3"),
            FakeEcr(),
            docker=fake_docker.path,
        )


def test_given_a_stop_while_pulling_then_the_pull_is_killed_and_the_set_up_interrupted(
    fake_docker: FakeDocker,
):
    fake_docker.set("pull_hangs")
    asked = []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) > 1

    with pytest.raises(EnvironmentInterrupted, match="pulling"):
        prepare_image(
            ContainerSettings(IMAGE, "always", None, "python3"),
            None,
            should_stop,
            docker=fake_docker.path,
        )


def test_given_no_engine_off_al2023_then_the_environment_failed_saying_so(
    fake_docker: FakeDocker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    fake_docker.set("engine_down")
    monkeypatch.setattr(container_image, "_OS_RELEASE", tmp_path / "no-os-release")

    with pytest.raises(EnvironmentFailed, match="does not answer: Cannot connect"):
        ensure_engine(fake_docker.path)


def test_given_al2023_as_root_without_docker_then_docker_is_installed_and_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    os_release = tmp_path / "os-release"
    os_release.write_text('NAME="Amazon Linux"\nID="amzn"\nVERSION_ID="2023"\n')
    monkeypatch.setattr(container_image, "_OS_RELEASE", os_release)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    installed: list[bool] = []
    monkeypatch.setattr(
        container_image.shutil, "which", lambda name: "/usr/bin/docker" if installed else None
    )
    commands: list[list[str]] = []

    def run(
        argv: list[str], timeout: float, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        commands.append(argv)
        if argv[:2] == ["dnf", "install"]:
            installed.append(True)
        started = ["systemctl", "start", "docker"] in commands
        answers = argv[1:2] != ["info"] or started
        return subprocess.CompletedProcess(
            argv, 0 if answers else 1, "25.0.8\n", "" if answers else "no engine"
        )

    assert ensure_engine(None, run) == ("/usr/bin/docker", True)
    assert [argv[:3] for argv in commands] == [
        ["dnf", "install", "-y"],
        ["/usr/bin/docker", "info", "--format"],
        ["systemctl", "start", "docker"],
        ["/usr/bin/docker", "info", "--format"],
    ]

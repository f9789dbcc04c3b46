"""The container runner: the `docker run` argv and signals to the script in the container.

The docker CLI is fake_docker.py here (tests/integration/agent/test_agent_container.py runs the
real engine).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from instance_agent import container
from instance_agent.container import (
    ContainerRun,
    agent_user,
    cli_env,
    docker_run_argv,
    start_container,
)
from instance_agent.errors import ScriptStartError
from instance_agent.script import exit_code_of, kill_group, signal_script
from tests.unit.agent.fake_docker import FakeDocker, install_fake_docker

HOSTILE = ["a b", "$(id)", ";rm -rf /", "--rm", "`id`", "line1\nline2", "", "-e", "X=1"]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:abc"


def _run(**fields: Any) -> ContainerRun:
    values: dict[str, Any] = {
        "image": IMAGE,
        "name": "runctl-run-1-2",
        "command": ["python3", "train.py", "--lr", "0.1"],
        "workdir": Path("/opt/runctl/work/run-1/code"),
        "mounts": [Path("/opt/runctl/work/run-1")],
        "read_only_mounts": [Path("/opt/runctl/agent/instance_agent/script_path")],
        "env": {"RUNCTL_RUN_ID": "run-1", "WANDB_API_KEY": "s3cr3t-value"},
    }
    return ContainerRun(**{**values, **fields})


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


# --- docker run argv ---


def test_given_a_cpu_instance_then_the_argv_runs_the_script_with_the_same_paths_and_no_gpu():
    argv = docker_run_argv(_run(), docker="docker")

    assert argv == [
        "docker", "run", "--rm", "--init", "--pull", "never", "--name", "runctl-run-1-2",
        "--network", "host", "--ipc", "host",
        "-w", "/opt/runctl/work/run-1/code",
        "-v", "/opt/runctl/work/run-1:/opt/runctl/work/run-1",
        "-v", "/opt/runctl/agent/instance_agent/script_path:"
        "/opt/runctl/agent/instance_agent/script_path:ro",
        "-e", "RUNCTL_RUN_ID", "-e", "WANDB_API_KEY",
        "--", IMAGE, "python3", "train.py", "--lr", "0.1",
    ]  # fmt: skip


def test_given_a_gpu_instance_then_the_container_gets_all_gpus():
    argv = docker_run_argv(_run(nvidia_gpus=4))

    assert argv[argv.index("--gpus") + 1] == "all"
    assert argv.index("--gpus") < argv.index("--")


def test_given_an_agent_that_is_not_root_then_the_container_runs_as_its_uid_and_gid():
    assert "--user" not in docker_run_argv(_run())
    argv = docker_run_argv(_run(user="1000:1001"))
    assert argv[argv.index("--user") + 1] == "1000:1001"


def test_agent_user_is_none_as_root_and_uid_gid_otherwise(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert agent_user() is None
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1001)
    assert agent_user() == "1000:1001"


def test_given_hostile_args_then_they_follow_the_image_verbatim_each_one_element():
    command = ["python3", "train.py", *HOSTILE]

    argv = docker_run_argv(_run(command=command))

    assert argv[argv.index("--") + 1 :] == [IMAGE, *command]


def test_given_secret_values_then_only_the_names_are_in_argv_and_the_values_reach_the_cli_env():
    run = _run(env={"WANDB_API_KEY": "s3cr3t-value", "RUNCTL_HPARAMS": '{"lr": 0.1}'})

    argv = docker_run_argv(run)
    env = cli_env(run, {"PATH": "/usr/bin", "DOCKER_HOST": "unix:///var/run/docker.sock"})

    assert not any("s3cr3t" in arg or '{"lr": 0.1}' in arg for arg in argv)
    assert argv[argv.index("WANDB_API_KEY") - 1 : argv.index("WANDB_API_KEY") + 1] == [
        "-e",
        "WANDB_API_KEY",
    ]
    assert env["WANDB_API_KEY"] == "s3cr3t-value" and env["PATH"] == "/usr/bin"


def test_given_a_variable_the_cli_reads_itself_then_it_goes_in_argv_and_the_cli_keeps_its_own():
    run = _run(env={"DOCKER_HOST": "tcp://elsewhere:2375", "HOME": "/home/script"})

    argv = docker_run_argv(run)
    env = cli_env(run, {"DOCKER_HOST": "unix:///var/run/docker.sock", "HOME": "/root"})

    assert "DOCKER_HOST=tcp://elsewhere:2375" in argv and "HOME=/home/script" in argv
    assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock" and env["HOME"] == "/root"


@pytest.mark.parametrize(
    "fields",
    [
        {"mounts": [Path("/data/a:b")]},
        {"mounts": [Path("relative/dir")]},
        {"read_only_mounts": [Path("/x,y")]},
        {"workdir": Path("/code:ro")},
        {"env": {"A=B": "1"}},
        {"env": {"": "1"}},
    ],
)
def test_given_what_docker_would_misread_then_the_script_is_not_started(fields: dict[str, Any]):
    with pytest.raises(ScriptStartError):
        docker_run_argv(_run(**fields))


# --- signals to the script in the container ---


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    return install_fake_docker(tmp_path, monkeypatch)


@pytest.fixture
def start(
    fake_docker: FakeDocker, tmp_path: Path
) -> Iterator[Callable[[], container.ContainerProcess]]:
    started: list[container.ContainerProcess] = []

    def start_one() -> container.ContainerProcess:
        process = start_container(_run(workdir=tmp_path), dict(os.environ), docker=fake_docker.path)
        started.append(process)
        return process

    yield start_one
    for process in started:
        process.clean_up()


def test_given_a_running_container_then_sigterm_goes_by_docker_kill_and_its_143_reads_as_sigterm(
    fake_docker: FakeDocker, start: Callable[[], container.ContainerProcess]
):
    process = start()
    _wait_for(process.created)

    assert signal_script(process, signal.SIGUSR1)
    _wait_for(lambda: "USR1" in fake_docker.received())
    assert signal_script(process, signal.SIGTERM)

    assert process.wait(timeout=10) == -signal.SIGTERM
    assert exit_code_of(process.returncode) == 143
    kills = [call["argv"] for call in fake_docker.calls() if call["argv"][0] == "kill"]
    assert kills == [
        ["kill", "--signal", "USR1", process.container_name],
        ["kill", "--signal", "TERM", process.container_name],
    ]


def test_given_a_script_that_exits_143_by_itself_then_the_code_is_not_taken_for_a_signal(
    fake_docker: FakeDocker, start: Callable[[], container.ContainerProcess]
):
    process = start()
    _wait_for(process.created)
    fake_docker.set("exit_code", "143")

    assert process.wait(timeout=10) == 143


def test_given_no_container_yet_then_sigterm_stops_the_cli_and_sigusr1_is_not_sent(
    fake_docker: FakeDocker, start: Callable[[], container.ContainerProcess]
):
    fake_docker.set("hold_create")
    process = start()
    _wait_for(lambda: (fake_docker.state / "run.pid").exists())

    assert not signal_script(process, signal.SIGUSR1)
    assert signal_script(process, signal.SIGTERM)

    assert process.wait(timeout=10) == -signal.SIGTERM
    assert "kill --signal" not in fake_docker.commands()


def test_given_a_script_ignoring_sigterm_then_kill_group_removes_the_container_and_reports_sigkill(
    fake_docker: FakeDocker, start: Callable[[], container.ContainerProcess]
):
    fake_docker.set("ignore_term")
    process = start()
    _wait_for(process.created)
    before_kill: list[bool] = []

    kill_group(process, grace_seconds=0.2, before_kill=lambda: before_kill.append(True))

    assert process.returncode == -signal.SIGKILL and before_kill == [True]
    assert fake_docker.received() == "TERM"
    assert ["rm", "--force", process.container_name] in [
        call["argv"] for call in fake_docker.calls()
    ]


def test_clean_up_removes_the_container_and_the_id_file(
    fake_docker: FakeDocker, start: Callable[[], container.ContainerProcess]
):
    process = start()
    _wait_for(process.created)

    process.clean_up()

    assert process.returncode == -signal.SIGKILL
    assert not process.cidfile.parent.exists()


def test_gpus_go_to_the_container_only_when_docker_can_pass_them_through():
    from instance_agent.container import NVIDIA_HOOK, container_gpus

    with_toolkit = {NVIDIA_HOOK: "/usr/bin/" + NVIDIA_HOOK}
    assert container_gpus(4, with_toolkit.get) == 4
    assert container_gpus(4, {}.get) == 0  # GPUs, but no NVIDIA Container Toolkit
    assert container_gpus(0, with_toolkit.get) == 0


@pytest.mark.parametrize(
    ("code", "stderr", "docker_s"),
    [
        (125, "docker: invalid reference format.", True),
        (
            127,
            'docker: Error response from daemon: exec: "python3": executable file not found',
            True,
        ),
        (127, "[FATAL tini (7)] exec python9 failed: No such file or directory", True),
        (127, "my script exits 127 on purpose", False),
        (126, "", False),
        (1, "docker: Error response from daemon: whatever", False),
    ],
)
def test_docker_s_own_exit_codes_are_told_from_the_script_s(code, stderr, docker_s):
    from instance_agent.container import docker_failed

    assert docker_failed(code, stderr) is docker_s

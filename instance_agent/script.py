"""The training script as a child process: argv, environment, start, exit code.

User strings (args, hyperparameters, environment values) only ever travel in argv lists and
environment entries: no shell sees them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from .config import Spec
from .errors import ScriptStartError
from .workdir import WorkDirs

logger = logging.getLogger(__name__)


def hyperparameter_value(value: Any) -> str:
    """How a hyperparameter is written as a command-line value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return str(value)


def build_argv(spec: Spec) -> list[str]:
    argv = [spec.interpreter, spec.entry_point, *spec.args]
    if spec.hyperparameters_as_args:
        for key, value in spec.hyperparameters.items():
            argv += [f"--{key}", hyperparameter_value(value)]
    return argv


def build_env(
    base: dict[str, str], spec: Spec, run_id: str, attempt: int, dirs: WorkDirs
) -> dict[str, str]:
    """The agent's environment, the spec's variables, then the contract's (which always win)."""
    env = dict(base)
    env.update(spec.environment)
    env.update(
        {
            "RUNCTL_RUN_ID": run_id,
            "RUNCTL_ATTEMPT": str(attempt),
            "RUNCTL_CHECKPOINT_DIR": str(dirs.checkpoints),
            "RUNCTL_DATA_DIR": str(dirs.data),
            "RUNCTL_OUTPUT_DIR": str(dirs.output),
            "RUNCTL_HPARAMS": json.dumps(spec.hyperparameters),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def check_runnable(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    """ScriptStartError when the interpreter or the entry point is missing."""
    interpreter, entry_point = argv[0], argv[1]
    if "/" in interpreter:
        # Popen resolves a relative path with a slash against cwd, so check it the same way.
        path = cwd / interpreter
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ScriptStartError(
                f"interpreter {interpreter!r} does not exist or is not executable"
            )
    elif shutil.which(interpreter, path=env.get("PATH", os.defpath)) is None:
        raise ScriptStartError(f"interpreter {interpreter!r} was not found on PATH")
    if not (cwd / entry_point).is_file():
        raise ScriptStartError(f"entry point {entry_point!r} is not in the code archive")


def start_script(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the script in its own process group, its output piped back to the agent."""
    try:
        return subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=env,
            shell=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        raise ScriptStartError(f"cannot start {argv[0]!r}: {error}") from error


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) as a shell reports it, 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def kill_group(process: subprocess.Popen[bytes], grace_seconds: float = 10.0) -> None:
    """SIGTERM the script's process group, then SIGKILL whatever is left after the grace period."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        logger.warning("the script ignored SIGTERM for %.0f s: killing it", grace_seconds)
    # Also reaches children left in the group after the leader itself exited.
    _signal_group(process, signal.SIGKILL)
    process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    # ProcessLookupError: the whole group is gone already.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)

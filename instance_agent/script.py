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
from typing import Any, Callable

from .config import REBALANCE_CHECKPOINT, Spec
from .container import ContainerProcess
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


def build_argv(spec: Spec, interpreter: str) -> list[str]:
    """`interpreter` is the image's Python or the script's environment built over it."""
    argv = [interpreter, spec.entry_point, *spec.args]
    if spec.hyperparameters_as_args:
        for key, value in spec.hyperparameters.items():
            argv += [f"--{key}", hyperparameter_value(value)]
    return argv


RESUME_ENV = "RUNCTL_RESUME_FROM"
# Opt-in (in the RunSpec's environment) to SIGUSR1 on a rebalance recommendation; see
# sigusr1_opted_in().
SIGUSR1_OPT_IN_ENV = "RUNCTL_SIGUSR1_CHECKPOINT"
# Modules for the script to import (runctl_helper), shipped in the agent's own folder.
SCRIPT_PATH_DIR = Path(__file__).resolve().parent / "script_path"


def build_env(
    base: dict[str, str],
    spec: Spec,
    run_id: str,
    attempt: int,
    dirs: WorkDirs,
    resume_from: Path | None = None,
) -> dict[str, str]:
    """The agent's environment, the spec's variables, then the contract's (which always win).
    RUNCTL_RESUME_FROM is set only when there is a checkpoint to resume from. PYTHONPATH keeps
    its entries and gains SCRIPT_PATH_DIR after them: a runctl_helper of the user's own, there or
    next to the script, is found first, as they meant."""
    env = dict(base)
    env.update(spec.environment)
    env.pop(RESUME_ENV, None)
    env.pop(SIGUSR1_OPT_IN_ENV, None)
    if sigusr1_opted_in(spec):
        env[SIGUSR1_OPT_IN_ENV] = "1"  # tells the script SIGUSR1 may come
    if resume_from is not None:
        env[RESUME_ENV] = str(resume_from)
    env.update(
        {
            "RUNCTL_RUN_ID": run_id,
            "RUNCTL_ATTEMPT": str(attempt),
            "RUNCTL_CHECKPOINT_DIR": str(dirs.checkpoints),
            "RUNCTL_DATA_DIR": str(dirs.data),
            "RUNCTL_OUTPUT_DIR": str(dirs.output),
            "RUNCTL_HPARAMS": json.dumps(spec.hyperparameters),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [env.get("PYTHONPATH"), str(SCRIPT_PATH_DIR)])
            ),
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


def sigusr1_opted_in(spec: Spec) -> bool:
    """Whether a rebalance recommendation sends SIGUSR1 to the script.

    An optional contract: a script that wants to checkpoint when EC2 recommends moving off the
    instance sets `interruptions.signal_checkpoint` in its RunSpec and installs a SIGUSR1 handler
    that saves a checkpoint and carries on (the agent sets RUNCTL_SIGUSR1_CHECKPOINT=1 for it).
    Python's default action for SIGUSR1 is to terminate the process, so without that opt-in (or
    with `interruptions.rebalance` other than "checkpoint") no signal is sent; the agent only
    syncs the checkpoints already written.
    The signal goes to the script's own process only, not its process group: worker processes
    (DataLoader workers, say) did not opt in, and the default action would kill them.
    """
    return (
        spec.interruptions.rebalance == REBALANCE_CHECKPOINT
        and spec.interruptions.signal_checkpoint
    )


def signal_script(process: subprocess.Popen[bytes], sig: int) -> bool:
    """Send `sig` to the script's own process while it runs; False when it has exited (or, in
    a container, is not running yet)."""
    if process.returncode is not None:
        return False
    if isinstance(process, ContainerProcess):
        return process.deliver(sig)
    try:
        os.kill(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) as a shell reports it, 128+N. A ContainerProcess reports
    a script the agent's signal N ended as -N too (docker's own code for it is 128+N)."""
    return 128 - returncode if returncode < 0 else returncode


def kill_group(
    process: subprocess.Popen[bytes],
    grace_seconds: float = 10.0,
    before_kill: Callable[[], None] | None = None,
) -> None:
    """SIGTERM the script's process group, then SIGKILL whatever is left after the grace period.
    `before_kill` is called just before the script itself, still running, gets SIGKILL.
    In a container: SIGTERM to the script (docker kill), then the container and the CLI killed."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        logger.warning("the script ignored SIGTERM for %.1f s: killing it", grace_seconds)
        if before_kill is not None:
            before_kill()
    # Also reaches children left in the group after the leader itself exited.
    _signal_group(process, signal.SIGKILL)
    process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    if isinstance(process, ContainerProcess):
        if sig == signal.SIGKILL:
            process.kill_container()
        else:
            process.deliver(sig)
        return
    # ProcessLookupError: the whole group is gone already.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)

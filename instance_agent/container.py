"""The script in a container (issue #12): `docker run`, signals to the script, clean-up.

Only the docker CLI is used (argv lists, never a shell: user strings never reach one). The
contract inside is the one outside: the same directories bind-mounted at the same paths, the
script's variables passed by name (`-e NAME`: the values travel in the CLI's environment, never
in argv or `ps`), the argv verbatim after the image.

`docker run --init` puts docker-init (tini) at PID 1 and the script under it: a Python script at
PID 1 would ignore SIGTERM unless it installed a handler. tini forwards a signal to the script
alone (not to processes the script started, like DataLoader workers: those die with the
container), and reports a script killed by signal N as exit code 128+N. The attached CLI exits
with the container's code. Measured with Debian's docker.io 20.10 (docs/progress.md, "#12 facts
(engine)"): SIGTERM by `docker kill` to a script without a handler: 143; `docker kill -s KILL`:
137; a SIGKILLed CLI leaves its container running; a CLI signalled before it created the
container dies and may leave one "Created". Hence ContainerProcess and remove_container().
The image itself is made ready by container_image.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ScriptStartError

logger = logging.getLogger(__name__)

DOCKER = "docker"
CALL_TIMEOUT = 30.0  # a quick engine call (kill, rm, inspect)
# A signal that finds the container created but not running: retried this long (it is about to
# start, or has just exited and is going) while the CLI runs.
_SETTLE_SECONDS = 5.0
_SETTLE_POLL = 0.05
# After the container is removed, how long the CLI gets to pass on the last output and exit.
_CLI_EXIT_GRACE = 5.0
# The CLI reads these itself, so their values cannot come from its environment: they go in
# argv as NAME=VALUE (nothing secret belongs in them).
_CLI_OWN_ENV_PREFIX = "DOCKER_"
_CLI_OWN_ENV = frozenset({"HOME"})


def run_bounded(
    argv: list[str], timeout: float, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A bounded command with its output captured; OSError and timeouts become a failed result."""
    try:
        return subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]} timed out after {timeout} s")
    except OSError as error:
        return subprocess.CompletedProcess(argv, 127, "", f"cannot run {argv[0]}: {error}")


def last_line(text: str) -> str:
    """The last non-blank line: docker's error, as a one-line reason."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class ContainerRun:
    """What `docker run` is given; the same paths inside the container as outside."""

    image: str
    name: str  # container_name(): unique per attempt, so signals and clean-up find it
    command: list[str]  # [interpreter, entry_point, *args], verbatim
    workdir: Path  # the code directory
    mounts: list[Path] = field(default_factory=list)  # read-write (the run's work directory)
    read_only_mounts: list[Path] = field(default_factory=list)  # the runctl_helper directory
    env: dict[str, str] = field(default_factory=dict)  # the script's variables only
    nvidia_gpus: int = 0
    user: str | None = None  # "uid:gid"; None: the image's own user (see agent_user())
    # `docker ps --filter label=...` finds a run's containers (local mode: an instance's, to
    # remove them when it "terminates", as EC2 takes them with the machine).
    labels: dict[str, str] = field(default_factory=dict)


# What `docker run --gpus` needs on the host: the NVIDIA Container Toolkit's prestart hook
# (the Deep Learning AMIs ship it, configured for Docker).
NVIDIA_HOOK = "nvidia-container-runtime-hook"


def container_gpus(nvidia_gpus: int, which: Callable[[str], str | None] = shutil.which) -> int:
    """The GPUs to give the container: the instance's, when Docker can pass them through. An
    instance with GPUs but no toolkit (an AMI of your own; local mode's stand-in GPU) runs the
    container without them, as the script would run on the CPU without a driver; said in the
    log."""
    if nvidia_gpus > 0 and which(NVIDIA_HOOK) is None:
        logger.warning(
            "this instance has %d NVIDIA GPU(s) but no NVIDIA Container Toolkit (%s): the "
            "container runs without GPUs",
            nvidia_gpus,
            NVIDIA_HOOK,
        )
        return 0
    return nvidia_gpus


# `docker run`'s own exit codes (docker run reference, "Exit status"): 125 the daemon failed,
# 126 the command cannot be invoked, 127 the command cannot be found. A script may exit with them
# too, so 126 and 127 count as docker's only with docker's words on stderr.
_DOCKER_EXIT_CODES = frozenset({125, 126, 127})
# (with --init, tini execs the command and says so itself: "[FATAL tini (7)] exec python9 failed")
_DOCKER_WORDS = (
    "docker: Error response from daemon",
    "OCI runtime",
    "executable file not found",
    "[FATAL tini",
)


def docker_failed(exit_code: int, stderr: str) -> bool:
    """Whether `docker run` itself failed (the image cannot run the script: no such interpreter,
    a bad option), rather than the script exiting with that code."""
    if exit_code not in _DOCKER_EXIT_CODES:
        return False
    return exit_code == 125 or any(words in stderr for words in _DOCKER_WORDS)


LABEL_RUN_ID = "runctl.run-id"
LABEL_ATTEMPT = "runctl.attempt"
LABEL_HOME = "runctl.home"  # the agent's RUNCTL_HOME: which (local) instance runs it


def container_labels(run_id: str, attempt: int, home: Path) -> dict[str, str]:
    return {LABEL_RUN_ID: run_id, LABEL_ATTEMPT: str(attempt), LABEL_HOME: str(home.resolve())}


def container_name(run_id: str, attempt: int) -> str:
    """A name docker accepts (run ids are [A-Za-z0-9._-], checked in config.py)."""
    return f"runctl-{run_id}-{attempt}"


def agent_user() -> str | None:
    """`--user` for the container: the agent's uid:gid when it is not root, so files in the
    mounted directories stay the agent's to read and delete; None as root."""
    uid = os.geteuid()
    return None if uid == 0 else f"{uid}:{os.getegid()}"


def docker_run_argv(
    run: ContainerRun, docker: str = DOCKER, cidfile: Path | None = None
) -> list[str]:
    """The `docker run` argv. ScriptStartError for a path docker's -v cannot express or a
    variable name docker's -e would misread."""
    argv = [docker, "run", "--rm", "--init", "--pull", "never", "--name", run.name]
    if cidfile is not None:
        argv += ["--cidfile", str(cidfile)]
    argv += ["--network", "host", "--ipc", "host"]
    for key, value in run.labels.items():
        argv += ["--label", f"{key}={value}"]
    if run.nvidia_gpus > 0:
        argv += ["--gpus", "all"]
    if run.user is not None:
        argv += ["--user", run.user]
    argv += ["-w", _mount_path(run.workdir)]
    for path in run.mounts:
        argv += ["-v", f"{_mount_path(path)}:{_mount_path(path)}"]
    for path in run.read_only_mounts:
        argv += ["-v", f"{_mount_path(path)}:{_mount_path(path)}:ro"]
    for name, value in run.env.items():
        if not name or "=" in name or "\0" in name:
            raise ScriptStartError(f"environment variable name {name!r} cannot be passed")
        argv += ["-e", f"{name}={value}" if _cli_reads(name) else name]
    # "--": nothing after it is read as an option, whatever the image name looks like.
    return [*argv, "--", run.image, *run.command]


def _cli_reads(name: str) -> bool:
    return name.startswith(_CLI_OWN_ENV_PREFIX) or name in _CLI_OWN_ENV


def _mount_path(path: Path) -> str:
    text = str(path)
    if not path.is_absolute() or ":" in text or "," in text:
        raise ScriptStartError(f"{text!r} cannot be mounted into the container at the same path")
    return text


def cli_env(run: ContainerRun, base: Mapping[str, str]) -> dict[str, str]:
    """The CLI's environment: the agent's, plus the script's variables (which `-e NAME` reads)
    except those the CLI itself reads (passed in argv)."""
    env = dict(base)
    env.update({name: value for name, value in run.env.items() if not _cli_reads(name)})
    return env


class ContainerProcess(subprocess.Popen[bytes]):
    """The attached `docker run` CLI, standing for the script in the container.

    Signals go to the script by `docker kill --signal` (script.py's signal_script and
    kill_group call deliver() and kill_container()). A return code 128+N for a signal N the
    agent sent reads as -N, as Popen reports a process killed by N, so callers need not know
    the script runs in a container."""

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        docker: str,
        cidfile: Path,
        cwd: Path,
        env: dict[str, str],
    ) -> None:
        self.container_name = name
        self.docker = docker
        self.cidfile = cidfile
        self._sent: set[int] = set()
        super().__init__(
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

    def poll(self) -> int | None:
        super().poll()
        return self._returncode_seen()

    def wait(self, timeout: float | None = None) -> int:
        super().wait(timeout)
        code = self._returncode_seen()
        assert code is not None
        return code

    def _returncode_seen(self) -> int | None:
        code = self.returncode
        if code is not None and code > 128 and (code - 128) in self._sent:
            self.returncode = code = 128 - code
        return code

    def created(self) -> bool:
        """Whether the CLI has created the container (it writes the id file then)."""
        try:
            return bool(self.cidfile.read_text().strip())
        except OSError:
            return False

    def deliver(self, sig: int) -> bool:
        """Send `sig` to the script in the container; False when it was not delivered (the
        CLI exited, or the container is not running). Before the container exists, SIGTERM
        goes to the CLI (which dies of it, so the script never starts); other signals are not
        sent then: there is no script to receive them, and they would kill the CLI."""
        deadline = time.monotonic() + _SETTLE_SECONDS
        while self.poll() is None:
            if not self.created():
                if sig != signal.SIGTERM:
                    return False
                self._sent.add(sig)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(self.pid, sig)
                    return True
                return False
            self._sent.add(sig)
            name = signal.Signals(sig).name[len("SIG") :]
            done = run_bounded(
                [self.docker, "kill", "--signal", name, self.container_name], CALL_TIMEOUT
            )
            if done.returncode == 0:
                return True
            if time.monotonic() > deadline:
                logger.warning("cannot send %s to the container: %s", name, last_line(done.stderr))
                break
            # Created and not yet started, or exited and being removed: wait on the CLI a moment.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(timeout=_SETTLE_POLL)
        return False

    def kill_container(self) -> None:
        """SIGKILL for the script: the container removed (killed first), then the CLI."""
        if self.poll() is None:
            self._sent.add(signal.SIGKILL)
        remove_container(self.container_name, self.docker)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.wait(timeout=_CLI_EXIT_GRACE if self.created() else 0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def clean_up(self) -> None:
        """However the attempt ends: no container left, no CLI left, the id file gone."""
        if self.poll() is None:
            self.kill_container()
            self.wait()
        remove_container(self.container_name, self.docker)
        shutil.rmtree(self.cidfile.parent, ignore_errors=True)


def start_container(
    run: ContainerRun, base_env: Mapping[str, str], docker: str | None = None
) -> ContainerProcess:
    """`docker run` in its own session, its output piped back to the agent like start_script's.
    A container of the same name left by an earlier try is removed first."""
    docker = docker or shutil.which(DOCKER) or DOCKER
    docker_run_argv(run, docker)  # ScriptStartError before anything is made
    remove_container(run.name, docker)
    # docker refuses an id file that exists: a fresh directory for each container.
    cid_dir = Path(tempfile.mkdtemp(prefix=f"{run.name}-"))
    cidfile = cid_dir / "cid"
    try:
        return ContainerProcess(
            docker_run_argv(run, docker, cidfile),
            name=run.name,
            docker=docker,
            cidfile=cidfile,
            cwd=run.workdir,
            env=cli_env(run, base_env),
        )
    except OSError as error:
        shutil.rmtree(cid_dir, ignore_errors=True)
        raise ScriptStartError(f"cannot start {docker} run: {error}") from error


def remove_container(name: str, docker: str = DOCKER) -> bool:
    """`docker rm -f`: the container killed (SIGKILL) and gone, whatever its state; True when
    there was one (docker names what it removed; a missing one is no error with --force)."""
    done = run_bounded([docker, "rm", "--force", name], CALL_TIMEOUT)
    return done.returncode == 0 and bool(done.stdout.strip())


def leftover_containers(names: Iterable[str], docker: str = DOCKER) -> list[str]:
    """Which of these containers exist (any state); for checks and tests."""
    found = []
    for name in names:
        done = run_bounded(
            [docker, "ps", "--all", "--quiet", "--filter", f"name=^/{name}$"], CALL_TIMEOUT
        )
        if done.stdout.strip():
            found.append(name)
    return found

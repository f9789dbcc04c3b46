"""Local stand-ins for EC2 instances: a home folder, an IMDSv2 endpoint, and its processes.

Under the local work dir (<root>): each instance's home, instances/<instance-id>/ (RUNCTL_HOME:
the agent, its logs, the environments it builds), and one work root shared by them all, work/
(RUNCTL_WORK_ROOT: a run's directories, work/<run_id>/, are the same on every attempt, as
/opt/runctl/work/<run_id>/ is on AWS). When an instance terminates its home goes with it, and so do
the run directories it last used (their `.owner` names its home), as they would on AWS.
`runctl local clean` removes what a killed session left behind: what no live process uses.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from instance_agent.container import LABEL_HOME
from instance_agent.workdir import OWNER_FILE, WORK_ROOT_ENV
from runctl.local.images import INTERPRETERS_ENV, fake_nvidia_smi, local_interpreters
from runctl.local.imds import LocalImds

logger = logging.getLogger(__name__)

GPU_BROKEN_ENV = "RUNCTL_LOCAL_GPU_BROKEN"

# Marks every process started on a local instance, so terminating it can find them all
# (the agent detaches with setsid, and the script runs in its own session).
INSTANCE_ENV_MARKER = "RUNCTL_LOCAL_INSTANCE"
# In an instance's home, locked by the session that runs the instance while the instance lives
# (from before any of its processes starts); in the work dir, shared-locked by each local session.
INSTANCE_LOCK = ".local-instance.lock"
SESSION_LOCK = ".local-session.lock"
SSM_OUTPUT_LIMIT = 24_000  # GetCommandInvocation returns at most this much of stdout
_TERMINATE_SECONDS = 10.0  # to see every process of a terminated instance gone


@dataclass
class CommandResult:
    status: str  # InProgress | Success | Failed | TimedOut | Cancelled
    exit_code: int = -1
    stdout: str = ""
    stderr: str = ""


class LocalInstance:
    """One launched instance, running in `home` with the emulator's endpoint and credentials;
    its runs' directories under `work_root` (None: the agent's default, `home`/work)."""

    def __init__(
        self,
        instance_id: str,
        instance_type: str,
        availability_zone: str,
        home: Path,
        base_env: dict[str, str],
        boot_seconds: float,
        gpu_broken: bool = False,
        image_id: str | None = None,
        work_root: Path | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self._resolved_home = home.resolve()  # what the agent writes in the .owner files
        self._in_use = hold_lock(home / INSTANCE_LOCK, fcntl.LOCK_EX)
        self.work_root = work_root
        self._ending = threading.Lock()
        self._ended = False
        self.online_at = time.monotonic() + boot_seconds
        self.terminated = threading.Event()
        self.imds = LocalImds(
            {
                "instance-id": instance_id,
                "instance-type": instance_type,
                "placement/availability-zone": availability_zone,
                "placement/region": availability_zone[:-1],
                **({"ami-id": image_id} if image_id else {}),
            }
        ).start()
        self.env = {
            **base_env,
            **({GPU_BROKEN_ENV: "1"} if gpu_broken else {}),
            **({WORK_ROOT_ENV: str(work_root)} if work_root is not None else {}),
            "RUNCTL_HOME": str(home),
            "RUNCTL_NO_SYSTEMD": "1",
            INSTANCE_ENV_MARKER: instance_id,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds.endpoint,
        }

    @property
    def online(self) -> bool:
        return not self.terminated.is_set() and time.monotonic() >= self.online_at

    def run_shell(self, commands: list[str], timeout_seconds: float) -> CommandResult:
        """Run an AWS-RunShellScript command's lines with bash, as the SSM agent would."""
        if self.terminated.is_set():
            return CommandResult("Failed", stderr="instance terminated")
        script = self.home / f"ssm-command-{time.monotonic_ns()}.sh"
        try:
            script.write_text("\n".join(commands) + "\n")
            completed = subprocess.run(
                ["/bin/bash", str(script)],
                cwd=self.home,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout_seconds,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            return CommandResult("TimedOut", stderr=str(expired))
        except OSError:
            if self.terminated.is_set():  # terminated meanwhile: its home went with it
                return CommandResult("Failed", stderr="instance terminated")
            raise
        status = "Success" if completed.returncode == 0 else "Failed"
        return CommandResult(
            status,
            completed.returncode,
            completed.stdout[:SSM_OUTPUT_LIMIT],
            completed.stderr[:SSM_OUTPUT_LIMIT],
        )

    def processes(self) -> list[psutil.Process]:
        return [process for process, marker in _marked_processes() if marker == self.instance_id]

    def terminate(self) -> bool:
        """Like EC2 reclaiming the machine: every process on it dies at once, and its disk goes:
        its home and the run directories it last used. Whether this call did it: another one
        that comes meanwhile returns when it is done."""
        self.terminated.set()
        with self._ending:
            if self._ended:
                return False
            # Again until none is left: a command already running may fork after a look (the
            # install starting the agent), and a killed process lingers until it is reaped.
            deadline = time.monotonic() + _TERMINATE_SECONDS
            # A `docker run` on it: its container is not its child, and outlives it unless
            # removed (EC2 takes it with the machine).
            ran_containers = any(_is_docker_cli(process) for process in self.processes())
            while (processes := self.processes()) and time.monotonic() < deadline:
                for process in processes:
                    try:
                        process.kill()
                    except psutil.NoSuchProcess:
                        continue
                psutil.wait_procs(processes, timeout=0.5)
            if ran_containers:
                remove_containers(self._resolved_home)
            self.imds.stop()
            self._ended = True
            self._in_use.close()
            self._remove_disk()
            return True

    def _remove_disk(self) -> None:
        """Its home, and each run directory whose .owner names it (not one a later attempt's
        instance took over). A failure is logged: termination completes all the same."""
        if self.work_root is not None:
            try:
                run_dirs = list(self.work_root.iterdir()) if self.work_root.is_dir() else []
            except OSError as error:
                logger.warning("cannot list %s: %s", self.work_root, error)
                run_dirs = []
            for run_dir in run_dirs:
                if run_dir_owner(run_dir) == self._resolved_home:
                    remove_path(run_dir)
        remove_path(self.home)


class LocalFleet:
    """The local instances, keyed by EC2 instance id."""

    def __init__(self, root: Path, base_env: dict[str, str], boot_seconds: float = 0.0) -> None:
        self.root = root
        self.base_env = base_env
        self.boot_seconds = boot_seconds
        self.instances: dict[str, LocalInstance] = {}
        self._lock = threading.Lock()
        self.on_launch: list[Callable[[LocalInstance], None]] = []
        self.on_terminate: list[Callable[[LocalInstance], None]] = []
        # How many of the next instances get a GPU whose driver fails (nvidia-smi exits 9).
        self.broken_gpu_instances = 0

    def launch(
        self,
        instance_id: str,
        instance_type: str,
        availability_zone: str,
        image_id: str | None = None,
    ) -> None:
        """Start the stand-in for an instance EC2 launched (image_id: the AMI it launched with)."""
        with self._lock:
            gpu_broken = self.broken_gpu_instances > 0
            self.broken_gpu_instances -= int(gpu_broken)
        instance = LocalInstance(
            instance_id,
            instance_type,
            availability_zone,
            self.root / "instances" / instance_id,
            self.base_env,
            self.boot_seconds,
            gpu_broken,
            image_id,
            work_root=self.root / "work",
        )
        with self._lock:
            self.instances[instance_id] = instance
        for callback in self.on_launch:
            callback(instance)

    def get(self, instance_id: str) -> LocalInstance | None:
        with self._lock:
            return self.instances.get(instance_id)

    def terminate(self, instance_id: str) -> None:
        instance = self.get(instance_id)
        if instance is not None and instance.terminate():
            for callback in self.on_terminate:
                callback(instance)

    def running(self) -> list[LocalInstance]:
        with self._lock:
            return [item for item in self.instances.values() if not item.terminated.is_set()]

    def shutdown(self) -> None:
        for instance in self.running():
            instance.terminate()


def _is_docker_cli(process: psutil.Process) -> bool:
    try:
        return process.name() == "docker"
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _marked_processes() -> Iterator[tuple[psutil.Process, str]]:
    """Every process started on a local instance, with that instance's id."""
    for process in psutil.process_iter():
        try:
            marker = process.environ().get(INSTANCE_ENV_MARKER)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if marker:
            yield process, marker


def live_instance_ids() -> set[str]:
    """The local instances some running process belongs to (a session that was killed leaves
    its instances' processes running: the agent detaches)."""
    return {marker for _, marker in _marked_processes()}


def hold_lock(path: Path, operation: int) -> IO[bytes]:
    """Lock `path` (created if missing) until the returned file is closed or this process ends."""
    file = path.open("ab")
    try:
        fcntl.flock(file, operation)
    except BaseException:
        file.close()
        raise
    return file


def lock_held(path: Path) -> bool:
    """Whether some live process holds the lock on `path` (see hold_lock)."""
    try:
        with path.open("rb") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False  # closing the file releases the lock this took
    except (FileNotFoundError, NotADirectoryError):
        return False


def instance_home_in_use(home: Path, live_ids: set[str]) -> bool:
    """Whether an instance home is used: its instance still lives in a session, or a process of
    it still runs (live_ids: see live_instance_ids)."""
    return home.name in live_ids or lock_held(home / INSTANCE_LOCK)


def run_dir_owner(run_dir: Path) -> Path | None:
    """The agent home that last used a run's directories (the agent's .owner file)."""
    try:
        text = (run_dir / OWNER_FILE).read_text().strip()
    except OSError:
        return None
    return Path(text) if text else None


def path_bytes(path: Path) -> int:
    """What deleting `path` frees: the sizes of the files in it; a hard-linked file's (uv links
    packages from its cache) only when all its links are inside."""
    total = 0
    linked: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [links seen, links, size]
    for stat in _stats(path):
        if stat.st_nlink > 1:
            seen = linked.setdefault((stat.st_dev, stat.st_ino), [0, stat.st_nlink, stat.st_size])
            seen[0] += 1
        else:
            total += stat.st_size
    return total + sum(size for seen, links, size in linked.values() if seen >= links)


def _stats(path: Path) -> Iterator[os.stat_result]:
    """The lstat of every file (not directory) at or under `path`; what cannot be read, skipped."""
    try:
        stat = path.lstat()
    except OSError:
        return
    if not path.is_dir() or path.is_symlink():
        yield stat
        return
    for folder, _, files in os.walk(path):
        for name in files:  # symlinks to folders are listed as folders, and so skipped
            try:
                yield os.lstat(os.path.join(folder, name))
            except OSError:
                continue


def remove_path(path: Path) -> int:
    """Delete `path` (a folder and all in it, or a file): the bytes this freed. Failures are
    logged, not raised; what could not be removed stays."""
    if not os.path.lexists(path):
        return 0
    before = path_bytes(path)

    def failed(function: Any, failed_path: str, error: object) -> None:
        logger.warning("cannot remove %s: %s", failed_path, error)

    if path.is_dir() and not path.is_symlink():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=failed)
        else:
            shutil.rmtree(path, onerror=lambda function, at, info: failed(function, at, info[1]))
    else:
        try:
            path.unlink()
        except OSError as error:
            failed(path.unlink, str(path), error)
    return before - path_bytes(path)


def python_shim_dir(root: Path) -> Path:
    """A bin/ with `python3` -> this interpreter, so instance scripts find boto3 like on AL2023."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "python3"
    # A script, not a symlink: exec'ing the venv's own path keeps its site-packages.
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    shim.chmod(0o755)
    return bin_dir


def instance_base_env(endpoint: str, region: str, root: Path) -> dict[str, str]:
    """The environment every local instance's processes start with."""
    keep = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    keep.pop("PYTHONPATH", None)
    keep.pop("VIRTUAL_ENV", None)  # the script's Python is the image's, not runctl's
    bin_dir = python_shim_dir(root)
    fake_nvidia_smi(bin_dir)
    uv = Path(sys.executable).parent / "uv"
    return {
        **keep,
        INTERPRETERS_ENV: local_interpreters(root / "images"),
        **({"RUNCTL_UV": str(uv)} if uv.exists() else {}),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
    }


def remove_containers(home: Path, settle_seconds: float = 1.0) -> list[str]:
    """The containers an instance's agent started (labelled with its home: container.py), removed
    as EC2 takes them with the machine; the ids removed. Nothing without a Docker CLI.

    A `docker run` killed with the instance may have asked the daemon for its container just
    before: the daemon still makes it. So the instance looks again until a look `settle_seconds`
    after the last removal finds none."""
    docker = shutil.which("docker")
    if docker is None:
        return []
    removed: list[str] = []
    deadline = time.monotonic() + _TERMINATE_SECONDS
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            listed = subprocess.run(
                [docker, "ps", "-aq", "--filter", f"label={LABEL_HOME}={home}"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            ids = listed.stdout.split()
            if ids:
                subprocess.run(
                    [docker, "rm", "--force", *ids],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
        except (OSError, subprocess.TimeoutExpired) as error:
            logger.warning("cannot remove the containers of %s: %s", home, error)
            return removed
        if ids:
            removed += ids
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle_seconds:
            return removed
        time.sleep(0.2)
    return removed

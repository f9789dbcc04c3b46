"""Local stand-ins for EC2 instances: a work directory, an IMDSv2 endpoint, and its processes."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from runctl.local.images import INTERPRETERS_ENV, fake_nvidia_smi, local_interpreters
from runctl.local.imds import LocalImds

GPU_BROKEN_ENV = "RUNCTL_LOCAL_GPU_BROKEN"

# Marks every process started on a local instance, so terminating it can find them all
# (the agent detaches with setsid, and the script runs in its own session).
INSTANCE_ENV_MARKER = "RUNCTL_LOCAL_INSTANCE"
SSM_OUTPUT_LIMIT = 24_000  # GetCommandInvocation returns at most this much of stdout
_TERMINATE_SECONDS = 10.0  # to see every process of a terminated instance gone


@dataclass
class CommandResult:
    status: str  # InProgress | Success | Failed | TimedOut | Cancelled
    exit_code: int = -1
    stdout: str = ""
    stderr: str = ""


class LocalInstance:
    """One launched instance, running in `home` with the emulator's endpoint and credentials."""

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
    ) -> None:
        self.instance_id = instance_id
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
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
        script.write_text("\n".join(commands) + "\n")
        try:
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
        status = "Success" if completed.returncode == 0 else "Failed"
        return CommandResult(
            status,
            completed.returncode,
            completed.stdout[:SSM_OUTPUT_LIMIT],
            completed.stderr[:SSM_OUTPUT_LIMIT],
        )

    def processes(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            try:
                if process.environ().get(INSTANCE_ENV_MARKER) == self.instance_id:
                    found.append(process)
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return found

    def terminate(self) -> None:
        """Like EC2 reclaiming the machine: every process on it dies at once."""
        self.terminated.set()
        # Again until none is left: a command already running may fork after a look (the
        # install starting the agent), and a killed process lingers until it is reaped.
        deadline = time.monotonic() + _TERMINATE_SECONDS
        while (processes := self.processes()) and time.monotonic() < deadline:
            for process in processes:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    continue
            psutil.wait_procs(processes, timeout=0.5)
        self.imds.stop()


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
        if instance is not None and not instance.terminated.is_set():
            instance.terminate()
            for callback in self.on_terminate:
                callback(instance)

    def running(self) -> list[LocalInstance]:
        with self._lock:
            return [item for item in self.instances.values() if not item.terminated.is_set()]

    def shutdown(self) -> None:
        for instance in self.running():
            instance.terminate()


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

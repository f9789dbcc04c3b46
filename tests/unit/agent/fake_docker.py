"""A stand-in for the docker CLI in unit tests, driven by files in $FAKE_DOCKER_STATE; and
FakeDocker, the tests' handle on it (install_fake_docker puts it in place).

Every call is appended to calls.jsonl (argv, and stdin for `login`). `run` behaves like the
attached CLI of a container whose script runs under docker-init: it writes --cidfile once
"created" (at once, or when create_now appears if hold_create exists), then waits; a SIGTERM
(which the fake `kill` delivers to it, as docker does to the script) ends it with 143 unless
ignore_term exists; SIGUSR1 is recorded; `rm --force` ends it with 137 (the container killed);
exit_code appearing ends it with that code (the script exiting by itself).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the fake CLI itself starts without pytest
    import pytest

STATE = Path(os.environ.get("FAKE_DOCKER_STATE", "/nonexistent"))


class FakeDocker:
    """The fake's executable and its state directory."""

    def __init__(self, path: Path, state: Path) -> None:
        self.path = str(path)
        self.state = state

    def set(self, name: str, content: str = "") -> None:
        (self.state / name).write_text(content)

    def has_image(self, image: str, inspected: dict[str, Any]) -> None:
        image_file(image, self.state).write_text(json.dumps([inspected]))

    def calls(self) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def commands(self) -> list[str]:
        return [" ".join(call["argv"][:2]) for call in self.calls()]

    def received(self) -> str:
        """The signals the fake container's script got, in order."""
        path = self.state / "received"
        return path.read_text() if path.exists() else ""


def install_fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    state = tmp_path / "docker-state"
    (state / "images").mkdir(parents=True)
    wrapper = tmp_path / "bin" / "docker"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__)}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(state))
    return FakeDocker(wrapper, state)


def record(entry: dict[str, object]) -> None:
    with (STATE / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps(entry) + "\n")


def image_file(image: str, state: Path = STATE) -> Path:
    return state / "images" / image.replace("/", "_").replace(":", "_")


def run(argv: list[str]) -> int:
    cidfile = Path(argv[argv.index("--cidfile") + 1])
    (STATE / "run.pid").write_text(str(os.getpid()))
    received: list[str] = []

    def on_term(_signum: int, _frame: object) -> None:
        received.append("TERM")
        (STATE / "received").write_text(" ".join(received))
        if not (STATE / "ignore_term").exists():
            sys.exit(143)

    def on_usr1(_signum: int, _frame: object) -> None:
        received.append("USR1")
        (STATE / "received").write_text(" ".join(received))

    def on_removed(_signum: int, _frame: object) -> None:
        sys.exit(137)

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGUSR2, on_removed)
    # Like the real CLI, a SIGTERM before the container exists kills it (default action).
    while (STATE / "hold_create").exists() and not (STATE / "create_now").exists():
        time.sleep(0.01)
    signal.signal(signal.SIGTERM, on_term)
    cidfile.write_text("0123456789ab")
    while not (STATE / "exit_code").exists():
        time.sleep(0.01)
    return int((STATE / "exit_code").read_text())


def main() -> int:
    argv = sys.argv[1:]
    command = argv[0]
    entry: dict[str, object] = {"argv": argv}
    if command == "login":
        entry["stdin"] = sys.stdin.read()
    record(entry)
    if command == "info":
        if (STATE / "engine_down").exists():
            print(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.",
                file=sys.stderr,
            )
            return 1
        print("20.10.24-fake")
        return 0
    if command == "image" and argv[1] == "inspect":
        path = image_file(argv[-1])
        if not path.exists():
            print(f"Error: No such image: {argv[-1]}", file=sys.stderr)
            return 1
        print(path.read_text())
        return 0
    if command == "login":
        return 1 if (STATE / "login_fails").exists() else 0
    if command == "pull":
        while (STATE / "pull_hangs").exists():
            time.sleep(0.01)
        if (STATE / "pull_fails").exists():
            print("Using default tag: latest", file=sys.stderr)
            print("Error response from daemon: manifest unknown", file=sys.stderr)
            return 1
        image = argv[-1]
        path = image_file(image)
        path.parent.mkdir(exist_ok=True)
        record_digest = f"{image.split(':')[0]}@sha256:{'d' * 64}"
        path.write_text(json.dumps([{"Id": "sha256:" + "1" * 64, "RepoDigests": [record_digest]}]))
        return 0
    if command == "run":
        return run(argv)
    if command == "kill":
        name = argv[argv.index("--signal") + 1]
        os.kill(int((STATE / "run.pid").read_text()), signal.Signals["SIG" + name])
        return 0
    if command == "rm":
        pid_file = STATE / "run.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGUSR2)
                print(argv[-1])
            except ProcessLookupError:
                pass
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

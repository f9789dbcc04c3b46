"""Local instances' disk: a shared work root (a run's paths are the same on every attempt), each
instance's folders removed when it terminates, and `runctl local clean` for what killed sessions
left behind."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.filesize import decimal
from typer.testing import CliRunner

from instance_agent.workdir import OWNER_FILE, WORK_ROOT_ENV
from runctl.cli import app
from runctl.local import commands
from runctl.local.instances import (
    INSTANCE_ENV_MARKER,
    SESSION_LOCK,
    LocalFleet,
    LocalInstance,
    hold_lock,
    path_bytes,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _instance_id() -> str:
    """An id of its own: terminating an instance kills every process marked with its id."""
    return f"i-{uuid.uuid4().hex[:17]}"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    # The instances' processes import the agent's code from this checkout, as its zip would
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(PROJECT_ROOT)}
    fleet = LocalFleet(tmp_path / "local", env)
    try:
        yield fleet
    finally:
        fleet.shutdown()


def _launch(fleet: LocalFleet) -> LocalInstance:
    instance_id = _instance_id()
    fleet.launch(instance_id, "g5.xlarge", "us-east-1a")
    instance = fleet.get(instance_id)
    assert instance is not None
    return instance


def _agent_creates_run_dirs(instance: LocalInstance, run_id: str) -> None:
    """What the agent does at the start of an attempt, run on the instance with its environment."""
    code = (
        "from instance_agent.workdir import WorkDirs, runctl_home; "
        f"(WorkDirs.create(runctl_home(), {run_id!r}).checkpoints / 'last.ckpt').write_text('w')"
    )
    result = instance.run_shell([f'"{sys.executable}" -c "{code}"'], 60)
    assert result.status == "Success", result.stderr


def test_a_launched_instance_keeps_its_runs_under_the_work_dirs_shared_work_root(fleet):
    instance = _launch(fleet)

    result = instance.run_shell([f'echo "${WORK_ROOT_ENV}"'], 30)

    assert result.stdout.strip() == str(fleet.root / "work")
    _agent_creates_run_dirs(instance, "run-a")
    assert (fleet.root / "work" / "run-a" / "checkpoints" / "last.ckpt").read_text() == "w"
    owner = (fleet.root / "work" / "run-a" / OWNER_FILE).read_text()
    assert owner == str(instance.home.resolve())


def test_terminating_an_instance_removes_its_home_and_the_run_dirs_it_owns_only(fleet):
    # Given attempt 1 on instance `first` (runs a and b, and a detached process still running),
    # and attempt 2 of run b on instance `second`, which took run b's directories over
    root = fleet.root
    first, second = _launch(fleet), _launch(fleet)
    _agent_creates_run_dirs(first, "run-a")
    _agent_creates_run_dirs(first, "run-b")
    started = first.run_shell(["setsid sleep 60 >/dev/null 2>&1 &"], 30)
    assert started.status == "Success"
    assert first.processes()
    _agent_creates_run_dirs(second, "run-b")
    # And what local mode keeps: the history and the downloaded outputs
    (root / "history" / "run-a").mkdir(parents=True)
    (root / "history" / "run-a" / "record.json").write_text("{}")
    (root / "runs" / "run-a" / "outputs").mkdir(parents=True)
    (root / "runs" / "run-a" / "outputs" / "model.bin").write_text("m")

    # When the first instance terminates
    fleet.terminate(first.instance_id)

    # Then its processes are gone, and so are its home and run a's directories
    assert first.processes() == []
    assert not first.home.exists()
    assert not (root / "work" / "run-a").exists()
    # But not run b's, which the running second instance owns, nor its home
    assert (root / "work" / "run-b" / OWNER_FILE).read_text() == str(second.home.resolve())
    assert (root / "work" / "run-b" / "checkpoints" / "last.ckpt").exists()
    assert second.home.is_dir()
    # Nor the history and outputs
    assert (root / "history" / "run-a" / "record.json").read_text() == "{}"
    assert (root / "runs" / "run-a" / "outputs" / "model.bin").read_text() == "m"

    # And when the second one terminates, run b's directories go with it
    fleet.terminate(second.instance_id)
    assert not (root / "work" / "run-b").exists()
    assert not second.home.exists()
    assert list((root / "instances").iterdir()) == []
    assert list((root / "work").iterdir()) == []


def test_an_instance_terminated_twice_is_reported_terminated_once(fleet):
    instance = _launch(fleet)
    seen: list[str] = []
    fleet.on_terminate.append(lambda item: seen.append(item.instance_id))

    fleet.terminate(instance.instance_id)
    fleet.terminate(instance.instance_id)

    assert seen == [instance.instance_id]
    assert instance.run_shell(["true"], 30).stderr == "instance terminated"


def test_the_bytes_a_removal_frees_leave_out_files_also_linked_from_elsewhere(tmp_path):
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / "own.bin").write_bytes(b"x" * 1000)
    (tmp_path / "cache.bin").write_bytes(b"y" * 5000)
    os.link(tmp_path / "cache.bin", folder / "from-cache.bin")  # as uv installs packages
    (folder / "twice.bin").write_bytes(b"z" * 300)
    os.link(folder / "twice.bin", folder / "twice-again.bin")
    (folder / "to-cache").symlink_to(tmp_path / "cache.bin")

    assert path_bytes(folder) == 1000 + 300 + len(str(tmp_path / "cache.bin"))


# --- runctl local clean ---


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> Console:
    """The console `runctl local ...` prints to, wide enough for long paths on one line."""
    console = Console(width=500, record=True, force_terminal=False, highlight=False)
    monkeypatch.setattr(commands, "console", console)
    return console


def _clean(root: Path, *args: str, answer: str | None = None) -> int:
    result = CliRunner().invoke(
        app, ["local", "--work-dir", str(root), "clean", *args], input=answer
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code


def _file(path: Path, size: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return size


def _run_dir(root: Path, run_id: str, owner: Path | None, size: int) -> int:
    run_dir = root / "work" / run_id
    size = _file(run_dir / "checkpoints" / "last.ckpt", size)
    if owner is not None:  # as the agent writes it
        size += (run_dir / OWNER_FILE).write_text(str(owner.resolve()))
    return size


@pytest.fixture
def live_instance_process() -> Iterator[str]:
    """A running process that belongs to a local instance (as an agent left running by a
    killed session does): that instance's id."""
    instance_id = _instance_id()
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, INSTANCE_ENV_MARKER: instance_id},
    )
    try:
        yield instance_id
    finally:
        process.kill()
        process.wait()


def test_clean_removes_leftovers_no_live_process_uses(tmp_path, printed, live_instance_process):
    # Given what a killed session left: an instance whose processes are all gone (and its run's
    # directories), a run dir with no owner, an instance whose agent still runs (and its run's)
    root = tmp_path / "local"
    stale, live = root / "instances" / _instance_id(), root / "instances" / live_instance_process
    freed = _file(stale / "envs" / "env-1" / "lib.so", 1_500_000)
    freed += _file(stale / ".local-instance.lock", 0)
    freed += _run_dir(root, "run-stale", stale, 700_000)
    freed += _run_dir(root, "run-unowned", None, 1234)
    _file(live / "agent.log", 10)
    _run_dir(root, "run-live", live, 10)
    _file(root / "history" / "run-stale" / "record.json", 10)
    _file(root / "runs" / "run-stale" / "outputs" / "model.bin", 10)

    assert _clean(root) == 0

    # Then the stale ones are gone, with what that freed said
    assert sorted(path.name for path in (root / "instances").iterdir()) == [live.name]
    assert sorted(path.name for path in (root / "work").iterdir()) == ["run-live"]
    output = printed.export_text()
    assert f"removed instances/{stale.name} ({decimal(1_500_000)})" in output
    assert f"removed work/run-unowned ({decimal(1234)})" in output
    assert f"removed work/run-stale ({decimal(700_000 + len(str(stale.resolve())))})" in output
    assert f"freed {decimal(freed)} in {root}" in output
    # And those in use stay, said so; the history and outputs too
    assert f"kept instances/{live.name}: in use (its instance is running)" in output
    assert f"kept work/run-live: in use (instance {live.name} is running)" in output
    assert (live / "agent.log").exists()
    assert (root / "history" / "run-stale" / "record.json").exists()
    assert (root / "runs" / "run-stale" / "outputs" / "model.bin").exists()


def test_clean_keeps_the_folders_of_an_instance_a_live_session_runs(tmp_path, printed):
    # Given an instance of a running session whose agent has not started yet (no process of
    # it runs: the session holds its home's lock), and its run's directories
    fleet = LocalFleet(tmp_path / "local", {"PATH": os.environ["PATH"]})
    try:
        instance = _launch(fleet)
        _run_dir(fleet.root, "run-1", instance.home, 10)

        assert _clean(fleet.root) == 0

        assert instance.home.is_dir()
        assert (fleet.root / "work" / "run-1" / "checkpoints" / "last.ckpt").exists()
        output = printed.export_text()
        assert f"kept instances/{instance.instance_id}: in use" in output
        assert f"nothing to clean in {fleet.root}" in output
    finally:
        fleet.shutdown()


def test_clean_all_removes_the_history_and_outputs_too(tmp_path, printed):
    root = tmp_path / "local"
    _file(root / SESSION_LOCK, 0)  # left by the sessions that used this work dir
    freed = _file(root / "history" / "run-1" / "record.json", 2000)
    freed += _file(root / "runs" / "run-1" / "outputs" / "model.bin", 3000)
    freed += _file(root / "images" / "al2023" / "bin" / "python", 100)
    freed += _file(root / "instances" / _instance_id() / "agent.log", 10)
    freed += _run_dir(root, "run-1", root / "instances" / "i-gone", 10)

    assert _clean(root, "--all", "--yes") == 0

    assert not root.exists()
    output = printed.export_text()
    assert "removed history (2.0 kB)" in output
    assert SESSION_LOCK not in output
    assert f"freed {decimal(freed)} in {root}" in output


def test_clean_all_keeps_what_a_running_session_shares(tmp_path, printed, live_instance_process):
    # Given a running session (its shared lock on the work dir) and one of its instances
    root = tmp_path / "local"
    root.mkdir()
    session = hold_lock(root / SESSION_LOCK, fcntl.LOCK_SH)
    try:
        _file(root / "history" / "run-1" / "record.json", 10)
        _file(root / "images" / "al2023" / "bin" / "python", 10)
        _file(root / "bin" / "python3", 10)
        _file(root / "instances" / live_instance_process / "agent.log", 10)
        _run_dir(root, "run-starting", None, 10)  # an agent that has not written .owner yet

        assert _clean(root, "--all", "--yes") == 0
    finally:
        session.close()

    # Then the history goes; what the instances run, their folders and the lock stay
    assert sorted(path.name for path in root.iterdir()) == [
        SESSION_LOCK,
        "bin",
        "images",
        "instances",
        "work",
    ]
    assert (root / "work" / "run-starting").is_dir()
    output = printed.export_text()
    assert "kept bin: in use (a running local session or instance uses it)" in output
    assert "kept work/run-starting: in use (a running local session may be starting it)" in output


def test_clean_all_asks_first_and_a_no_removes_nothing(tmp_path, printed):
    root = tmp_path / "local"
    _file(root / "history" / "run-1" / "record.json", 10)

    assert _clean(root, "--all", answer="n\n") == 1

    assert (root / "history" / "run-1" / "record.json").exists()


def test_clean_with_nothing_to_clean_says_so(tmp_path, printed):
    root = tmp_path / "local"
    assert _clean(root) == 0
    assert f"nothing to clean: no {root}" in printed.export_text()

    _file(root / "history" / "run-1" / "record.json", 10)
    assert _clean(root) == 0
    assert f"nothing to clean in {root}" in printed.export_text()
    assert (root / "history" / "run-1" / "record.json").exists()

"""An agent that never starts, and one that goes silent on a live instance: each ends its attempt
by its own path (agent-failed at once; instance-lost at the heartbeat timeout) and the run goes
on in attempt 2. A short heartbeat keeps the silent case to seconds."""

from __future__ import annotations

import fcntl
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

import psutil
import pytest

from lambdas.constants import agent_config_key
from lambdas.logic.agent_commands import agent_tag
from lambdas.models.run_record import EndReason, RunStatus
from runctl.local.deploy import LocalSettings
from runctl.local.instances import LocalInstance
from runctl.local.session import LocalSession
from runctl.run_request import new_run_id
from tests.e2e_local.conftest import ScriptRunner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_liveness")]

HEARTBEAT_SECONDS = 8
# Attempt 1 would run for a minute (a frozen agent must not be saved by the script ending);
# later attempts finish at once.
SCRIPT = """
import os, time
if os.environ["RUNCTL_ATTEMPT"] == "1":
    time.sleep(60)
print("done on attempt", os.environ["RUNCTL_ATTEMPT"], flush=True)
"""


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSession]:
    settings = LocalSettings(poll_seconds=1, heartbeat_seconds=HEARTBEAT_SECONDS)
    with LocalSession(tmp_path_factory.mktemp("runctl-liveness"), settings) as session:
        yield session


@pytest.fixture
def runner(session: LocalSession, tmp_path: Path) -> ScriptRunner:
    return ScriptRunner(session, tmp_path)


def _agents(instance: LocalInstance) -> list[psutil.Process]:
    found = []
    for process in instance.processes():
        try:
            if process.cmdline()[1:3] == ["-m", "instance_agent"]:
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def _assert_no_instance_left(session: LocalSession, run_id: str) -> None:
    assert set(session.live_instances()) & session.run_instance_ids(run_id) == set()
    for instance_id in session.run_instance_ids(run_id):
        instance = session.emulator.fleet.get(instance_id)
        assert instance is not None
        assert instance.processes() == []


def test_agent_that_cannot_start_ends_the_attempt_agent_failed_and_resumes_at_once(session, runner):
    # Given a run whose first instance cannot start the agent: its attempt lock is already
    # taken, so the start command's `flock -n` exits at once and no agent process ever runs
    run_id = new_run_id()
    held: list[IO[str]] = []

    def take_lock(instance: LocalInstance) -> None:
        if not held:
            lock = (instance.home / f"agent-{agent_tag(run_id, 1)}.lock").open("w")
            fcntl.flock(lock, fcntl.LOCK_EX)
            held.append(lock)

    session.emulator.fleet.on_launch.append(take_lock)
    try:
        session.start(runner.spec(SCRIPT.replace('== "1"', '== "0"')), run_id=run_id)
        outcome = session.wait(run_id, timeout_seconds=240)
    finally:
        session.emulator.fleet.on_launch.remove(take_lock)
        for lock in held:
            lock.close()

    # Then attempt 1 ended agent-failed (not instance-lost: no heartbeat timeout was waited
    # for) and the run succeeded on attempt 2, on another instance
    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.attempt == 2
    assert record.attempts["1"].end_reason is EndReason.AGENT_FAILED
    assert record.attempts["2"].instance_id != record.attempts["1"].instance_id
    # And it ended within seconds of StartAgent writing the agent's config, before a heartbeat
    # timeout could have fired
    config = session.s3.head_object(Bucket=session.stack.bucket, Key=agent_config_key(run_id, 1))
    ended = datetime.fromisoformat(record.attempts["1"].ended_at or "")
    assert (ended - config["LastModified"]).total_seconds() < HEARTBEAT_SECONDS
    assert len(session.run_instance_ids(run_id)) == 2
    _assert_no_instance_left(session, run_id)


def test_agent_frozen_on_a_live_instance_ends_the_attempt_at_the_heartbeat_and_resumes(
    session, runner, wait_for_record
):
    # Given a run whose agent is training on attempt 1
    run_id = session.start(runner.spec(SCRIPT))
    wait_for_record(
        session, run_id, lambda record: record.attempt == 1 and record.status.value == "RUNNING"
    )
    (instance_id,) = session.run_instance_ids(run_id)
    instance = session.emulator.fleet.get(instance_id)
    (agent,) = _agents(instance)

    # When the agent freezes (the instance stays up, the script keeps running): no heartbeat
    agent.send_signal(signal.SIGSTOP)
    outcome = session.wait(run_id, timeout_seconds=240)

    # Then the heartbeat timeout ends attempt 1 as a lost instance, and attempt 2 succeeds
    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.attempt == 2
    assert record.attempts["1"].end_reason is EndReason.INSTANCE_LOST
    assert record.attempts["1"].instance_id == instance_id
    # And the frozen instance is gone with all its processes
    assert instance.terminated.is_set()
    _assert_no_instance_left(session, run_id)

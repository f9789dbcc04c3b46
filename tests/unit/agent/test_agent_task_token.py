"""Heartbeats and the end of the task token."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from instance_agent.periodic import PeriodicThread
from instance_agent.task_token import MAX_CAUSE_CHARS, TaskToken, heartbeat_interval


class FakeStepFunctions:
    def __init__(self, fail_heartbeats: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_heartbeats = fail_heartbeats

    def send_task_heartbeat(self, **kwargs: Any) -> None:
        self.calls.append(("heartbeat", kwargs))
        if self.fail_heartbeats:
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "x"}}, "Heartbeat")

    def send_task_success(self, **kwargs: Any) -> None:
        self.calls.append(("success", kwargs))

    def send_task_failure(self, **kwargs: Any) -> None:
        self.calls.append(("failure", kwargs))


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


@pytest.mark.parametrize(("timeout", "interval"), [(300, 100.0), (30, 10.0), (2, 1.0), (1, 1.0)])
def test_heartbeats_come_three_times_per_timeout_but_at_most_once_a_second(timeout, interval):
    assert heartbeat_interval(timeout) == interval


def test_a_heartbeat_thread_beats_until_stopped():
    client = FakeStepFunctions()
    token = TaskToken(client, "tok")
    thread = PeriodicThread("heartbeat", 0.01, token.heartbeat, run_first=True)
    thread.start()

    _wait_for(lambda: len(client.calls) >= 3)
    thread.stop()

    assert not thread.is_alive()
    assert all(call == ("heartbeat", {"taskToken": "tok"}) for call in client.calls)


def test_a_failing_heartbeat_is_logged_and_does_not_raise():
    client = FakeStepFunctions(fail_heartbeats=True)

    TaskToken(client, "tok").heartbeat()

    assert client.calls == [("heartbeat", {"taskToken": "tok"})]


def test_a_failure_cause_is_cut_to_32000_characters():
    client = FakeStepFunctions()

    TaskToken(client, "tok").fail("Runctl.ScriptFailed", "x" * 40_000)

    ((name, kwargs),) = client.calls
    assert name == "failure" and kwargs["error"] == "Runctl.ScriptFailed"
    assert len(kwargs["cause"]) == MAX_CAUSE_CHARS == 32_000


def test_a_periodic_action_that_raises_keeps_being_called():
    calls = []

    def flaky() -> None:
        calls.append(1)
        raise RuntimeError("transient")

    thread = PeriodicThread("flaky", 0.01, flaky)
    thread.start()
    _wait_for(lambda: len(calls) >= 2)
    thread.stop()

    assert len(calls) >= 2 and not thread.is_alive()

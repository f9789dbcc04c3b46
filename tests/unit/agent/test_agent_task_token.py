"""Heartbeats and the end of the task token."""

from __future__ import annotations

import threading
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


def test_given_a_task_failed_for_an_interruption_when_the_script_exits_then_no_second_end():
    client = FakeStepFunctions()
    token = TaskToken(client, "tok")

    assert token.fail("Runctl.Interrupted", '{"reason": "spot-interrupted"}') is True
    assert token.succeed('{"outcome": "succeeded"}') is False
    assert token.fail("Runctl.ScriptFailed", "{}") is False

    assert client.calls == [
        (
            "failure",
            {
                "taskToken": "tok",
                "error": "Runctl.Interrupted",
                "cause": '{"reason": "spot-interrupted"}',
            },
        )
    ]


def test_given_an_ended_task_then_heartbeats_stop():
    client = FakeStepFunctions()
    token = TaskToken(client, "tok")
    token.heartbeat()
    token.fail("Runctl.Interrupted", "{}")

    token.heartbeat()
    token.heartbeat()

    assert [name for name, _ in client.calls] == ["heartbeat", "failure"]
    assert token.ended


def test_given_two_threads_ending_the_task_at_once_then_exactly_one_call_is_made():
    client = FakeStepFunctions()
    token = TaskToken(client, "tok")
    outcomes: list[bool] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(token.fail("Runctl.Interrupted", "{}"))),
        threading.Thread(target=lambda: outcomes.append(token.succeed("{}"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == [False, True]
    assert len(client.calls) == 1


class FlakyFailures(FakeStepFunctions):
    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code
        self.raised = False

    def send_task_failure(self, **kwargs: Any) -> None:
        self.calls.append(("failure", kwargs))
        if not self.raised:
            self.raised = True
            raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "SendTaskFailure")


def test_given_an_end_that_did_not_get_through_then_it_can_be_sent_again_but_only_that_end():
    client = FlakyFailures("ThrottlingException")
    token = TaskToken(client, "tok")

    with pytest.raises(ClientError):
        token.fail("Runctl.Interrupted", "{}")
    assert token.succeed("{}") is False
    assert token.retry_undelivered() is True
    assert token.retry_undelivered() is False

    assert [(name, kwargs["error"]) for name, kwargs in client.calls] == [
        ("failure", "Runctl.Interrupted"),
        ("failure", "Runctl.Interrupted"),
    ]


def test_given_a_task_that_is_gone_already_when_ended_then_it_counts_as_delivered():
    client = FlakyFailures("TaskTimedOut")
    token = TaskToken(client, "tok")

    assert token.fail("Runctl.Interrupted", "{}") is True
    assert token.retry_undelivered() is False
    assert len(client.calls) == 1


def test_given_a_long_interval_when_triggered_then_the_action_runs_now():
    calls = []
    thread = PeriodicThread("slow", 3600, lambda: calls.append(1))
    thread.start()
    try:
        thread.trigger()
        _wait_for(lambda: len(calls) == 1)
        thread.trigger()
        _wait_for(lambda: len(calls) == 2)
    finally:
        thread.stop()

    assert not thread.is_alive()


def test_given_a_final_tick_when_stopped_then_the_action_runs_once_more_after_the_thread_ends():
    calls = []
    thread = PeriodicThread("notices", 3600, lambda: calls.append(thread.is_alive()))
    thread.start()

    thread.stop(final_tick=True)

    assert calls == [False]  # no tick while it ran (hour-long interval), then one after it
    assert not thread.is_alive()


def test_given_a_failing_final_tick_when_stopped_then_stop_still_returns():
    def fails() -> None:
        raise OSError("IMDS unreachable")

    thread = PeriodicThread("notices", 3600, fails)
    thread.start()

    thread.stop(final_tick=True)

    assert not thread.is_alive()

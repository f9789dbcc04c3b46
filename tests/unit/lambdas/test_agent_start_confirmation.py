"""confirm_agent_started: bounded, whatever SSM answers."""

from __future__ import annotations

import pytest

from lambdas.errors import AgentStartFailed
from lambdas.integrations.ssm_commands import CommandStatus
from lambdas.logic.agent_start import CONFIRM_SECONDS, confirm_agent_started


class StuckCommands:
    """A start command that never finishes (an instance whose SSM agent stopped answering)."""

    def __init__(self) -> None:
        self.polls = 0

    def status(self, command_id: str, instance_id: str) -> CommandStatus:
        self.polls += 1
        return CommandStatus("InProgress", "", "")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_given_a_start_command_that_never_ends_when_confirming_then_it_fails_at_the_bound():
    commands, fake = StuckCommands(), FakeTime()

    with pytest.raises(AgentStartFailed, match=r"not confirmed within \d+ s .*InProgress"):
        confirm_agent_started(commands, "cmd-1", "i-1", fake.clock, fake.sleep)  # type: ignore[arg-type]

    # It waited the bound and no longer: the Lambda's own timeout (60 s) is never reached
    assert CONFIRM_SECONDS <= fake.now < CONFIRM_SECONDS + 2
    assert CONFIRM_SECONDS < 60 - 10
    assert commands.polls >= CONFIRM_SECONDS

"""AttemptEnding: one decision of how an attempt ends, a notice or the attempt itself."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from instance_agent.ending import AttemptEnding
from instance_agent.main import exit_status
from instance_agent.notices import SPOT_INTERRUPTED, Notice
from instance_agent.result import AgentResult

NOTICE = Notice(SPOT_INTERRUPTED, "2026-11-23T10:00:00Z", "2026-11-23T10:02:00Z", "imds")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_given_a_notice_while_staging_then_the_script_never_starts():
    ending = AttemptEnding()

    def start() -> subprocess.Popen[bytes]:
        raise AssertionError("the script must not start after a notice")

    assert ending.interrupt(NOTICE) == (True, None)
    assert ending.start_script(start) is None
    assert ending.notice == NOTICE


def test_given_a_running_script_when_a_notice_comes_then_it_gets_the_process_to_stop(sleeper):
    ending = AttemptEnding()
    ending.start_script(lambda: sleeper)

    assert ending.running_script() is sleeper
    assert ending.interrupt(NOTICE) == (True, sleeper)
    assert ending.running_script() is None


def test_given_an_interruption_when_the_script_then_exits_then_its_own_end_is_refused(sleeper):
    ending = AttemptEnding()
    ending.start_script(lambda: sleeper)
    ending.interrupt(NOTICE)

    assert ending.end_by_itself() is False
    assert ending.interrupt(NOTICE) == (False, None)
    assert ending.interrupted


def test_given_the_attempt_ending_by_itself_when_a_notice_comes_then_it_is_refused(sleeper):
    ending = AttemptEnding()
    ending.start_script(lambda: sleeper)

    assert ending.end_by_itself() is True
    assert ending.interrupt(NOTICE) == (False, None)
    assert not ending.interrupted


def test_given_a_script_that_has_exited_when_a_notice_comes_then_its_exit_wins():
    ending = AttemptEnding()
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    ending.start_script(lambda: process)
    process.wait()

    assert ending.interrupt(NOTICE) == (False, None)
    assert ending.end_by_itself() is True


@pytest.mark.parametrize(
    ("outcome", "status"),
    [("succeeded", 0), ("interrupted", 0), ("script-failed", 1), ("agent-failed", 1)],
)
def test_an_interrupted_attempt_that_handed_off_exits_0(outcome, status):
    assert exit_status(AgentResult(outcome=outcome)) == status

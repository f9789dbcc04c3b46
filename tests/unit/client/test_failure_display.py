"""How the CLI shows a failed execution's cause: one line, the stack trace only with --verbose."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from lambdas.models.run_record import RunRecord, RunStatus
from runctl import render
from runctl.client.client import RunState
from runctl.client.follow import RunOutcome
from runctl.render import print_outcome, print_state
from runctl.render_sweeps import print_sweep_outcome
from runctl.sweeps import SweepOutcome
from tests.unit.client.handlers_for_tests import local_mode_cause


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> Console:
    """The CLI's console, as an 80-column terminal whose output the test reads."""
    console = Console(width=80, record=True, force_terminal=False, highlight=False)
    monkeypatch.setattr(render, "console", console)
    monkeypatch.setattr("runctl.render_sweeps.console", console)
    return console


def _failed_outcome() -> RunOutcome:
    return RunOutcome(
        run_id="run-1",
        execution_status="FAILED",
        record=None,
        error="RunSpecInvalid",
        cause=local_mode_cause(),
    )


def _lines_naming(console: Console, text: str) -> list[str]:
    """The printed lines that hold `text` (what was printed is read again afterwards)."""
    return [line for line in console.export_text(clear=False).splitlines() if text in line]


def test_given_a_run_refused_by_a_lambda_when_its_outcome_is_shown_then_one_line_no_trace(shown):
    print_outcome(_failed_outcome())

    text = shown.export_text(clear=False)
    assert _lines_naming(shown, "RunSpecInvalid") == ["  RunSpecInvalid: entry_point: bad"]
    assert "stackTrace" not in text and "Traceback" not in text


def test_given_verbose_when_the_outcome_is_shown_then_the_stack_trace_follows_the_line(shown):
    print_outcome(_failed_outcome(), verbose=True)

    lines = shown.export_text().splitlines()
    at = lines.index("  RunSpecInvalid: entry_point: bad")
    assert lines[at + 1] == "    Traceback (most recent call last):"
    assert any("raises_runspec_invalid" in line for line in lines[at + 1 :])


def test_given_a_very_long_message_when_shown_on_80_columns_then_it_stays_one_line(shown):
    message = "RunSpec is invalid: " + "; ".join(f"environment.V{n}: too long" for n in range(20))
    cause = json.dumps({"errorType": "RunSpecInvalid", "errorMessage": message})
    outcome = RunOutcome("run-1", "FAILED", None, "RunSpecInvalid", cause)

    print_outcome(outcome)

    [line] = _lines_naming(shown, "RunSpecInvalid")
    assert line.startswith("  RunSpecInvalid: RunSpec is invalid: environment.V0: too long")
    assert line.endswith("…")


def test_given_a_run_that_never_started_when_its_status_is_shown_then_one_line(shown):
    state = RunState("run-1", None, "FAILED", "RunSpecInvalid", local_mode_cause())

    print_state(state)

    assert _lines_naming(shown, "RunSpecInvalid") == [
        "  it never started: RunSpecInvalid: entry_point: bad"
    ]
    assert "Traceback" not in shown.export_text()


def test_given_verbose_when_its_status_is_shown_then_with_the_stack_trace(shown):
    state = RunState("run-1", None, "FAILED", "RunSpecInvalid", local_mode_cause())

    print_state(state, verbose=True)

    assert "    Traceback (most recent call last):" in shown.export_text().splitlines()


def test_given_a_run_whose_execution_failed_before_its_record_was_final_then_the_cause(shown):
    # Given a recorded run still LAUNCHING whose execution failed with an uncaught Lambda error
    launching = RunRecord(
        run_id="run-1",
        status=RunStatus.LAUNCHING,
        execution_arn="arn:aws:states:us-east-1:1:execution:TrainRun:run-1",
        spec={},
        created_at="2026-11-23T10:00:00+00:00",
        updated_at="2026-11-23T10:00:00+00:00",
    )
    outcome = RunOutcome("run-1", "FAILED", launching, "RunSpecInvalid", local_mode_cause())

    print_outcome(outcome)

    assert _lines_naming(shown, "RunSpecInvalid") == ["  error: RunSpecInvalid: entry_point: bad"]


def test_given_a_sweep_refused_by_a_lambda_when_shown_then_one_line(shown):
    cause = json.dumps(
        {
            "errorMessage": "grid.lr: no values",
            "errorType": "SweepSpecInvalid",
            "requestId": "7c1f3a52",
            "stackTrace": ['  File "/var/task/lambdas/handlers/expand_sweep.py", line 9\n'],
        }
    )
    outcome = SweepOutcome("sweep-1", "FAILED", "SweepSpecInvalid", cause, None)

    print_sweep_outcome(outcome)
    quiet = shown.export_text(clear=True)
    print_sweep_outcome(outcome, verbose=True)
    verbose = shown.export_text()

    assert "  SweepSpecInvalid: grid.lr: no values" in quiet.splitlines()
    assert "expand_sweep.py" not in quiet
    assert '      File "/var/task/lambdas/handlers/expand_sweep.py", line 9' in verbose.splitlines()

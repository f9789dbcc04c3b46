"""What the display tests share: the CLI's console, recorded, and a running run's record."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from lambdas.models.run_record import Attempt, RunRecord, RunStatus
from runctl import render


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> Console:
    """The CLI's console, as a 200-column terminal whose output the test reads."""
    console = Console(width=200, record=True, force_terminal=False, highlight=False)
    monkeypatch.setattr(render, "console", console)
    return console


def running_record(*attempts: Attempt, setup: dict[str, dict[str, Any]] | None = None) -> RunRecord:
    """Run run-1, RUNNING on the last of `attempts`, with the agent's `setup` by attempt number."""
    return RunRecord(
        run_id="run-1",
        status=RunStatus.RUNNING,
        execution_arn="arn",
        spec={},
        created_at="2026-12-03T10:00:00+00:00",
        updated_at="2026-12-03T10:05:00+00:00",
        attempt=attempts[-1].number,
        attempts={str(attempt.number): attempt for attempt in attempts},
        setup=setup or {},
    )

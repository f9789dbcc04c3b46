"""RunsTable.advance_attempt: attempt n -> n+1 happens once, and only from attempt n."""

from __future__ import annotations

from lambdas.dal.runs_table import RunsTable
from lambdas.models.run_record import Attempt, EndReason, RunStatus
from lambdas.models.steps import RunContext

NOW = "2026-11-23T12:00:00+00:00"
LATER = "2026-11-23T12:05:00+00:00"


def test_given_run_on_attempt_2_when_a_late_plan_for_attempt_1_advances_then_nothing_changes(
    aws, runs_table, make_run_context
):
    # Given a run whose attempt 1 was interrupted and whose attempt 2 is training
    table = RunsTable(runs_table, aws.dynamodb)
    table.create(RunContext.model_validate(make_run_context("run-late")), NOW)
    assert table.start_attempt("run-late", Attempt(number=1, instance_id="i-first"), NOW)
    assert table.advance_attempt("run-late", 1, EndReason.SPOT_INTERRUPTED.value, NOW)
    assert table.start_attempt("run-late", Attempt(number=2, instance_id="i-second"), NOW)
    assert table.update_live(
        "run-late", 2, NOW, {"status": RunStatus.RUNNING.value, "task_token": "token-2"}
    )

    # When a PlanNextAttempt for attempt 1 arrives late (a retried step, a duplicate event)
    advanced = table.advance_attempt("run-late", 1, EndReason.INSTANCE_LOST.value, LATER)

    # Then it is refused, and attempt 2 goes on untouched: same attempt, status and token,
    # and attempt 1 keeps the reason it really ended with
    record = table.get("run-late")
    assert advanced is False
    assert record is not None
    assert record.attempt == 2
    assert record.status is RunStatus.RUNNING
    assert record.task_token == "token-2"
    assert record.attempts["1"].end_reason is EndReason.SPOT_INTERRUPTED
    assert record.attempts["2"].end_reason is None
    assert record.updated_at == NOW


def test_given_run_on_attempt_1_when_plan_advances_twice_then_only_the_first_counts(
    aws, runs_table, make_run_context
):
    table = RunsTable(runs_table, aws.dynamodb)
    table.create(RunContext.model_validate(make_run_context("run-twice")), NOW)
    assert table.start_attempt("run-twice", Attempt(number=1, instance_id="i-first"), NOW)

    first = table.advance_attempt("run-twice", 1, EndReason.SPOT_INTERRUPTED.value, NOW)
    second = table.advance_attempt("run-twice", 1, EndReason.INSTANCE_LOST.value, LATER)

    record = table.get("run-twice")
    assert (first, second) == (True, False)
    assert record is not None
    assert record.attempt == 2
    assert record.status is RunStatus.RESUMING
    assert record.attempts["1"].end_reason is EndReason.SPOT_INTERRUPTED

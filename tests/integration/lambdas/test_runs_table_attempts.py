"""RunsTable.advance_attempt: attempt n -> n+1 happens once, and only from attempt n; it keeps
the set-up reports of the newest SETUP_ATTEMPTS_KEPT attempts only."""

from __future__ import annotations

from instance_agent.run_record import RunRecord as AgentRunRecord
from lambdas.dal.runs_table import RunsTable
from lambdas.models.run_record import SETUP_ATTEMPTS_KEPT, Attempt, EndReason, RunStatus
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


def _run_attempts(table, aws, runs_table, run_id, last, with_setup=lambda number: True) -> None:
    """Attempts 1..last, each launched, its set-up recorded by its agent (where `with_setup`
    says so) and, but the last, advanced."""
    for number in range(1, last + 1):
        assert table.start_attempt(run_id, Attempt(number=number, instance_id=f"i-{number}"), NOW)
        if with_setup(number):
            agent = AgentRunRecord(aws.dynamodb, runs_table, run_id, number, clock=lambda: NOW)
            assert agent.set_setup({"environment": {"action": "RESTORED"}, "gpu": None})
        if number < last:
            assert table.advance_attempt(run_id, number, EndReason.SPOT_INTERRUPTED.value, NOW)


def test_given_more_attempts_than_set_ups_kept_when_advanced_then_the_newest_set_ups_stay(
    aws, runs_table, make_run_context
):
    # Given a run on its 12th attempt, every attempt's agent having recorded its set-up
    table = RunsTable(runs_table, aws.dynamodb)
    table.create(RunContext.model_validate(make_run_context("run-many")), NOW)
    last = SETUP_ATTEMPTS_KEPT + 2

    # When each attempt was advanced to the next
    _run_attempts(table, aws, runs_table, "run-many", last)

    # Then the newest SETUP_ATTEMPTS_KEPT attempts keep their set-up; every attempt stays
    record = table.get("run-many")
    assert record is not None
    assert sorted(record.setup, key=int) == [str(n) for n in range(3, last + 1)]
    assert record.setup[str(last)]["environment"] == {"action": "RESTORED"}
    assert len(record.attempts) == last


def test_given_an_attempt_without_set_up_when_its_turn_to_go_comes_then_the_advance_is_made(
    aws, runs_table, make_run_context
):
    # Given attempt 1 ended before its agent recorded a set-up
    table = RunsTable(runs_table, aws.dynamodb)
    table.create(RunContext.model_validate(make_run_context("run-gap")), NOW)

    # When the advance that drops attempt 1's set-up comes (REMOVE of an absent map key)
    _run_attempts(
        table, aws, runs_table, "run-gap", SETUP_ATTEMPTS_KEPT + 1, lambda number: number > 1
    )

    # Then it is made all the same
    record = table.get("run-gap")
    assert record is not None
    assert record.attempt == SETUP_ATTEMPTS_KEPT + 1
    assert sorted(record.setup, key=int) == [str(n) for n in range(2, SETUP_ATTEMPTS_KEPT + 2)]

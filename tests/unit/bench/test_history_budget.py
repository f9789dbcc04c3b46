"""The TrainRun history's worst case stays under Step Functions' 25,000 events: computed from
the polling, the deadlines and the caps on further attempts themselves (the RunSpec's
preemptions and retries together, runctl's agent-start and GPU retries), so changing any of them
past the limit fails here."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bench.history import (
    EVENTS_PER_POLL,
    HISTORY_LIMIT,
    max_interruptions_cap,
    max_resumes,
    worst_case_boot_polls,
    worst_case_build_polls,
    worst_case_history_events,
)
from lambdas.models.run_spec import MAX_RESUMES, InterruptionPolicy, RunSpec

CODE = {"s3_uri": "s3://runctl-bucket/code/" + "a" * 64 + ".tar.gz"}


def test_a_boot_that_runs_to_both_deadlines_costs_29_polls():
    # 45 s first wait, then 10 s polls backing off to 60 s: 13 polls to the 600 s instance
    # deadline, 16 more to the 900 s install deadline
    assert worst_case_boot_polls() == 29


def test_the_worst_case_at_the_most_attempts_a_run_can_have_is_under_the_history_limit():
    # Given the most further attempts (preemptions and retries at the RunSpec's joint cap, the
    # agent-start and GPU retries on top), and every boot running to its poll deadlines
    resumes = max_resumes()
    assert resumes >= MAX_RESUMES + 3

    # When the history is counted
    events = worst_case_history_events(resumes)

    # Then it fits, with room for what the estimate leaves out (Lambda retries)
    assert events < HISTORY_LIMIT * 0.9, (resumes, events)


def test_a_spec_asking_more_preemptions_and_retries_than_the_history_holds_is_refused():
    interruptions, retries = max_interruptions_cap(), MAX_RESUMES - max_interruptions_cap() + 1
    with pytest.raises(ValidationError, match=r"max_interruptions \+ retries\.max_retries is 71"):
        RunSpec.model_validate(
            {
                "code": CODE,
                "entry_point": "train.py",
                "interruptions": {"max_interruptions": interruptions},
                "retries": {"max_retries": retries},
            }
        )


def test_an_image_build_to_codebuild_s_timeout_costs_a_bounded_number_of_polls():
    # 10 s polls backing off (a third of the time waited, at most 10 min): ~22 calls for an
    # hour, not 360
    assert 15 <= worst_case_build_polls() <= 25
    assert worst_case_history_events(0) >= worst_case_build_polls() * EVENTS_PER_POLL


def test_the_cap_is_the_model_s_bound():
    assert max_interruptions_cap() == 70
    InterruptionPolicy(max_interruptions=70)


def test_one_more_attempt_costs_at_least_its_boot_polls():
    assert worst_case_history_events(1) - worst_case_history_events(0) >= (
        worst_case_boot_polls() * EVENTS_PER_POLL
    )

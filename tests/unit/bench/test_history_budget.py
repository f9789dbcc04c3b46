"""The TrainRun history's worst case stays under Step Functions' 25,000 events: computed from
the polling, the deadlines and the max_interruptions cap themselves, so changing any of them
past the limit fails here."""

from __future__ import annotations

from bench.history import (
    EVENTS_PER_POLL,
    HISTORY_LIMIT,
    max_interruptions_cap,
    worst_case_boot_polls,
    worst_case_history_events,
)
from lambdas.models.run_spec import InterruptionPolicy


def test_a_boot_that_runs_to_both_deadlines_costs_29_polls():
    # 45 s first wait, then 10 s polls backing off to 60 s: 13 polls to the 600 s instance
    # deadline, 16 more to the 900 s install deadline
    assert worst_case_boot_polls() == 29


def test_the_worst_case_at_the_interruption_cap_is_under_the_history_limit():
    # Given the RunSpec's cap, and every boot running to its poll deadlines
    cap = max_interruptions_cap()

    # When the history is counted
    events = worst_case_history_events(cap)

    # Then it fits, with room for what the estimate leaves out (Lambda retries)
    assert events < HISTORY_LIMIT * 0.9, (cap, events)


def test_the_cap_is_the_model_s_bound():
    assert max_interruptions_cap() == 70
    InterruptionPolicy(max_interruptions=70)


def test_one_more_attempt_costs_at_least_its_boot_polls():
    assert worst_case_history_events(1) - worst_case_history_events(0) >= (
        worst_case_boot_polls() * EVENTS_PER_POLL
    )

"""Boot polls back off, so a slow boot costs a few history events more, not one per interval."""

from __future__ import annotations

import pytest

from lambdas.logic.polling import MAX_POLL_SECONDS, next_poll_seconds


def _polls_until(boot_seconds: float, base: int) -> int:
    """How many polls the state machine makes before a boot of this length is seen as done."""
    waited, polls = float(base), 1  # the first poll follows one base wait
    while waited < boot_seconds:
        waited += next_poll_seconds(base, waited)
        polls += 1
    return polls


@pytest.mark.parametrize("waited", [0, 5, 29.9])
def test_a_young_boot_is_polled_at_the_base_rate(waited):
    assert next_poll_seconds(10, waited) == 10


def test_an_older_boot_waits_a_third_of_the_time_waited_up_to_a_minute():
    assert next_poll_seconds(10, 60) == 20
    assert next_poll_seconds(10, 150) == 50
    assert next_poll_seconds(10, 3600) == MAX_POLL_SECONDS


def test_the_base_rate_is_a_floor():
    assert next_poll_seconds(45, 60) == 45


def test_a_ten_minute_boot_costs_far_fewer_polls_than_a_fixed_interval():
    assert _polls_until(600, base=10) <= (600 / 10) / 3

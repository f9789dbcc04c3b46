"""How durations, costs and a run's ending read: 'completed in 1h12m, cost $0.84'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lambdas.models.run_record import Attempt, AttemptCost, RunCost, RunRecord
from runctl.client.costs import cost_label, cost_of, format_usd
from runctl.client.formatting import finish_line, format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.4, "42s"), (185, "3m05s"), (4320, "1h12m"), (183600, "2d03h"), (None, "-")],
)
def test_durations_read_at_a_glance(seconds, text):
    assert format_duration(seconds) == text


def _record(**fields) -> RunRecord:
    base = {
        "run_id": "run-1",
        "status": "SUCCEEDED",
        "execution_arn": "arn:aws:states:us-east-1:1:execution:sm:run-1",
        "spec": {},
        "created_at": "2026-11-23T10:00:00+00:00",
        "updated_at": "2026-11-23T11:12:00+00:00",
    }
    return RunRecord.model_validate({**base, **fields})


def _cost(usd: float, source: str) -> RunCost:
    return RunCost(
        total_usd=usd,
        attempts=[
            AttemptCost(number=1, seconds=4320, usd_per_hour=0.7, usd=usd, price_source=source)
        ],
    )


def test_a_finished_run_says_how_long_it_took_and_what_it_cost():
    record = _record(duration_seconds=4320, cost=_cost(0.84, "spot-price-history"))
    assert finish_line(record) == "completed in 1h12m, cost $0.84"


def test_a_static_price_is_labelled_an_estimate():
    record = _record(duration_seconds=4320, cost=_cost(0.84, "static-spot-estimate"))
    assert finish_line(record) == "completed in 1h12m, cost $0.84 (est.: static list prices)"


def test_an_unpriced_attempt_makes_the_total_a_lower_bound():
    cost = RunCost(
        total_usd=0.5,
        attempts=[
            AttemptCost(number=1, seconds=10, usd=0.5, price_source="spot-price-history"),
            AttemptCost(number=2, seconds=10, price_source="unpriced"),
        ],
    )
    assert cost_label(cost) == "≥ $0.50 (some instance types unpriced)"


def test_a_failed_run_says_why():
    record = _record(status="FAILED", duration_seconds=65, end_reason="script-failed")
    assert finish_line(record) == "failed after 1m05s (script-failed)"


def test_a_live_run_costs_so_far_from_static_prices():
    # Given a run on a g5.xlarge spot instance for the last hour, with no recorded cost yet
    started = datetime.now(UTC) - timedelta(hours=1)
    record = _record(
        status="RUNNING",
        created_at=started.isoformat(),
        attempts={
            "1": Attempt(
                number=1, instance_type="g5.xlarge", market="spot", started_at=started.isoformat()
            )
        },
    )

    cost = cost_of(record)

    assert cost is not None
    assert cost.attempts[0].price_source == "static-spot-estimate"
    assert 0 < cost.total_usd < 1.006  # under the on-demand hourly price
    assert "so far" in finish_line(record)
    assert "est.: static list prices" in finish_line(record)


def test_a_run_that_never_launched_has_no_cost():
    assert cost_of(_record(status="FAILED")) is None


@pytest.mark.parametrize(
    ("usd", "text"),
    [(0, "$0.00"), (0.84, "$0.84"), (12.5, "$12.50"), (0.004, "$0.004"), (0.0002, "<$0.001")],
)
def test_small_costs_are_not_shown_as_nothing(usd, text):
    assert format_usd(usd) == text

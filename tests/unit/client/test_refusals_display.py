"""`runctl status`, a followed run and `runs show` say which launch options EC2 refused before
the attempt's instance (why a spot run is on on-demand), and say nothing when none were."""

from __future__ import annotations

from lambdas.models.run_record import Attempt, RunRecord
from runctl.client.client import RunState
from runctl.client.follow import RunEvent
from runctl.client.reading import RunDetails
from runctl.render import FollowDisplay, details_view, print_state
from tests.unit.client.conftest import running_record

REFUSED = [
    "spot g5.xlarge in us-east-1a, us-east-1b: InsufficientInstanceCapacity",
    "spot g4dn.xlarge in us-east-1a, us-east-1b: InsufficientInstanceCapacity",
]


def _attempt(refused: list[str] | None) -> Attempt:
    return Attempt(
        number=1,
        instance_id="i-1",
        instance_type="g5.xlarge",
        market="on-demand",
        availability_zone="us-east-1a",
        started_at="2026-12-03T10:00:00",
        refused=refused,
    )


def _record(refused: list[str] | None) -> RunRecord:
    return running_record(_attempt(refused))


def test_given_refused_spot_when_status_then_each_refused_pool_is_named(shown):
    print_state(RunState("run-1", _record(REFUSED), "RUNNING"))

    assert "  launched after: " + "; ".join(REFUSED) in shown.export_text()


def test_given_first_choice_when_status_then_no_refusal_line(shown):
    print_state(RunState("run-1", _record(None), "RUNNING"))

    assert "launched after" not in shown.export_text()


def test_given_refused_spot_when_followed_then_the_attempt_line_says_why(shown):
    with FollowDisplay(shown) as display:
        display.handle(
            RunEvent("attempt", "attempt 1: g5.xlarge on-demand", {"attempt": _attempt(REFUSED)})
        )

    assert "launched after: spot g5.xlarge in us-east-1a" in shown.export_text()


def test_given_refused_spot_when_runs_show_then_market_names_the_refused_pools(shown):
    shown.print(details_view(RunDetails(record=_record(REFUSED), cost=None, metrics={})))

    text = shown.export_text()
    assert "on-demand" in text
    assert "not: spot g5.xlarge, spot g4dn.xlarge" in text

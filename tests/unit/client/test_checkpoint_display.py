"""`runctl status`, `runs show` and the end of a followed run say which checkpoint each attempt
resumed from (and its step), the newest durable one, and how much work an interruption cost."""

from __future__ import annotations

from lambdas.models.run_record import Attempt, EndReason, RunRecord
from runctl.client.checkpoints import attempt_checkpoints
from runctl.client.client import RunState
from runctl.client.follow import RunOutcome
from runctl.client.reading import RunDetails
from runctl.render import details_view, print_outcome, print_state
from tests.unit.client.conftest import running_record


def _summary(name: str, step: int | None, attempt: int, saved_at: str) -> dict:
    return {"name": name, "kind": "file", "step": step, "attempt": attempt, "saved_at": saved_at}


CKPT_40 = _summary("epoch=0-step=40.ckpt", 40, 1, "2026-12-03T10:02:30+00:00")
SIGTERM_55 = _summary("interrupted.ckpt", 55, 2, "2026-12-03T10:06:10+00:00")


def _record() -> RunRecord:
    """Attempt 1 lost at 10:03:00 (its newest durable checkpoint saved 10:02:30); attempt 2
    warned at 10:06:00, saved on SIGTERM at 10:06:10; attempt 3 running."""
    record = running_record(
        Attempt(
            number=1,
            started_at="2026-12-03T10:00:00+00:00",
            ended_at="2026-12-03T10:03:00+00:00",
            end_reason=EndReason.INSTANCE_LOST,
        ),
        Attempt(
            number=2,
            started_at="2026-12-03T10:03:30+00:00",
            ended_at="2026-12-03T10:06:00+00:00",
            end_reason=EndReason.SPOT_INTERRUPTED,
        ),
        Attempt(number=3, started_at="2026-12-03T10:07:00+00:00"),
    )
    record.checkpoints = {
        "1": {"resumed_from": None, "newest": CKPT_40},
        "2": {
            "resumed_from": CKPT_40,
            "newest": SIGTERM_55,
            "not_durable": [{"name": "last.ckpt", "seconds": 130.0}],
        },
        "3": {"resumed_from": SIGTERM_55, "newest": None, "skipped": ["x (version 2-9): torn"]},
    }
    return record


def test_work_lost_runs_from_the_checkpoint_the_next_attempt_used_to_the_attempts_end():
    facts = attempt_checkpoints(_record())

    assert facts[1].work_lost_seconds == 30.0  # lost at 10:03:00, durable since 10:02:30
    assert facts[2].work_lost_seconds == 0.0  # its SIGTERM save came after the warning
    assert facts[3].work_lost_seconds is None  # still running
    assert facts[2].resumed_from == "epoch=0-step=40.ckpt (step 40, attempt 1)"
    assert facts[1].resumed_from is None


def test_an_attempt_that_left_no_checkpoint_lost_all_its_own_time_not_the_gap_before_it():
    record = _record()
    record.checkpoints["3"]["resumed_from"] = CKPT_40  # attempt 2's saves never became durable

    # from attempt 2's start (10:03:30), not from the older checkpoint's save (10:02:30)
    assert attempt_checkpoints(record)[2].work_lost_seconds == 150.0


def test_status_says_what_the_current_attempt_resumed_from_and_any_warning(shown):
    print_state(RunState("run-1", _record(), "RUNNING"))

    lines = shown.export_text().splitlines()
    assert "  resumed from: interrupted.ckpt (step 55, attempt 2)" in lines
    assert "  warning: not resumed from x (version 2-9): torn" in lines


def test_runs_show_has_each_attempts_checkpoints_and_the_work_its_end_cost(shown):
    record = _record()
    shown.print(details_view(RunDetails(record=record, cost=None, metrics={})))

    rows = [line.split() for line in shown.export_text().splitlines()]
    first = next(row for row in rows if row[:2] == ["1", "nothing"])
    assert first[-2:] == ["1)", "30s"]  # newest: epoch=0-step=40.ckpt (step 40, attempt 1)
    second = next(row for row in rows if row[:2] == ["2", "epoch=0-step=40.ckpt"])
    assert second[-1] == "0s"
    assert "warning: last.ckpt kept changing and was never durable for 130.0 s" in " ".join(
        " ".join(row) for row in rows
    )


def test_a_followed_run_ends_with_what_each_attempt_resumed_from(shown):
    record = _record()
    print_outcome(RunOutcome("run-1", "SUCCEEDED", record, None, None))

    lines = shown.export_text().splitlines()
    assert (
        "  attempt 1: resumed from nothing (started from scratch); "
        "ended instance-lost, losing 30s of work"
    ) in lines
    assert (
        "  attempt 2: resumed from epoch=0-step=40.ckpt (step 40, attempt 1); "
        "ended spot-interrupted, losing 0s of work"
    ) in lines

"""Interruption notices: IMDS bodies, notice.json, the SIGKILL deadline, first notice wins, once."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from instance_agent import imds
from instance_agent.notices import (
    REBALANCE,
    SPOT_INTERRUPTED,
    Notice,
    NoticeError,
    NoticeWatcher,
    from_instance_action,
    from_notice_file,
    from_rebalance,
    parse_time,
    stop_wait_seconds,
)

SEEN = "2026-11-23T10:00:00+00:00"
SPOT_PATH = "meta-data/spot/instance-action"
REBALANCE_PATH = "meta-data/events/recommendations/rebalance"


# IMDS bodies


@pytest.mark.parametrize("action", ["terminate", "stop", "hibernate"])
def test_given_an_instance_action_when_parsed_then_it_is_a_spot_notice_with_its_time(action):
    notice = from_instance_action({"action": action, "time": "2026-11-23T10:02:00Z"}, SEEN)

    assert notice == Notice(SPOT_INTERRUPTED, SEEN, "2026-11-23T10:02:00Z", "imds")


def test_given_an_instance_action_with_an_unreadable_time_then_it_still_counts_without_one():
    notice = from_instance_action({"action": "terminate", "time": "soon"}, SEEN)

    assert notice == Notice(SPOT_INTERRUPTED, SEEN, None, "imds")


@pytest.mark.parametrize("body", [None, [], "terminate", {"action": "reboot"}, {"time": "x"}])
def test_given_an_instance_action_that_is_no_notice_then_there_is_none(body: Any):
    assert from_instance_action(body, SEEN) is None


def test_given_a_rebalance_recommendation_then_its_notice_time_is_kept_and_no_termination():
    notice = from_rebalance({"noticeTime": "2026-11-23T09:59:00Z"}, SEEN)

    assert notice == Notice(REBALANCE, "2026-11-23T09:59:00Z", None, "imds")


def test_given_a_rebalance_without_a_readable_time_then_the_time_it_was_seen_stands_in():
    assert from_rebalance({"noticeTime": 12}, SEEN) == Notice(REBALANCE, SEEN, None, "imds")
    assert from_rebalance("not an object", SEEN) is None


# notice.json


def test_given_a_spot_notice_file_when_parsed_then_every_field_is_kept():
    text = json.dumps(
        {
            "kind": "spot-interrupted",
            "notice_time": "2026-11-23T10:00:00Z",
            "termination_time": "2026-11-23T10:02:00Z",
            "source": "eventbridge",
        }
    )

    assert from_notice_file(text) == Notice(
        SPOT_INTERRUPTED, "2026-11-23T10:00:00Z", "2026-11-23T10:02:00Z", "eventbridge"
    )


def test_given_a_rebalance_notice_file_with_a_null_termination_time_then_it_is_a_rebalance():
    text = '{"kind": "rebalance", "notice_time": "2026-11-23T10:00:00+00:00", '
    text += '"termination_time": null, "source": "eventbridge"}'

    assert from_notice_file(text).kind == REBALANCE


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ('["spot-interrupted"]', "not a JSON object"),
        ('{"kind": "reboot", "notice_time": "2026-11-23T10:00:00Z"}', "kind must be"),
        ('{"kind": "rebalance"}', "notice_time"),
        ('{"kind": "rebalance", "notice_time": "yesterday"}', "notice_time"),
        (
            '{"kind": "spot-interrupted", "notice_time": "2026-11-23T10:00:00Z", '
            '"termination_time": "in two minutes"}',
            "termination_time",
        ),
    ],
)
def test_given_a_malformed_notice_file_when_parsed_then_the_problem_is_named(text, problem):
    with pytest.raises(NoticeError, match=problem):
        from_notice_file(text)


def test_given_the_cause_of_the_task_failure_then_it_is_the_contracts_json():
    notice = Notice(SPOT_INTERRUPTED, "N", "T", "imds")

    assert json.loads(notice.cause()) == {
        "reason": "spot-interrupted",
        "notice_time": "N",
        "termination_time": "T",
    }


@pytest.mark.parametrize(
    "text", ["2026-11-23T10:02:00Z", "2026-11-23T10:02:00+00:00", "2026-11-23T10:02:00"]
)
def test_given_iso_times_with_z_offset_or_none_then_all_are_utc(text):
    assert parse_time(text) == datetime(2026, 11, 23, 10, 2, tzinfo=UTC)


# The SIGKILL deadline


NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _at(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(
    ("grace", "termination", "expected"),
    [
        (90, None, 90.0),  # no termination time announced (a rebalance)
        (90, _at(120), 90.0),  # the grace ends before termination - 20 s
        (90, _at(60), 40.0),  # cut to termination - 20 s
        (30, _at(25.5), 5.5),
        (90, _at(20.5), 1.0),  # at least a second
        (90, _at(10), 1.0),  # never negative
        (90, _at(-300), 1.0),  # a termination time in the past
        (0.2, None, 1.0),
    ],
)
def test_given_a_grace_period_and_a_termination_time_then_sigkill_comes_in_time(
    grace, termination, expected
):
    assert stop_wait_seconds(grace, termination, NOW) == pytest.approx(expected)


# The watcher: first notice wins, each kind once


class FakeImdsClient:
    """Answers get_json like imds.ImdsClient; paths without a body answer None (404)."""

    def __init__(self) -> None:
        self.bodies: dict[str, Any] = {}
        self.error: imds.ImdsError | None = None
        self.gets = 0

    def get_json(self, path: str) -> Any:
        self.gets += 1
        if self.error is not None:
            raise self.error
        return self.bodies.get(path)


def _write_notice(path: Path, **fields: Any) -> None:
    body = {"notice_time": "2026-11-23T10:00:00Z", "termination_time": None, **fields}
    temporary = path.with_name(".notice.json.tmp")
    temporary.write_text(json.dumps(body))
    os.replace(temporary, path)


@pytest.fixture
def notice_file(tmp_path: Path) -> Path:
    return tmp_path / "notice.json"


@pytest.fixture
def fake_imds() -> FakeImdsClient:
    return FakeImdsClient()


@pytest.fixture
def handled() -> list[Notice]:
    return []


@pytest.fixture
def watcher(notice_file, fake_imds, handled) -> NoticeWatcher:
    return NoticeWatcher(notice_file, fake_imds, handled.append, clock=lambda: SEEN)


def test_given_no_notice_anywhere_when_polled_then_nothing_is_handled(watcher, handled):
    assert watcher.poll() == []
    assert handled == []


def test_given_a_spot_notice_from_both_sources_then_one_wins_and_is_handled_once(
    watcher, handled, notice_file, fake_imds
):
    _write_notice(notice_file, kind="spot-interrupted", source="eventbridge")
    fake_imds.bodies[SPOT_PATH] = {"action": "terminate", "time": "2026-11-23T10:02:00Z"}

    watcher.poll()
    watcher.poll()
    _write_notice(
        notice_file,
        kind="spot-interrupted",
        source="eventbridge",
        notice_time="2026-11-23T10:00:05Z",
    )
    watcher.poll()

    assert [(notice.kind, notice.source) for notice in handled] == [("spot-interrupted", "imds")]


@pytest.mark.parametrize(
    ("file_termination", "imds_termination", "winner"),
    [
        ("2026-11-23T10:02:00Z", "2026-11-23T10:00:06Z", "imds"),  # local mode: IMDS is sooner
        ("2026-11-23T10:00:30Z", "2026-11-23T10:02:00Z", "eventbridge"),
        (None, "2026-11-23T10:02:00Z", "imds"),  # a known time first
        ("2026-11-23T10:02:00Z", "soon", "eventbridge"),
        ("2026-11-23T10:02:00Z", "2026-11-23T10:02:00Z", "imds"),  # a tie: EC2's own time
    ],
)
def test_given_both_sources_in_one_poll_then_the_earlier_termination_wins(
    watcher, handled, notice_file, fake_imds, file_termination, imds_termination, winner
):
    _write_notice(
        notice_file,
        kind="spot-interrupted",
        source="eventbridge",
        termination_time=file_termination,
    )
    fake_imds.bodies[SPOT_PATH] = {"action": "terminate", "time": imds_termination}

    watcher.poll()

    assert [notice.source for notice in handled] == [winner]


def test_given_a_spot_notice_in_the_file_first_then_a_later_imds_one_changes_nothing(
    watcher, handled, notice_file, fake_imds
):
    _write_notice(notice_file, kind="spot-interrupted", source="eventbridge")
    watcher.poll()
    fake_imds.bodies[SPOT_PATH] = {"action": "terminate", "time": "2026-11-23T10:00:06Z"}

    watcher.poll()

    assert [notice.source for notice in handled] == ["eventbridge"]


def test_given_a_spot_notice_from_imds_first_then_a_later_file_changes_nothing(
    watcher, handled, notice_file, fake_imds
):
    fake_imds.bodies[SPOT_PATH] = {"action": "terminate", "time": "2026-11-23T10:02:00Z"}
    watcher.poll()
    _write_notice(notice_file, kind="spot-interrupted", source="eventbridge")

    watcher.poll()

    assert [notice.source for notice in handled] == ["imds"]
    assert handled[0].termination_time == "2026-11-23T10:02:00Z"


def test_given_a_rebalance_then_a_spot_warning_then_each_kind_is_handled_once(
    watcher, handled, fake_imds
):
    fake_imds.bodies[REBALANCE_PATH] = {"noticeTime": "2026-11-23T09:59:00Z"}
    watcher.poll()
    watcher.poll()
    fake_imds.bodies[SPOT_PATH] = {"action": "terminate", "time": "2026-11-23T10:02:00Z"}
    watcher.poll()
    watcher.poll()

    assert [notice.kind for notice in handled] == [REBALANCE, SPOT_INTERRUPTED]


def test_given_both_kinds_at_once_then_the_spot_warning_is_handled_first(
    watcher, handled, notice_file, fake_imds
):
    _write_notice(notice_file, kind="rebalance", source="eventbridge")
    fake_imds.bodies[SPOT_PATH] = {"action": "terminate", "time": "2026-11-23T10:02:00Z"}

    watcher.poll()

    assert [notice.kind for notice in handled] == [SPOT_INTERRUPTED, REBALANCE]


def test_given_a_malformed_notice_file_then_it_is_logged_once_and_a_valid_rewrite_counts(
    watcher, handled, notice_file, caplog
):
    notice_file.write_text('{"kind": "spot-interrupted"')
    with caplog.at_level(logging.WARNING, logger="instance_agent.notices"):
        watcher.poll()
        watcher.poll()

    assert handled == []
    assert [record.getMessage() for record in caplog.records].count(
        f"ignoring {notice_file}: not JSON: Expecting ',' delimiter: line 1 column 28 (char 27)"
    ) == 1

    _write_notice(notice_file, kind="spot-interrupted", source="eventbridge")
    watcher.poll()

    assert [notice.kind for notice in handled] == [SPOT_INTERRUPTED]


def test_given_imds_unreachable_then_it_is_logged_once_polled_on_and_the_file_still_works(
    watcher, handled, notice_file, fake_imds, caplog
):
    fake_imds.error = imds.ImdsError("IMDS token: connection refused")
    with caplog.at_level(logging.INFO, logger="instance_agent.notices"):
        watcher.poll()
        watcher.poll()
        _write_notice(notice_file, kind="spot-interrupted", source="eventbridge")
        watcher.poll()

    unreachable = [
        record for record in caplog.records if "connection refused" in record.getMessage()
    ]
    assert len(unreachable) == 1
    assert fake_imds.gets == 3  # asked at every poll
    assert [notice.source for notice in handled] == ["eventbridge"]

    fake_imds.error = None
    fake_imds.bodies[REBALANCE_PATH] = {"noticeTime": "2026-11-23T09:59:00Z"}
    watcher.poll()

    assert [notice.kind for notice in handled] == [SPOT_INTERRUPTED, REBALANCE]


def test_given_no_imds_client_then_only_the_file_is_watched(notice_file, handled):
    watcher = NoticeWatcher(notice_file, None, handled.append)
    _write_notice(notice_file, kind="rebalance", source="eventbridge")

    assert [notice.kind for notice in watcher.poll()] == [REBALANCE]

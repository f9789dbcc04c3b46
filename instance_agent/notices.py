"""Interruption notices: EC2 says the instance goes in two minutes, or recommends moving off it.

Two sources, whichever speaks first wins (docs/architecture.md, "Interruptions and resume"):
- IMDS, polled: `spot/instance-action` ({"action": "terminate"|"stop"|"hibernate", "time": ISO})
  and `events/recommendations/rebalance` ({"noticeTime": ISO});
- `$RUNCTL_HOME/notice.json`, written by the OnInstanceEvent Lambda over SSM from the EventBridge
  event: {"kind": "spot-interrupted"|"rebalance", "notice_time", "termination_time", "source"};
  StopRun writes the same file with kind "stop-requested" (the user's `runctl stop`).
The first notice of each kind is handed on once; later ones of that kind, from either source or
from the next poll, are ignored.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import imds
from .clock import utc_now_iso

logger = logging.getLogger(__name__)

SPOT_INTERRUPTED = "spot-interrupted"
REBALANCE = "rebalance"
# The user's `runctl stop` (StopRun writes it to notice.json): stop, upload, end CANCELLED.
STOP_REQUESTED = "stop-requested"
# In order of urgency: a spot warning seen with a stop request decides how the attempt ends.
KINDS = (SPOT_INTERRUPTED, REBALANCE, STOP_REQUESTED)
SPOT_ACTIONS = ("terminate", "stop", "hibernate")
NOTICE_FILE = "notice.json"
# SIGKILL comes this long before the announced termination at the latest, so the last checkpoint
# upload, result.json and handoff.json still fit; and never sooner than a second after SIGTERM.
TERMINATION_MARGIN_SECONDS = 20.0
MIN_STOP_WAIT_SECONDS = 1.0


class NoticeError(ValueError):
    """A notice that cannot be understood."""


@dataclass(frozen=True)
class Notice:
    kind: str  # SPOT_INTERRUPTED, REBALANCE or STOP_REQUESTED
    notice_time: str  # ISO-8601
    termination_time: str | None  # ISO-8601; None when not announced (a rebalance)
    source: str  # "imds" or what notice.json says (e.g. "eventbridge")

    def cause(self) -> str:
        """The Runctl.Interrupted task failure's cause (lambdas/constants.py, ERROR_INTERRUPTED)."""
        return json.dumps(
            {
                "reason": self.kind,
                "notice_time": self.notice_time,
                "termination_time": self.termination_time,
            }
        )


def parse_time(value: str) -> datetime:
    """An ISO-8601 time; 'Z' is UTC, and so is a time without an offset. ValueError if not one."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)  # Python 3.9 reads no 'Z', hence the line above
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _time_or_none(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parse_time(value)
    except ValueError:
        return None
    return value


def from_instance_action(body: Any, observed_at: str) -> Notice | None:
    """IMDS spot/instance-action; None when the body is not a notice. It carries no notice time:
    the time the agent saw it stands in."""
    if not isinstance(body, dict) or body.get("action") not in SPOT_ACTIONS:
        return None
    # An unreadable time still means the instance goes: act, without the bound it would give.
    return Notice(SPOT_INTERRUPTED, observed_at, _time_or_none(body.get("time")), "imds")


def from_rebalance(body: Any, observed_at: str) -> Notice | None:
    """IMDS events/recommendations/rebalance; None when the body is not a recommendation."""
    if not isinstance(body, dict):
        return None
    return Notice(REBALANCE, _time_or_none(body.get("noticeTime")) or observed_at, None, "imds")


def from_notice_file(text: str) -> Notice:
    """The content of notice.json; NoticeError names what is wrong with it."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise NoticeError(f"not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise NoticeError("not a JSON object")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise NoticeError(f"kind must be one of {list(KINDS)}, not {kind!r}")
    notice_time = raw.get("notice_time")
    if not isinstance(notice_time, str) or _time_or_none(notice_time) is None:
        raise NoticeError(f"notice_time is not an ISO-8601 time: {notice_time!r}")
    termination_time = raw.get("termination_time")
    if termination_time is not None and _time_or_none(termination_time) is None:
        raise NoticeError(f"termination_time is not an ISO-8601 time: {termination_time!r}")
    source = raw.get("source")
    return Notice(kind, notice_time, termination_time, source if isinstance(source, str) else "")


def stop_wait_seconds(grace_seconds: float, termination_time: str | None, now: datetime) -> float:
    """How long the script gets between SIGTERM and SIGKILL: the grace period, cut to end
    TERMINATION_MARGIN_SECONDS before the announced termination, and at least a second."""
    wait = float(grace_seconds)
    if termination_time is not None:
        try:
            left = (parse_time(termination_time) - now).total_seconds()
        except ValueError:
            left = None  # checked when parsed; an unreadable time gives no bound
        if left is not None:
            wait = min(wait, left - TERMINATION_MARGIN_SECONDS)
    return max(MIN_STOP_WAIT_SECONDS, wait)


def _termination_order(notice: Notice) -> tuple[int, datetime]:
    """Sorts a known termination time first, the earliest of them first."""
    if notice.termination_time is None:
        return (1, datetime.max.replace(tzinfo=timezone.utc))
    try:
        return (0, parse_time(notice.termination_time))
    except ValueError:
        return (1, datetime.max.replace(tzinfo=timezone.utc))


class NoticeWatcher:
    """Call poll() every few seconds (a PeriodicThread does). `handle` gets the first notice of
    each kind, once, in the polling thread; a spot warning goes before a rebalance seen with it."""

    def __init__(
        self,
        notice_file: Path,
        imds_client: Any | None,
        handle: Callable[[Notice], None],
        clock: Callable[[], str] = utc_now_iso,
    ) -> None:
        self.notice_file = notice_file
        self.imds_client = imds_client
        self.handle = handle
        self.clock = clock
        self._handled: set[str] = set()
        self._lock = threading.Lock()
        self._file_signature: tuple[int, int, int] | None = None
        self._imds_warned = False
        self._ignored_bodies: set[str] = set()

    def poll(self) -> list[Notice]:
        """Look at both sources; return the notices handed on by this poll. When both have a
        notice of one kind, the one announcing the earlier termination goes (IMDS on a tie: its
        time is EC2's own, the EventBridge one is an estimate)."""
        found = [*self._from_imds(), *self._from_file()]
        found.sort(key=lambda notice: (KINDS.index(notice.kind), _termination_order(notice)))
        return [notice for notice in found if self._dispatch(notice)]

    def _dispatch(self, notice: Notice) -> bool:
        with self._lock:
            if notice.kind in self._handled:
                return False
            self._handled.add(notice.kind)
        logger.warning(
            "%s notice from %s: notice time %s, termination time %s",
            notice.kind,
            notice.source or "notice.json",
            notice.notice_time,
            notice.termination_time or "not announced",
        )
        self.handle(notice)
        return True

    def _from_file(self) -> list[Notice]:
        try:
            info = os.stat(self.notice_file)
        except FileNotFoundError:
            return []
        except OSError as error:
            logger.warning("cannot look at %s: %s", self.notice_file, error)
            return []
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        if signature == self._file_signature:
            return []  # read (and handed on or found malformed) already
        self._file_signature = signature
        try:
            text = self.notice_file.read_text(encoding="utf-8")
            return [from_notice_file(text)]
        except (OSError, UnicodeDecodeError, NoticeError) as error:
            logger.warning("ignoring %s: %s", self.notice_file, error)
            return []

    def _from_imds(self) -> list[Notice]:
        if self.imds_client is None:
            return []
        try:
            spot = imds.spot_instance_action(self.imds_client)
            rebalance = imds.rebalance_recommendation(self.imds_client)
        except imds.ImdsError as error:
            if not self._imds_warned:
                logger.info(
                    "instance metadata gives no notices (%s); still watching it and %s",
                    error,
                    self.notice_file.name,
                )
                self._imds_warned = True
            return []
        now = self.clock()
        notices = [from_instance_action(spot, now), from_rebalance(rebalance, now)]
        for name, body, notice in zip(("instance-action", "rebalance"), (spot, rebalance), notices):
            text = json.dumps(body)[:200]
            if body is not None and notice is None and text not in self._ignored_bodies:
                self._ignored_bodies.add(text)  # the next polls get the same answer: say it once
                logger.warning("ignoring IMDS %s: %s", name, text)
        return [notice for notice in notices if notice is not None]

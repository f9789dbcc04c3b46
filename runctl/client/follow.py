"""Following a run: changes in its record and lines of its log stream become RunEvents.

Used by `runctl submit --wait`, `runctl logs -f` and local mode alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdas.constants import log_stream_name
from lambdas.dal.runs_table import RunsTable
from lambdas.logic.image_builds import build_log_stream
from lambdas.models.run_record import FINAL_STATUSES, Attempt, RunRecord

METRIC_PREFIX = "RUNCTL_METRIC "


@dataclass(frozen=True)
class RunEvent:
    """Something worth telling the user while a run goes on."""

    kind: str  # status | attempt | metric | log | end
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    execution_status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    record: RunRecord | None
    error: str | None
    cause: str | None
    outputs_dir: Path | None = None

    @property
    def status(self) -> str:
        return self.record.status.value if self.record else self.execution_status


def describe_attempt(attempt: Attempt) -> str:
    """'attempt 2: g5.xlarge spot i-0abc (us-east-1a)'."""
    parts = [attempt.instance_type, attempt.market, attempt.instance_id]
    where = f" ({attempt.availability_zone})" if attempt.availability_zone else ""
    return f"attempt {attempt.number}: " + " ".join(part for part in parts if part) + where


def describe_refusals(attempt: Attempt) -> str | None:
    """'launched after: spot g5.xlarge in us-east-1a: InsufficientInstanceCapacity; ...': why
    the attempt is not on its first choice (None when it is)."""
    if not attempt.refused:
        return None
    return "launched after: " + "; ".join(attempt.refused)


# LogLine.attempt of the image build's lines (they come before attempt 1's).
BUILD_LINES = 0


@dataclass(frozen=True)
class LogLine:
    attempt: int  # BUILD_LINES for the container image's build
    message: str
    timestamp_ms: int | None = None


def build_stream_name(image_uri: str, build_id: str) -> str:
    """CodeBuild's stream for the run's image build: the stream name BuildImage gave
    (lambdas/logic/image_builds.py) and the build's uuid ('<project>:<uuid>')."""
    return f"{build_log_stream(image_uri.rsplit(':', 1)[-1])}/{build_id.rsplit(':', 1)[-1]}"


class LogReader:
    """Reads each attempt's CloudWatch stream `<run_id>/<attempt>` (and the image build's) from
    where it left off."""

    def __init__(self, logs: Any, log_group: str, run_id: str) -> None:
        self.logs = logs
        self.log_group = log_group
        self.run_id = run_id
        self._tokens: dict[int, str] = {}

    def read_build(self, record: RunRecord) -> list[LogLine]:
        """New lines of the run's image build ([] when it built nothing)."""
        image = record.image
        if image is None or image.build_id is None:
            return []
        return self._read(BUILD_LINES, build_stream_name(image.uri, image.build_id))

    def read(self, attempt: int) -> list[LogLine]:
        """New lines of this attempt's stream since the last call ([] before the stream exists)."""
        return self._read(attempt, log_stream_name(self.run_id, attempt))

    def _read(self, attempt: int, stream: str) -> list[LogLine]:
        lines: list[LogLine] = []
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": self.log_group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if attempt in self._tokens:
                kwargs["nextToken"] = self._tokens[attempt]
            try:
                response = self.logs.get_log_events(**kwargs)
            except self.logs.exceptions.ResourceNotFoundException:
                return lines  # the agent has not created its stream yet
            events = response.get("events", [])
            lines.extend(
                LogLine(attempt, event["message"].rstrip("\n"), event.get("timestamp"))
                for event in events
            )
            token = response.get("nextForwardToken")
            # The same token back means the end of the stream for now.
            if not events or token is None or token == self._tokens.get(attempt):
                if token is not None:
                    self._tokens[attempt] = token
                return lines
            self._tokens[attempt] = token


def metric_of(message: str) -> dict[str, Any] | None:
    """The object of a `RUNCTL_METRIC {...}` log line, else None."""
    if not message.startswith(METRIC_PREFIX):
        return None
    try:
        metric = json.loads(message[len(METRIC_PREFIX) :])
    except ValueError:
        return None
    return metric if isinstance(metric, dict) else None


class RunFollower:
    """Turns changes in the run record and the run's log streams into RunEvents."""

    def __init__(
        self,
        table: RunsTable,
        logs: Any,
        log_group: str,
        run_id: str,
        on_event: Callable[[RunEvent], None],
    ) -> None:
        self.table = table
        self.run_id = run_id
        self.on_event = on_event
        self.record: RunRecord | None = None
        self._reader = LogReader(logs, log_group, run_id)
        self._attempt_read = 1
        self._attempt_shown: tuple[int, str | None] | None = None

    def poll(self) -> RunRecord | None:
        record = self.table.get(self.run_id)
        if record is None:
            return None
        previous, self.record = self.record, record
        status_changed = previous is None or previous.status != record.status
        # A final status is told after the last lines (they were written before it).
        if status_changed and record.status not in FINAL_STATUSES:
            self.on_event(RunEvent("status", record.status.value, {"record": record}))
        attempt = record.attempts.get(str(record.attempt))
        if attempt is not None and attempt.instance_id is not None:
            shown = (attempt.number, attempt.instance_id)
            if shown != self._attempt_shown:
                self._attempt_shown = shown
                self.on_event(RunEvent("attempt", describe_attempt(attempt), {"attempt": attempt}))
        # The image build's lines come first (its stream stops growing once it ends).
        if record.attempt == 1:
            self._emit_logs(self._reader.read_build(record))
        # Finish the previous attempt's stream (its last lines) before the next one's.
        while self._attempt_read <= record.attempt:
            self._emit_logs(self._reader.read(self._attempt_read))
            if self._attempt_read == record.attempt:
                break
            self._attempt_read += 1
        if status_changed and record.status in FINAL_STATUSES:
            self.on_event(RunEvent("status", record.status.value, {"record": record}))
        return record

    def _emit_logs(self, lines: list[LogLine]) -> None:
        for line in lines:
            metric = metric_of(line.message)
            if metric is not None:
                self.on_event(RunEvent("metric", line.message[len(METRIC_PREFIX) :], metric))
            else:
                self.on_event(RunEvent("log", line.message, {"attempt": line.attempt}))


def follow_execution(
    sfn: Any,
    execution_arn: str,
    follower: RunFollower,
    timeout_seconds: float | None,
    poll_seconds: float,
) -> dict[str, Any]:
    """Poll until the execution ends (then once more, for the last lines); its description."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        follower.poll()
        if described["status"] != "RUNNING":
            follower.poll()  # what was written between the two calls
            return described
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {follower.run_id} still running after {timeout_seconds} s")
        time.sleep(poll_seconds)

"""The script's output: stderr tail, line pumping, CloudWatch batching."""

from __future__ import annotations

import io
from typing import Any

import pytest
from botocore.exceptions import ClientError

from instance_agent.logs import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    CloudWatchSink,
    split_batches,
    truncate_utf8,
)
from instance_agent.streams import LinePump, TailBuffer


def test_the_stderr_tail_keeps_the_last_4_kib():
    tail = TailBuffer()
    tail.feed(b"x" * 5000 + b"\n")
    tail.feed(b"Traceback: boom\n")

    text = tail.text()

    assert len(text.encode()) == 4096
    assert text.endswith("x\nTraceback: boom\n")


def test_the_stderr_tail_does_not_start_with_half_a_character():
    tail = TailBuffer(limit=4)
    tail.feed("aé€".encode())  # 1 + 2 + 3 bytes: the last 4 start inside "é"

    assert tail.text() == "€"


def test_a_short_stderr_is_kept_whole():
    tail = TailBuffer()
    tail.feed(b"only line\n")

    assert tail.text() == "only line\n"


def test_a_pump_hands_on_every_line_and_survives_a_failing_handler():
    seen: list[bytes] = []

    def handle(raw: bytes) -> None:
        seen.append(raw)
        if raw == b"two\n":
            raise RuntimeError("disk full")

    pump = LinePump("test", io.BytesIO(b"one\ntwo\nthree"), handle)
    pump.run()

    assert seen == [b"one\n", b"two\n", b"three"]


def test_a_long_message_is_cut_to_the_event_limit_on_a_character_boundary():
    message = "é" * MAX_EVENT_BYTES  # two bytes each

    cut = truncate_utf8(message)

    assert len(cut.encode()) <= MAX_EVENT_BYTES
    assert len(cut.encode()) >= MAX_EVENT_BYTES - 1
    assert truncate_utf8("short") == "short"


def test_batches_hold_at_most_10000_events():
    events = [(1000 + index, "m") for index in range(MAX_BATCH_EVENTS + 5)]

    batches = list(split_batches(events))

    assert [len(batch) for batch in batches] == [MAX_BATCH_EVENTS, 5]


def test_batches_hold_at_most_1_mib_counting_26_bytes_per_event():
    message = "x" * (100 * 1024)
    events = [(1000, message)] * 25

    batches = list(split_batches(events))

    for batch in batches:
        assert sum(len(e["message"]) + EVENT_OVERHEAD for e in batch) <= MAX_BATCH_BYTES
    assert sum(len(batch) for batch in batches) == 25
    assert len(batches) == 3


def test_batches_are_in_time_order_and_span_at_most_a_day():
    day = 24 * 3600 * 1000
    events = [(5, "late"), (1, "early"), (day + 10, "next day")]

    batches = list(split_batches(events))

    assert [[e["message"] for e in batch] for batch in batches] == [["early", "late"], ["next day"]]


class FakeLogs:
    def __init__(self, fail_puts: int = 0, stream_exists: bool = False) -> None:
        self.fail_puts = fail_puts
        self.stream_exists = stream_exists
        self.created: list[str] = []
        self.sent: list[str] = []

    def create_log_stream(self, logGroupName: str, logStreamName: str) -> None:
        if self.stream_exists:
            raise _client_error("ResourceAlreadyExistsException")
        self.created.append(logStreamName)

    def put_log_events(self, logGroupName: str, logStreamName: str, logEvents: list) -> Any:
        if self.fail_puts:
            self.fail_puts -= 1
            raise _client_error("ThrottlingException")
        self.sent += [event["message"] for event in logEvents]
        return {}


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Op")


def test_the_sink_creates_its_stream_and_sends_lines_in_order():
    logs = FakeLogs()
    sink = CloudWatchSink(logs, "/runctl/runs", "run-1/1")
    sink.add("first", 1)
    sink.add("", 2)  # CloudWatch rejects empty messages
    sink.add("second", 3)

    sink.flush()

    assert logs.created == ["run-1/1"]
    assert logs.sent == ["first", "second"]


def test_an_existing_stream_is_used_as_is():
    logs = FakeLogs(stream_exists=True)
    sink = CloudWatchSink(logs, "g", "s")
    sink.add("line", 1)

    sink.flush()

    assert logs.sent == ["line"]


def test_a_failed_send_keeps_the_events_for_the_next_flush():
    logs = FakeLogs(fail_puts=1)
    sink = CloudWatchSink(logs, "g", "s")
    sink.add("kept", 1)
    sink.flush()
    sink.add("after", 2)

    sink.flush()

    assert logs.sent == ["kept", "after"]


@pytest.mark.parametrize("count", [0, 3])
def test_flushing_sends_each_line_once(count):
    logs = FakeLogs()
    sink = CloudWatchSink(logs, "g", "s")
    for index in range(count):
        sink.add(f"line {index}", index)

    sink.flush()
    sink.flush()

    assert logs.sent == [f"line {index}" for index in range(count)]

"""The script's output: CloudWatch Logs events, and local copies uploaded to S3."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .clock import epoch_ms
from .files import AppendOnlyFile
from .layout import log_key
from .s3io import upload_file

logger = logging.getLogger(__name__)

# PutLogEvents limits: a batch holds at most 10,000 events and 1 MiB, counted as each message's
# UTF-8 bytes plus 26; one event is at most 256 KiB; a batch spans at most 24 hours.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
# Bounded so a CloudWatch outage cannot exhaust memory; the S3 copies keep every line.
MAX_BUFFERED_EVENTS = 200_000


def truncate_utf8(message: str, limit: int = MAX_EVENT_BYTES) -> str:
    """Cut a message to at most `limit` UTF-8 bytes without splitting a character."""
    data = message.encode("utf-8", "replace")
    if len(data) <= limit:
        return message
    return data[:limit].decode("utf-8", "ignore")


def split_batches(events: list[tuple[int, str]]) -> Iterator[list[dict[str, Any]]]:
    """Group (timestamp ms, message) events, in time order, into batches PutLogEvents accepts."""
    batch: list[dict[str, Any]] = []
    size = 0
    for timestamp, message in sorted(events, key=lambda event: event[0]):
        cost = len(message.encode("utf-8", "replace")) + EVENT_OVERHEAD
        if batch and (
            len(batch) >= MAX_BATCH_EVENTS
            or size + cost > MAX_BATCH_BYTES
            or timestamp - batch[0]["timestamp"] > MAX_BATCH_SPAN_MS
        ):
            yield batch
            batch, size = [], 0
        batch.append({"timestamp": timestamp, "message": message})
        size += cost
    if batch:
        yield batch


class CloudWatchSink:
    """Buffers lines and sends them to one log stream when flushed (every ~2 s by a thread)."""

    def __init__(self, client: Any, group: str, stream: str) -> None:
        self.client = client
        self.group = group
        self.stream = stream
        self._buffer: deque[tuple[int, str]] = deque(maxlen=MAX_BUFFERED_EVENTS)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._ready = False
        self._warned = False

    def add(self, message: str, timestamp_ms: int | None = None) -> None:
        if not message:
            return  # CloudWatch rejects empty messages; the S3 copy keeps blank lines
        event = (timestamp_ms if timestamp_ms is not None else epoch_ms(), truncate_utf8(message))
        with self._lock:
            self._buffer.append(event)

    def flush(self) -> None:
        """Send what is buffered; on an error keep it for the next flush and log once."""
        with self._flush_lock:
            if not self._ready:
                self._ready = self._ensure_stream()
                if not self._ready:
                    return
            with self._lock:
                pending = list(self._buffer)
                self._buffer.clear()
            batches = list(split_batches(pending))
            for index, batch in enumerate(batches):
                try:
                    response = self.client.put_log_events(
                        logGroupName=self.group, logStreamName=self.stream, logEvents=batch
                    )
                except (ClientError, BotoCoreError) as error:
                    self._requeue(batches[index:])
                    if _code(error) == "ResourceNotFoundException":
                        self._ready = False
                    self._warn_once("cannot send log events to CloudWatch (will retry): %s", error)
                    return
                rejected = response.get("rejectedLogEventsInfo")
                if rejected:
                    logger.warning("CloudWatch rejected some log events: %s", rejected)

    def _requeue(self, batches: list[list[dict[str, Any]]]) -> None:
        with self._lock:
            newer = list(self._buffer)
            self._buffer.clear()
            for batch in batches:
                self._buffer.extend((event["timestamp"], event["message"]) for event in batch)
            self._buffer.extend(newer)

    def _ensure_stream(self) -> bool:
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except ClientError as error:
            if _code(error) == "ResourceAlreadyExistsException":
                return True
            if _code(error) == "ResourceNotFoundException" and self._create_group():
                return self._ensure_stream()
            self._warn_once("cannot create log stream %s/%s: %s", self.group, self.stream, error)
            return False
        except BotoCoreError as error:
            self._warn_once("cannot create log stream %s/%s: %s", self.group, self.stream, error)
            return False
        return True

    def _create_group(self) -> bool:
        try:
            self.client.create_log_group(logGroupName=self.group)
        except ClientError as error:
            if _code(error) == "ResourceAlreadyExistsException":
                return True
            self._warn_once("log group %s is missing and cannot be created: %s", self.group, error)
            return False
        return True

    def _warn_once(self, message: str, *args: Any) -> None:
        # Flushes run every ~2 s: one warning per outage is enough in the agent log.
        if not self._warned:
            logger.warning(message, *args)
            self._warned = True


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


class AgentLogHandler(logging.Handler):
    """Copies the agent's own log records (tracebacks included) into the run's log stream."""

    PREFIX = "[runctl-agent] "

    def __init__(self, sink: CloudWatchSink, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        # The sink's own warnings would otherwise feed the sink that cannot send them.
        self.addFilter(lambda record: record.name != __name__)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.add(self.PREFIX + self.format(record), int(record.created * 1000))
        except Exception:  # a logging handler must never raise into the code that logged
            self.handleError(record)


class ScriptLogs:
    """stdout.log and stderr.log on local disk, copied to the attempt's logs/ in S3."""

    def __init__(self, directory: Path) -> None:
        self.stdout = AppendOnlyFile(directory / "stdout.log")
        self.stderr = AppendOnlyFile(directory / "stderr.log")

    def upload(self, s3: Any, bucket: str, run_id: str, attempt: int) -> None:
        for name, copy in (("stdout", self.stdout), ("stderr", self.stderr)):
            copy.publish(partial(_upload_text, s3, bucket, log_key(run_id, attempt, name)))

    def close(self) -> None:
        self.stdout.close()
        self.stderr.close()


def _upload_text(s3: Any, bucket: str, key: str, path: Path) -> None:
    upload_file(s3, path, bucket, key, "text/plain")

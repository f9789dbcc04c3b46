"""Reading the script's stdout and stderr line by line and handing each line on."""

from __future__ import annotations

import logging
import threading
from typing import IO, Callable

from .logs import CloudWatchSink, ScriptLogs
from .metrics import MetricsRecorder

logger = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 4096
# A longer "line" is handed on in pieces, so one endless line cannot exhaust memory.
MAX_LINE_BYTES = 64 * 1024


class TailBuffer:
    """The last `limit` bytes written, as text."""

    def __init__(self, limit: int = STDERR_TAIL_BYTES) -> None:
        self.limit = limit
        self._data = bytearray()
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self._lock:
            self._data += data
            if len(self._data) > self.limit:
                del self._data[: len(self._data) - self.limit]

    def text(self) -> str:
        with self._lock:
            data = bytes(self._data)
        # The cut may have split a UTF-8 character: drop its continuation bytes.
        start = 0
        while start < len(data) and start < 3 and (data[start] & 0xC0) == 0x80:
            start += 1
        return data[start:].decode("utf-8", "replace")


class ScriptOutput:
    """Where each line goes: the local copy, CloudWatch, and (stdout) metrics, (stderr) the tail."""

    def __init__(self, logs: ScriptLogs, sink: CloudWatchSink, metrics: MetricsRecorder) -> None:
        self.logs = logs
        self.sink = sink
        self.metrics = metrics
        self.stderr_tail = TailBuffer()

    def on_stdout(self, raw: bytes) -> None:
        self.logs.stdout.write(raw)
        line = _text(raw)
        self.sink.add(line)
        self.metrics.handle_stdout_line(line)

    def on_stderr(self, raw: bytes) -> None:
        self.logs.stderr.write(raw)
        self.stderr_tail.feed(raw)
        self.sink.add(_text(raw))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r\n")


class LinePump(threading.Thread):
    """Reads a pipe to its end, calling `handle` with each line (bytes, newline included)."""

    def __init__(self, name: str, pipe: IO[bytes], handle: Callable[[bytes], None]) -> None:
        super().__init__(name=f"runctl-{name}", daemon=True)
        self.pipe = pipe
        self.handle = handle

    def run(self) -> None:
        try:
            for raw in iter(lambda: self.pipe.readline(MAX_LINE_BYTES), b""):
                try:
                    self.handle(raw)
                except Exception:
                    # Keep draining: a script blocked on a full pipe would hang the run.
                    logger.exception("cannot handle a line of %s", self.name)
        finally:
            self.pipe.close()

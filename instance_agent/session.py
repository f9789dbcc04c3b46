"""The script's lifetime: pumps read its output and periodic syncs run until it exits."""

from __future__ import annotations

import logging
import subprocess
import time

from .periodic import PeriodicThread
from .script import kill_group
from .streams import LinePump, ScriptOutput

logger = logging.getLogger(__name__)


class ScriptSession:
    def __init__(
        self,
        process: subprocess.Popen[bytes],
        output: ScriptOutput,
        periodic: list[PeriodicThread],
        pipe_grace_seconds: float = 10.0,
    ) -> None:
        self.process = process
        self.output = output
        self.periodic = periodic
        self.pipe_grace_seconds = pipe_grace_seconds

    def wait(self) -> int:
        """Block until the script exits and its output is read; return Popen's returncode.

        The periodic threads are stopped (a tick in progress finishes) before this returns.
        """
        assert self.process.stdout is not None and self.process.stderr is not None
        pumps = [
            LinePump("stdout", self.process.stdout, self.output.on_stdout),
            LinePump("stderr", self.process.stderr, self.output.on_stderr),
        ]
        for thread in [*pumps, *self.periodic]:
            thread.start()
        try:
            returncode = self.process.wait()
            # At once: the final steps redo their work, and a checkpoint sync running on after
            # the script died could take a file it left half-written for a complete one.
            self._stop_periodic()
            self._drain(pumps)
        except BaseException:
            # The agent itself is failing: the script must not outlive it unreported.
            kill_group(self.process)
            raise
        finally:
            self._stop_periodic()
        return returncode

    def _stop_periodic(self) -> None:
        for thread in self.periodic:
            thread.stop()

    def _drain(self, pumps: list[LinePump]) -> None:
        if _join_all(pumps, self.pipe_grace_seconds):
            return
        # Processes the script started still hold its stdout/stderr open after it exited.
        logger.warning("the script exited but processes it started are still running: killing them")
        kill_group(self.process, grace_seconds=0)
        if not _join_all(pumps, self.pipe_grace_seconds):
            logger.warning("some output is still held open by processes outside the script's group")


def _join_all(threads: list[LinePump], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)

"""A daemon thread that calls one action every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from typing import Callable

logger = logging.getLogger(__name__)


class PeriodicThread(threading.Thread):
    """Calls `action` every `interval` seconds; an exception is logged, the next tick still runs."""

    def __init__(
        self, name: str, interval: float, action: Callable[[], object], run_first: bool = False
    ) -> None:
        super().__init__(name=f"runctl-{name}", daemon=True)
        self.interval = interval
        self.action = action
        self.run_first = run_first
        self._stopping = threading.Event()
        self._wake = threading.Event()

    def run(self) -> None:
        if self.run_first:
            self._tick()
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            self._tick()

    def trigger(self) -> None:
        """Tick now rather than at the end of the interval (a tick in progress finishes first,
        then another one starts, so the action runs wholly after this call)."""
        self._wake.set()

    def _tick(self) -> None:
        try:
            self.action()
        except Exception:
            logger.exception("%s failed; trying again in %.1f s", self.name, self.interval)

    def stop(self, final_tick: bool = False) -> None:
        """Stop ticking and wait for a tick in progress to finish; with `final_tick`, run the
        action once more after that, so nothing that happened since the last tick is missed."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
        if final_tick:
            self._tick()

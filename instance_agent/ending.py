"""The one place that decides how an attempt ends: by an interruption notice, or by itself (the
script's exit, or the agent's failure). Whichever claims it first wins; the other is refused.

The script is started under the same lock, so a notice either finds the script's process (and
stops it) or keeps it from starting.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Callable

from .notices import Notice


class AttemptEnding:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notice: Notice | None = None
        self._ends_by_itself = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def notice(self) -> Notice | None:
        """The notice that ended the attempt, if one did."""
        return self._notice

    @property
    def interrupted(self) -> bool:
        return self._notice is not None

    def start_script(
        self, start: Callable[[], subprocess.Popen[bytes]]
    ) -> subprocess.Popen[bytes] | None:
        """Run `start` unless a notice came first (then None: the script must not start)."""
        with self._lock:
            if self._notice is not None:
                return None
            self._process = start()
            return self._process

    def interrupt(self, notice: Notice) -> tuple[bool, subprocess.Popen[bytes] | None]:
        """Claim the end for `notice`: (True, the script's process or None if not started yet).
        (False, None) when the end was decided already, or the script has exited: its own end
        (being reported) wins over a notice that came after it."""
        with self._lock:
            if self._notice is not None or self._ends_by_itself:
                return False, None
            if self._process is not None and self._process.returncode is not None:
                return False, None
            self._notice = notice
            return True, self._process

    def end_by_itself(self) -> bool:
        """Claim the end for the script's exit or the agent's failure; False when a notice came
        first (the attempt is then finished as interrupted)."""
        with self._lock:
            if self._notice is not None:
                return False
            self._ends_by_itself = True
            return True

    def running_script(self) -> subprocess.Popen[bytes] | None:
        """The script's process while it runs and the attempt's end is still open."""
        with self._lock:
            if self._notice is not None or self._ends_by_itself or self._process is None:
                return None
            return self._process if self._process.returncode is None else None

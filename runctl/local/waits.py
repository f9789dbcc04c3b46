"""Wait states in local mode last a fraction of their seconds: the same ASL, faster polls.

The TrainRun's Wait states only pace polls (for the instance to run, the bootstrap to finish,
the previous attempt to hand off): every deadline they poll toward is wall-clock time kept by
the Lambdas, so a shorter wait changes how often a step looks, never what it decides. ASL allows
only whole seconds, and on AWS a poll a second is cheap next to a boot; locally each attempt
spent two of its five seconds in those waits. `Emulator(wait_scale=...)` sets the fraction
(LocalSettings.wait_scale; 1.0 is AWS's pacing).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)


class WaitScale:
    """The fraction of a Wait state's seconds that the emulator waits (one per process, like
    moto's backends)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 1.0

    def set(self, value: float) -> None:
        if not 0 < value <= 1:
            raise ValueError(f"wait_scale must be in (0, 1], got {value}")
        with self._lock:
            self.value = value


SCALE = WaitScale()


def wait_interval(function: WaitFunction, env: Any, wait_seconds: int) -> None:
    """moto's wait, for `wait_seconds` x the scale: it ends early only when the execution stops
    (its event is also set by unrelated changes, after which moto waits on)."""
    deadline = time.monotonic() + wait_seconds * SCALE.value
    while (left := deadline - time.monotonic()) > 0 and env.is_running():
        env.program_state_event.wait(left)


PATCHES = ((WaitFunction, "_wait_interval", wait_interval),)

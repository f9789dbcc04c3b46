"""How long the state machine waits before polling a booting instance again."""

from __future__ import annotations

# Poll at the base rate while a boot is young, then back off in proportion to the time already
# waited: each poll costs ~9 history events (Wait, Task, Choice), and a slow boot should cost a
# handful of polls more, not one per base interval. The latency this adds is at most a third of
# the time already waited, and never more than a minute.
FAST_POLL_SECONDS = 30
MAX_POLL_SECONDS = 60


# An image build takes minutes to an hour and happens once per run: its polls may back off
# further (a build's history cost counts toward the run's, bench/history.py).
MAX_BUILD_POLL_SECONDS = 600


def next_poll_seconds(
    base_seconds: int, waited_seconds: float, max_seconds: int = MAX_POLL_SECONDS
) -> int:
    if waited_seconds < FAST_POLL_SECONDS:
        return base_seconds
    return max(base_seconds, min(max_seconds, int(waited_seconds / 3)))

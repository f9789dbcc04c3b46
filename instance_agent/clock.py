"""Timestamps in the format the rest of runctl writes (ISO-8601, UTC)."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_now_iso() -> str:
    return utc_now().isoformat()


def epoch_ms() -> int:
    return int(time.time() * 1000)

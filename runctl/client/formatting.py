"""Plain-text pieces shared by the CLI's tables, its progress line and the plots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lambdas.models.run_record import FINAL_STATUSES, RunRecord, RunStatus
from runctl.client.costs import cost_label, cost_of

_FINISH_VERBS = {
    RunStatus.SUCCEEDED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "stopped",
}


def format_duration(seconds: float | None) -> str:
    """42s, 3m05s, 1h12m, 2d03h."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_value(value: Any) -> str:
    """Numbers short but exact enough to compare (0.031416, 1.2e-05, 64); others as text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def parse_time(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_seconds(record: RunRecord, now: datetime | None = None) -> float | None:
    """How long the run took (final) or has been going (live)."""
    if record.duration_seconds is not None:
        return record.duration_seconds
    if record.status in FINAL_STATUSES:
        end = parse_time(record.ended_at) if record.ended_at else None
        return (end - parse_time(record.created_at)).total_seconds() if end else None
    return ((now or datetime.now(UTC)) - parse_time(record.created_at)).total_seconds()


def finish_line(record: RunRecord) -> str:
    """'completed in 1h12m, cost $0.84' (or 'failed after ...', or '... so far' while live)."""
    cost = cost_of(record)
    cost_text = f", cost {cost_label(cost)}" if cost is not None else ""
    duration = format_duration(run_seconds(record))
    verb = _FINISH_VERBS.get(record.status)
    if verb is None:
        return f"{record.status.value.lower()} for {duration}{cost_text} so far"
    joiner = "in" if record.status is RunStatus.SUCCEEDED else "after"
    reason = (
        f" ({record.end_reason.value})"
        if record.end_reason and record.status is not RunStatus.SUCCEEDED
        else ""
    )
    return f"{verb} {joiner} {duration}{cost_text}{reason}"


def describe_environment(phase: dict[str, Any] | None) -> str:
    """An attempt's environment phase: 'restored in 1.2 s (pip)', 'installed in 38 s (uv)'."""
    if not phase:
        return "-"
    action = str(phase.get("action") or "?")
    if action == "container":
        return describe_container(phase)
    if action == "none":
        return "image's Python (no requirements.txt)"
    installer = f" ({phase['installer']})" if phase.get("installer") else ""
    return f"{action} in {_seconds(phase.get('seconds'))}{installer}"


def describe_container(phase: dict[str, Any]) -> str:
    """'container train:v3 (sha256:0a1b2c3d4e5f), pulled in 41.0 s' or '..., on the instance'."""
    digest = str(phase.get("digest") or "")
    short = f" ({digest[:19]})" if digest else ""
    got = (
        f"pulled in {_seconds(phase.get('pull_seconds'))}"
        if phase.get("pulled")
        else ("on the instance" if digest else "not ready")
    )
    return f"container {phase.get('image') or '?'}{short}, {got}"


def describe_gpu(phase: dict[str, Any] | None) -> str:
    """'1x NVIDIA A10G, driver 570.86.15, CUDA 12.8' (several kinds: '4x A, 4x B')."""
    if not phase:
        return "-"
    names: list[str] = [str(name) for name in phase.get("gpus") or []]
    kinds = ", ".join(f"{names.count(name)}x {name}" for name in dict.fromkeys(names)) or "none"
    cuda = f", CUDA {phase['cuda_version']}" if phase.get("cuda_version") else ""
    return f"{kinds}, driver {phase.get('driver_version') or '?'}{cuda}"


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return f"{value:.1f} s" if value < 60 else format_duration(value)

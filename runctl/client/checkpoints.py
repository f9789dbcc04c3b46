"""What each attempt did with checkpoints, from the run item's `checkpoints.<attempt>` (written by
the agent, instance_agent/checkpoints.py): which one it resumed from, the newest durable one, and
how much work an interruption cost.

The work an attempt lost is the time from the save of the checkpoint the next attempt resumed
from (the newest durable one when the attempt ended), or from the attempt's start when that is
later or there was none, to the attempt's end. A checkpoint saved after the notice (the
script's SIGTERM save) loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lambdas.models.run_record import RunRecord
from runctl.client.formatting import parse_time


@dataclass(frozen=True)
class AttemptCheckpoints:
    resumed_from: str | None = None  # "checkpoint-50 (step 50, attempt 1)"
    newest: str | None = None  # the newest durable checkpoint at its end (or so far)
    work_lost_seconds: float | None = None  # None: not resumed after it, or not known
    warnings: list[str] = field(default_factory=list)


def describe_checkpoint(summary: dict[str, Any] | None) -> str | None:
    if not summary:
        return None
    name = str(summary.get("name") or "?")
    details = []
    if summary.get("step") is not None:
        details.append(f"step {summary['step']}")
    if summary.get("attempt"):
        details.append(f"attempt {summary['attempt']}")
    return f"{name} ({', '.join(details)})" if details else name


def attempt_checkpoints(record: RunRecord) -> dict[int, AttemptCheckpoints]:
    """By attempt number, for the attempts the run item still holds facts of."""
    facts = {int(number): value for number, value in record.checkpoints.items()}
    found = {}
    for number, value in facts.items():
        warnings = [f"not resumed from {line}" for line in value.get("skipped") or []]
        warnings += [
            f"{item.get('name')} kept changing and was never durable for {item.get('seconds')} s"
            for item in value.get("not_durable") or []
        ]
        found[number] = AttemptCheckpoints(
            resumed_from=describe_checkpoint(value.get("resumed_from")),
            newest=describe_checkpoint(value.get("newest")),
            work_lost_seconds=_work_lost(record, number, facts.get(number + 1)),
            warnings=warnings,
        )
    return found


def _work_lost(record: RunRecord, number: int, next_facts: dict[str, Any] | None) -> float | None:
    attempt = record.attempts.get(str(number))
    if next_facts is None or attempt is None or not (attempt.ended_at and attempt.started_at):
        return None
    ended, started = parse_time(attempt.ended_at), parse_time(attempt.started_at)
    resumed_from = next_facts.get("resumed_from")
    since = started
    if resumed_from and resumed_from.get("saved_at"):
        # An older attempt's checkpoint: this attempt's own work is what it lost, not the gap.
        since = max(started, parse_time(str(resumed_from["saved_at"])))
    return max(0.0, (ended - since).total_seconds())

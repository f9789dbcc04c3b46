"""A run's cost as the client shows it: recorded when the run ended (FinalizeRun, or the reaper),
or so far for a live run."""

from __future__ import annotations

from datetime import UTC, datetime

from lambdas.logic.pricing import run_cost, static_price_lookup
from lambdas.models.run_record import RunCost, RunRecord


def cost_of(record: RunRecord, now: datetime | None = None) -> RunCost | None:
    """The recorded figure when there is one; else the cost so far from static list prices
    (labelled as such), which needs no AWS pricing access. None before any instance started."""
    if record.cost is not None:
        return record.cost
    if not any(attempt.started_at for attempt in record.attempts.values()):
        return None
    return run_cost(record, static_price_lookup(), now or datetime.now(UTC))


def format_usd(amount: float) -> str:
    """$0.84; under a cent, three digits ($0.004) or '<$0.001', so a short run is not '$0.00'."""
    if amount >= 0.01 or amount == 0:
        return f"${amount:.2f}"
    return f"${amount:.3f}" if amount >= 0.001 else "<$0.001"


def cost_label(cost: RunCost, short: bool = False) -> str:
    """'$0.84', '$0.84 (est.: static list prices)', '≥ $0.84 (some instance types unpriced)';
    `short` (for tables) says only '$0.84 (est.)'."""
    text = format_usd(cost.total_usd)
    notes = []
    if cost.uses_static_fallback:
        notes.append("est." if short else "est.: static list prices")
    if not cost.is_complete:
        text = f"≥ {text}"
        if not short:
            notes.append("some instance types unpriced")
    return f"{text} ({'; '.join(notes)})" if notes else text


PRICE_SOURCE_LABELS = {
    "spot-price-history": "spot price history",
    "on-demand-list-price": "on-demand list price (static)",
    "static-spot-estimate": "est.: static spot estimate",
    "unpriced": "unpriced",
}

"""How big the attempt's result is, and cutting text and metrics down to a size.

The result is the Train task's output (SendTaskSuccess: 256 KiB at most, and it sits in the
TrainRun state beside the RunSpec) or the cause of its failure (SendTaskFailure: 32,768
characters at most). Sizes are what `json.dumps` writes by default (ASCII escapes, ", " and
": "): never fewer bytes than the compact UTF-8 JSON AWS counts. A copy of
lambdas/models/bounds.py (the agent cannot import lambdas/); tests hold the two to the same
answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Union

ELLIPSIS = "…"
# DynamoDB numbers: magnitudes from 1e-130 to 1e125 (kept a little inside), 38 digits exact.
_LARGEST_STORABLE = 1e125
_SMALLEST_STORABLE = 1e-129
_LONGEST_EXACT_INT = 1e38

Number = Union[int, float]


def json_size(value: Any) -> int:
    """Bytes of `value` as `json.dumps` writes it by default."""
    return len(json.dumps(value))


def _char_size(character: str) -> int:
    return len(json.dumps(character)) - 2


def fit_tail(text: str, max_bytes: int) -> str:
    """The longest end of `text` whose JSON string is at most `max_bytes`."""
    if json_size(text) <= max_bytes:
        return text
    budget, start = max_bytes - 2, len(text)
    while start > 0 and _char_size(text[start - 1]) <= budget:
        start -= 1
        budget -= _char_size(text[start])
    return text[start:]


def fit_head(text: str, max_bytes: int) -> str:
    """`text` whole when its JSON string is at most `max_bytes`; else its longest start that
    fits with an ellipsis after it."""
    if json_size(text) <= max_bytes:
        return text
    budget, end = max_bytes - 2 - _char_size(ELLIPSIS), 0
    while end < len(text) and _char_size(text[end]) <= budget:
        budget -= _char_size(text[end])
        end += 1
    return text[:end] + ELLIPSIS


def storable_number(value: object) -> Number | None:
    """A finite number DynamoDB can hold, or None. Bools are not numbers here; an int too long
    for DynamoDB's 38 digits becomes a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        magnitude = abs(float(value))
    except OverflowError:  # an int too large for any float
        return None
    if not math.isfinite(magnitude):
        return None
    if magnitude != 0 and not _SMALLEST_STORABLE <= magnitude <= _LARGEST_STORABLE:
        return None
    if isinstance(value, int) and magnitude >= _LONGEST_EXACT_INT:
        return float(value)
    return value


def fit_metrics(
    metrics: Mapping[str, Any], max_names: int, max_name_chars: int, max_bytes: int
) -> tuple[dict[str, Number], int]:
    """(kept, dropped): the storable numbers of `metrics`, first names first, while there are
    at most `max_names`, each name at most `max_name_chars` and their JSON object at most
    `max_bytes`; `dropped` counts the numbers left out for any of those limits."""
    kept: dict[str, Number] = {}
    size, dropped = 2, 0  # "{}"
    for name, raw in metrics.items():
        value = storable_number(raw)
        if value is None:
            continue
        entry = json_size(name) + 2 + json_size(value) + (2 if kept else 0)
        if len(kept) >= max_names or len(name) > max_name_chars or size + entry > max_bytes:
            dropped += 1
            continue
        kept[name] = value
        size += entry
    return kept, dropped


def fit_json(value: dict[str, Any] | None, max_bytes: int) -> dict[str, Any] | None:
    """`value` when its JSON is at most `max_bytes`, else None (a report too big to send)."""
    if value is None or json_size(value) <= max_bytes:
        return value
    return None

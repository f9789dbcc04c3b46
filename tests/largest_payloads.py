"""The largest RunSpec runctl accepts, for the tests that hold every state under Step Functions'
256 KiB: args, environment and hyperparameters each at their byte cap, data entries up to the
whole spec's cap. Values are made of double quotes, the character JSON escaping doubles at every
level (in a caught error's cause the spec is escaped again), so no accepted spec of the same size
takes more room in a state. With `fill=PLAIN` they are plain ASCII letters instead, one UTF-8 byte
per byte of the cap: the most room a spec can take on the run item in DynamoDB, which counts
UTF-8. And the largest result the agent sends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from instance_agent.result import AgentResult
from lambdas.models.bounds import json_size
from lambdas.models.run_spec import (
    MAX_ARGS_JSON_BYTES,
    MAX_ENVIRONMENT_JSON_BYTES,
    MAX_HYPERPARAMETERS_JSON_BYTES,
    MAX_S3_URI_CHARS,
    MAX_SPEC_JSON_BYTES,
    RunSpec,
)

QUOTE = '"'
PLAIN = "x"  # one byte escaped or not
NASTY = 'x"\\\n\x01é中😀'  # one of each escape width JSON has: 1, 2, 6 and 12 bytes
# How many args, variables and hyperparameters share their field's bytes.
VALUES_PER_FIELD = 16

# (index, length of its s3_uri) -> a data entry whose s3_uri has exactly that many characters.
DataEntry = Callable[[int, int], dict[str, str]]


def strings_filling(
    total: int, count: int, wrap: Callable[[list[str]], Any], fill: str = QUOTE
) -> list[str]:
    """`count` strings of `fill` (quotes by default) such that `wrap(strings)` takes exactly
    `total` bytes."""
    width = json_size(fill) - 2  # a quote takes 2 bytes escaped
    room = total - json_size(wrap([""] * count))
    each = room // (width * count)
    values = [fill * each] * count
    rest = total - json_size(wrap(values))
    values[-1] += fill * (rest // width) + "x" * (rest % width)
    assert json_size(wrap(values)) == total
    return values


def _named(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{index:02d}" for index in range(count)]


def _map_filling(names: list[str], total: int, fill: str) -> dict[str, str]:
    """A map from `names` to strings of `fill` that takes exactly `total` bytes as JSON."""
    values = strings_filling(
        total, len(names), lambda values: dict(zip(names, values, strict=True)), fill
    )
    return dict(zip(names, values, strict=True))


def largest_spec(
    base: dict[str, Any], data_entry: DataEntry, min_uri_chars: int, fill: str = QUOTE
) -> dict[str, Any]:
    """`base` (code, entry_point, anything else) grown to the largest RunSpec: args, environment
    and hyperparameters at their caps (values made of `fill`), then data entries (made by
    `data_entry`, s3_uri at least `min_uri_chars`) until the whole spec is at its cap (exactly,
    when a URI character takes one byte)."""
    env_names = _named("VAR", VALUES_PER_FIELD)
    hp_names = _named("hp", VALUES_PER_FIELD)
    spec: dict[str, Any] = {
        **base,
        "args": strings_filling(MAX_ARGS_JSON_BYTES, VALUES_PER_FIELD, lambda values: values, fill),
        "environment": _map_filling(env_names, MAX_ENVIRONMENT_JSON_BYTES, fill),
        "hyperparameters": _map_filling(hp_names, MAX_HYPERPARAMETERS_JSON_BYTES, fill),
        "data": list(base.get("data", [])),
    }
    while len(spec["data"]) < 50:
        index, separator = len(spec["data"]), 2 if spec["data"] else 0
        room = MAX_SPEC_JSON_BYTES - spec_size(spec)

        def cost(uri_chars: int, index: int = index, separator: int = separator) -> int:
            return json_size(data_entry(index, uri_chars)) + separator

        next_cost = json_size(data_entry(index + 1, min_uri_chars)) + 2
        uri_chars = _longest(cost, min_uri_chars, room)
        if uri_chars is None:
            break
        if 0 < room - cost(uri_chars) < next_cost:  # leave room for one more to take the rest
            uri_chars = _longest(cost, min_uri_chars, room - next_cost) or uri_chars
        entry = data_entry(index, uri_chars)
        assert len(entry["s3_uri"]) == uri_chars, (entry["s3_uri"], uri_chars)
        spec["data"].append(entry)
    return spec


def _longest(cost: Callable[[int], int], low: int, room: int) -> int | None:
    """The largest URI length from `low` to the longest S3 allows whose entry costs at most
    `room`; None when even `low` does not fit."""
    if cost(low) > room:
        return None
    high = MAX_S3_URI_CHARS
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if cost(middle) <= room else (low, middle - 1)
    return low


def spec_size(spec: dict[str, Any]) -> int:
    """The RunSpec's size as its bound counts it (validated, defaults in, instance_types out)."""
    return json_size(
        RunSpec.model_validate(spec).model_dump(mode="json", exclude={"instance_types"})
    )


def largest_result() -> AgentResult:
    """The agent's result with every part that can grow grown past its cap, made of the
    characters that escape worst."""
    return AgentResult(
        outcome="script-failed",
        exit_code=-2_147_483_648,
        stderr_tail=NASTY * 5000,
        started_at="2026-12-03T10:42:11.123456+00:00",
        ended_at="2026-12-03T10:42:11.123456+00:00",
        outputs_uri="s3://" + "b" * 63 + "/runs/" + "r" * 80 + "/outputs/",
        metrics_uri="s3://" + "b" * 63 + "/runs/" + "r" * 80 + "/attempts/100/metrics.jsonl",
        logs_uri="s3://" + "b" * 63 + "/runs/" + "r" * 80 + "/attempts/100/logs/",
        final_metrics={
            f"{index:05d}{NASTY * 20}": -1.2345678901234567e-100 for index in range(9000)
        },
        message=NASTY * 5000,
        environment={"cache_key": NASTY * 500},
        gpu={"gpus": [NASTY * 100] * 16},
        final_metrics_dropped=10**6,
    )

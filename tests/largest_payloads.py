"""The largest RunSpec runctl accepts, for the tests that hold every state under Step Functions'
256 KiB: args, environment and hyperparameters each at their byte cap, data entries up to the
whole spec's cap. Values are made of double quotes, the character JSON escaping doubles at every
level (in a caught error's cause the spec is escaped again), so no accepted spec of the same size
takes more room in a state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
# How many args, variables and hyperparameters share their field's bytes.
VALUES_PER_FIELD = 16

# (index, length of its s3_uri) -> a data entry whose s3_uri has exactly that many characters.
DataEntry = Callable[[int, int], dict[str, str]]


def strings_filling(total: int, count: int, wrap: Callable[[list[str]], Any]) -> list[str]:
    """`count` strings of quotes such that `wrap(strings)` takes exactly `total` bytes."""
    room = total - json_size(wrap([""] * count))
    each = room // (2 * count)  # a quote takes 2 bytes escaped
    values = [QUOTE * each] * count
    rest = total - json_size(wrap(values))
    values[-1] += QUOTE * (rest // 2) + "x" * (rest % 2)
    assert json_size(wrap(values)) == total
    return values


def _named(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{index:02d}" for index in range(count)]


def largest_spec(base: dict[str, Any], data_entry: DataEntry, min_uri_chars: int) -> dict[str, Any]:
    """`base` (code, entry_point, anything else) grown to the largest RunSpec: args, environment
    and hyperparameters at their caps, then data entries (made by `data_entry`, s3_uri at least
    `min_uri_chars`) until the whole spec is exactly at its cap."""
    env_names = _named("VAR", VALUES_PER_FIELD)
    hp_names = _named("hp", VALUES_PER_FIELD)
    spec: dict[str, Any] = {
        **base,
        "args": strings_filling(MAX_ARGS_JSON_BYTES, VALUES_PER_FIELD, lambda values: values),
        "environment": dict(
            zip(
                env_names,
                strings_filling(
                    MAX_ENVIRONMENT_JSON_BYTES,
                    VALUES_PER_FIELD,
                    lambda values: dict(zip(env_names, values, strict=True)),
                ),
                strict=True,
            )
        ),
        "hyperparameters": dict(
            zip(
                hp_names,
                strings_filling(
                    MAX_HYPERPARAMETERS_JSON_BYTES,
                    VALUES_PER_FIELD,
                    lambda values: dict(zip(hp_names, values, strict=True)),
                ),
                strict=True,
            )
        ),
        "data": list(base.get("data", [])),
    }
    while len(spec["data"]) < 50:
        room = MAX_SPEC_JSON_BYTES - spec_size(spec)
        smallest = data_entry(len(spec["data"]), min_uri_chars)
        cost = json_size(smallest) + (2 if spec["data"] else 0)
        if room < cost:
            break
        uri_chars = min(MAX_S3_URI_CHARS, min_uri_chars + room - cost)
        left = room - cost - (uri_chars - min_uri_chars)
        next_cost = json_size(smallest) + 2
        if 0 < left < next_cost:  # leave room for one more entry, which takes the rest exactly
            uri_chars -= next_cost - left
        entry = data_entry(len(spec["data"]), uri_chars)
        assert len(entry["s3_uri"]) == uri_chars, (entry["s3_uri"], uri_chars)
        spec["data"].append(entry)
    return spec


def spec_size(spec: dict[str, Any]) -> int:
    """The RunSpec's size as its bound counts it (validated, defaults in, instance_types out)."""
    return json_size(
        RunSpec.model_validate(spec).model_dump(mode="json", exclude={"instance_types"})
    )

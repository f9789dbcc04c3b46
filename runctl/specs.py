"""Builds a RunSpec from command-line style options, validated with the stack's own model."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from lambdas.models.run_spec import (
    NAME_PATTERN,
    S3_URI_PATTERN,
    HyperparameterValue,
    RunSpec,
    describe_validation_error,
)
from runctl.errors import SpecError

__all__ = ["SpecError", "build_spec", "parse_data", "parse_duration", "parse_hyperparameter"]

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def parse_hyperparameter(text: str) -> tuple[str, HyperparameterValue]:
    """'lr=0.01' -> ('lr', 0.01): numbers stay numbers, true/false are booleans, else a string."""
    name, separator, raw = text.partition("=")
    if not separator or not name:
        raise SpecError(f"--hp {text!r}: expected key=value, for example --hp lr=0.01")
    return name, _typed(raw)


def _typed(raw: str) -> HyperparameterValue:
    if raw in {"true", "false"}:
        return raw == "true"
    for convert in (int, float):
        try:
            return convert(raw)  # type: ignore[no-any-return]
        except ValueError:
            continue
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        try:
            return str(json.loads(raw))  # '"1e3"' keeps a number-looking string a string
        except ValueError:
            pass
    return raw


def parse_duration(text: str) -> int:
    """'6h' -> 21600; plain numbers are seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise SpecError(f"duration {text!r}: use a number with s, m, h or d, for example 6h")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def parse_data(text: str) -> dict[str, str]:
    """'s3://b/imagenet/' -> {"s3_uri": ..., "name": "imagenet"}; 'name=s3://...' names it."""
    name, separator, uri = text.partition("=")
    if not separator or name.startswith("s3:"):
        name, uri = "", text
    if not S3_URI_PATTERN.match(uri):
        raise SpecError(f"--data {text!r}: expected s3://bucket/key or name=s3://bucket/key")
    if not name:
        last = uri.removeprefix("s3://").rstrip("/").rsplit("/", 1)[-1]
        name = _UNSAFE_NAME_CHARACTERS.sub("-", last).strip("-._") or "data"
    if not re.match(NAME_PATTERN, name):
        raise SpecError(f"--data {text!r}: the name must be letters, digits, '.', '_' or '-'")
    return {"s3_uri": uri, "name": name}


def build_spec(fields: dict[str, Any]) -> RunSpec:
    """Validate with the same model as ValidateRun, so errors name the same fields."""
    try:
        return RunSpec.model_validate(fields)
    except ValidationError as error:
        raise SpecError(f"invalid run: {describe_validation_error(error)}") from error

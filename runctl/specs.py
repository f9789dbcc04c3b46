"""Builds a RunSpec from command-line style options, validated with the stack's own model."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from lambdas.models.run_spec import HyperparameterValue, RunSpec, describe_validation_error

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class SpecError(ValueError):
    """A user's option is wrong; the message says which and how."""


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


def build_spec(fields: dict[str, Any]) -> RunSpec:
    """Validate with the same model as ValidateRun, so errors name the same fields."""
    try:
        return RunSpec.model_validate(fields)
    except ValidationError as error:
        raise SpecError(f"invalid run: {describe_validation_error(error)}") from error

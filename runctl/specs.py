"""Builds a RunSpec from command-line style options, validated with the stack's own model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from lambdas.models.run_spec import (
    NAME_PATTERN,
    S3_URI_PATTERN,
    HyperparameterValue,
    RunSpec,
    describe_validation_error,
)
from runctl.errors import SpecError

__all__ = [
    "DataArgument",
    "LocalData",
    "S3Data",
    "SpecError",
    "build_spec",
    "parse_data",
    "parse_duration",
    "parse_hyperparameter",
]

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def parse_hyperparameter(text: str) -> tuple[str, HyperparameterValue]:
    """'lr=0.01' -> ('lr', 0.01): numbers stay numbers, true/false are booleans, else a string."""
    name, separator, raw = text.partition("=")
    if not separator or not name:
        raise SpecError(f"--hp {text!r}: expected key=value, for example --hp lr=0.01")
    return name, _typed(raw)


def parse_build_arg(text: str) -> tuple[str, str]:
    """'CUDA=12.4' -> ('CUDA', '12.4'): a build argument's value is always text."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise SpecError(
            f"--build-arg {text!r}: expected KEY=VALUE, for example --build-arg CUDA=12.4"
        )
    return name, value


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


class S3Data(BaseModel):
    """A --data source already in S3: the RunSpec's data entry as it is."""

    model_config = ConfigDict(frozen=True)

    name: str
    s3_uri: str

    def entry(self) -> dict[str, str]:
        return {"s3_uri": self.s3_uri, "name": self.name}


class LocalData(BaseModel):
    """A --data source on this machine (a folder, or one file): local mode uploads it to the
    runctl bucket first (runctl/data_folders.py); `path` is absolute, its links not resolved."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    argument: str  # as the user wrote it, for messages


DataArgument = S3Data | LocalData

_DATA_FORMS = "expected s3://bucket/key, a local folder, or name=either"


def parse_data(text: str, base: Path | None = None) -> DataArgument:
    """'s3://b/imagenet/' -> S3Data named "imagenet"; './ds' -> LocalData named "ds" (relative
    to `base`, default the working directory); 'name=...' names either. The text before the
    first '=' is a name only if it has no '/', '\\' or ':' (write './a=b' for a folder 'a=b')."""
    name, separator, source = text.partition("=")
    if not separator or any(character in name for character in "/\\:"):
        name, source = "", text
    if not source:
        raise SpecError(f"--data {text!r}: {_DATA_FORMS}")
    item: DataArgument
    if source.startswith("s3://"):
        if not S3_URI_PATTERN.match(source):
            raise SpecError(
                f"--data {text!r}: not a valid S3 URI; write s3://bucket/key (lower-case bucket)"
            )
        last = source.removeprefix("s3://").rstrip("/").rsplit("/", 1)[-1]
        item = S3Data(name=name or _safe_name(last), s3_uri=source)
    elif _URI_SCHEME.match(source):
        raise SpecError(f"--data {text!r}: {_DATA_FORMS}")
    else:
        path = Path(os.path.abspath((base or Path.cwd()) / Path(source).expanduser()))
        item = LocalData(name=name or _safe_name(path.name), path=path, argument=text)
    if not re.match(NAME_PATTERN, item.name):
        raise SpecError(f"--data {text!r}: the name must be letters, digits, '.', '_' or '-'")
    return item


def _safe_name(last: str) -> str:
    return _UNSAFE_NAME_CHARACTERS.sub("-", last).strip("-._") or "data"


def build_spec(fields: dict[str, Any]) -> RunSpec:
    """Validate with the same model as ValidateRun, so errors name the same fields."""
    try:
        return RunSpec.model_validate(fields)
    except ValidationError as error:
        raise SpecError(f"invalid run: {describe_validation_error(error)}") from error

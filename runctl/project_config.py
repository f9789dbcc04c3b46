"""`.runctl.toml`: a project's defaults for run options and for finding the stack.

Found by walking up from a starting folder (the script's, or the working directory). Flags on the
command line override every key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runctl.errors import ConfigError

CONFIG_FILE_NAME = ".runctl.toml"


class ProjectConfig(BaseModel):
    """Every key is optional; an unknown key is an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack_name: str | None = Field(default=None, min_length=1, max_length=128)
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    experiment: str | None = None
    instance_types: list[str] | None = None
    market: Literal["spot", "on-demand"] | None = None
    max_runtime: str | None = Field(default=None, description="e.g. 6h, as for --max-runtime")
    data: list[str] | None = Field(default=None, description="as for --data, repeatable")
    hyperparameters: dict[str, bool | int | float | str] | None = None
    hyperparameters_as_args: bool | None = None
    image: str | None = Field(default=None, description="as for --image")
    build: str | None = Field(default=None, description="a Dockerfile, as for --build")
    build_context: str | None = Field(default=None, description="as for --build-context")
    build_args: dict[str, str] | None = Field(default=None, description="as for --build-arg")


class LoadedConfig(BaseModel):
    """The config and the folder it was found in (the project root), if any."""

    config: ProjectConfig = Field(default_factory=ProjectConfig)
    root: Path | None = None


def find_config_file(start: Path) -> Path | None:
    """The nearest `.runctl.toml` in `start` or a folder above it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def load_project_config(start: Path) -> LoadedConfig:
    """Read the nearest `.runctl.toml`; no file means no defaults."""
    path = find_config_file(start)
    if path is None:
        return LoadedConfig()
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error}); fix the file") from error
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_describe(error)}; fix or remove that key") from error
    return LoadedConfig(config=config, root=path.parent)


_UNION_MEMBER_TAGS = {"bool", "int", "float", "str"}


def _describe(error: ValidationError) -> str:
    """One problem per top-level key (a union reports one per member: the first says enough)."""
    problems: dict[str, str] = {}
    for problem in error.errors(include_url=False):
        loc = [str(part) for part in problem["loc"]]
        if len(loc) > 1 and loc[-1] in _UNION_MEMBER_TAGS:
            loc = loc[:-1]
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        problems.setdefault(loc[0], f"key {'.'.join(loc)!r}: {message}")
    return "; ".join(problems.values())

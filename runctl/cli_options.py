"""The run flags shared by `runctl submit`, `runctl local run` (and later `runctl sweep`).

`@run_options` adds SCRIPT, `-- ARGS` and every run flag to a typer command and hands it one
`request: RunRequest`, so the commands cannot drift apart: moving from the laptop to the cloud is
changing `local run` into `submit`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from runctl.run_request import RunRequest
from runctl.specs import parse_hyperparameter

_SCRIPT = inspect.Parameter(
    "script",
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    annotation=Annotated[
        Path,
        typer.Argument(
            metavar="SCRIPT", help="the training script, inside your project", show_default=False
        ),
    ],
)
_SCRIPT_ARGS = inspect.Parameter(
    "script_args",
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    default=None,
    annotation=Annotated[
        list[str] | None,
        typer.Argument(metavar="ARGS", help="after --: passed to the script verbatim"),
    ],
)
_FLAGS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, default, annotation in (
        (
            "hp",
            None,
            Annotated[
                list[str] | None,
                typer.Option(
                    "--hp", help="hyperparameter key=value, typed (lr=0.01 is a number); repeatable"
                ),
            ],
        ),
        ("experiment", None, Annotated[str | None, typer.Option(help="experiment name")]),
        (
            "instance_type",
            None,
            Annotated[
                list[str] | None,
                typer.Option("--instance-type", help="in order of preference; repeatable"),
            ],
        ),
        (
            "spot",
            None,
            Annotated[
                bool | None,
                typer.Option("--spot/--on-demand", help="market (default: spot)"),
            ],
        ),
        (
            "data",
            None,
            Annotated[
                list[str] | None,
                typer.Option(
                    help="s3://bucket/prefix/ (or name=s3://...) staged into $RUNCTL_DATA_DIR"
                ),
            ],
        ),
        (
            "max_runtime",
            None,
            Annotated[str | None, typer.Option(help="wall-clock limit, e.g. 30m, 6h")],
        ),
        (
            "project_dir",
            None,
            Annotated[
                Path | None,
                typer.Option(
                    help="what to package (default: the folder of .runctl.toml, else the "
                    "script's folder)"
                ),
            ],
        ),
        (
            "hyperparameters_as_args",
            None,
            Annotated[
                bool | None,
                typer.Option(
                    "--hyperparameters-as-args/--no-hyperparameters-as-args",
                    help="also pass each --hp as '--key value' to the script",
                ),
            ],
        ),
    )
]
RUN_FLAG_NAMES = tuple(parameter.name for parameter in _FLAGS)

Command = TypeVar("Command", bound=Callable[..., Any])


def request_from_flags(
    script: Path,
    script_args: list[str] | None,
    hp: list[str] | None,
    experiment: str | None,
    instance_type: list[str] | None,
    spot: bool | None,
    data: list[str] | None,
    max_runtime: str | None,
    project_dir: Path | None,
    hyperparameters_as_args: bool | None,
) -> RunRequest:
    """Typed RunRequest from the flags as typed; a bad --hp raises SpecError."""
    return RunRequest(
        script=script,
        args=tuple(script_args or ()),
        hyperparameters=dict(parse_hyperparameter(item) for item in hp or []),
        experiment=experiment,
        instance_types=tuple(instance_type) if instance_type else None,
        market=None if spot is None else ("spot" if spot else "on-demand"),
        data=tuple(data) if data else None,
        max_runtime=max_runtime,
        project_dir=project_dir,
        hyperparameters_as_args=hyperparameters_as_args,
    )


def run_options(command: Command) -> Command:
    """Give `command(request: RunRequest, ...own options)` the shared SCRIPT, ARGS and flags."""
    own = [
        parameter
        for parameter in inspect.signature(command, eval_str=True).parameters.values()
        if parameter.name != "request"
    ]

    @functools.wraps(command)
    def with_request(**values: Any) -> Any:
        shared = {name: values.pop(name) for name in ("script", "script_args", *RUN_FLAG_NAMES)}
        return command(request=request_from_flags(**shared), **values)

    # typer reads a command's options from its signature: show it the combined one.
    keyword_own = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in own]
    with_request.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [_SCRIPT, _SCRIPT_ARGS, *_FLAGS, *keyword_own]
    )
    with_request.__annotations__ = {}
    return with_request  # type: ignore[return-value]

"""The run flags shared by `runctl submit`, `runctl local run`, `runctl sweep` and
`runctl local sweep`, and the sweep flags shared by the two sweep commands.

`@run_options` adds SCRIPT, `-- ARGS` and every run flag to a typer command and hands it one
`request: RunRequest`, so the commands cannot drift apart: moving from the laptop to the cloud is
changing `local run` into `submit`.
"""

from __future__ import annotations

import functools
import inspect
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from runctl.run_request import RunRequest
from runctl.specs import parse_build_arg, parse_hyperparameter
from runctl.sweeps import SweepOptions

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
                    help="s3://bucket/prefix/ (or name=s3://...) staged into $RUNCTL_DATA_DIR/"
                    "<name>; local mode also takes a local folder or file (./ds, name=./ds); "
                    "repeatable"
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
        (
            "image",
            None,
            Annotated[
                str | None,
                typer.Option(
                    help="run the script in this container image (ECR or public URI)",
                    rich_help_panel="Container",
                ),
            ],
        ),
        (
            "build",
            None,
            Annotated[
                Path | None,
                typer.Option(
                    metavar="DOCKERFILE",
                    help="build the image from this Dockerfile in your AWS account (no local "
                    "Docker needed) and run the script in it; rebuilt only when the context "
                    "changes",
                    rich_help_panel="Container",
                ),
            ],
        ),
        (
            "build_arg",
            None,
            Annotated[
                list[str] | None,
                typer.Option(
                    "--build-arg",
                    metavar="KEY=VALUE",
                    help="a Docker build argument; repeatable",
                    rich_help_panel="Container",
                ),
            ],
        ),
        (
            "build_context",
            None,
            Annotated[
                Path | None,
                typer.Option(
                    help="the folder the build reads (default: the Dockerfile's folder; "
                    ".dockerignore in it is honoured)",
                    rich_help_panel="Container",
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
    image: str | None = None,
    build: Path | None = None,
    build_arg: list[str] | None = None,
    build_context: Path | None = None,
) -> RunRequest:
    """Typed RunRequest from the flags as typed; a bad --hp or --build-arg raises SpecError."""
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
        image=image,
        build=build,
        build_args=dict(parse_build_arg(item) for item in build_arg or []),
        build_context=build_context,
    )


def _bundled(
    target: str, parameters: list[inspect.Parameter], build: Callable[..., Any]
) -> Callable[[Command], Command]:
    """A decorator giving `command(<target>=build(**flags), ...own options)` the `parameters`:
    typer sees them in the signature, the command gets one built object."""
    names = tuple(parameter.name for parameter in parameters)

    def decorate(command: Command) -> Command:
        own = [
            parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for parameter in inspect.signature(command, eval_str=True).parameters.values()
            if parameter.name != target
        ]

        @functools.wraps(command)
        def with_bundle(**values: Any) -> Any:
            flags = {name: values.pop(name) for name in names}
            return command(**{target: build(**flags)}, **values)

        # typer reads a command's options from its signature: show it the combined one
        # (positional arguments first, as Python requires).
        positional = [p for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        keyword = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
        with_bundle.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*positional, *keyword, *own]
        )
        with_bundle.__annotations__ = {}
        return with_bundle  # type: ignore[return-value]

    return decorate


# Adds SCRIPT, ARGS and every run flag; the command receives `request: RunRequest`.
run_options = _bundled("request", [_SCRIPT, _SCRIPT_ARGS, *_FLAGS], request_from_flags)


def _keyword(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


_SWEEP_FLAGS = [
    _keyword(
        "grid",
        None,
        Annotated[
            list[str] | None,
            typer.Option(
                "--grid",
                help="NAME=V1,V2,...: every combination of the grids is a run; repeatable",
            ),
        ],
    ),
    _keyword(
        "sample",
        None,
        Annotated[
            list[str] | None,
            typer.Option(
                "--sample",
                help="NAME=uniform:LO:HI | log_uniform:LO:HI | int_uniform:LO:HI | choice:A,B "
                "(with --random); repeatable",
            ),
        ],
    ),
    _keyword(
        "random",
        None,
        Annotated[
            int | None,
            typer.Option(
                "--random",
                help="draw N runs at random (from --sample, else from the --grid values)",
            ),
        ],
    ),
    _keyword(
        "seed",
        None,
        Annotated[
            int | None,
            typer.Option(
                "--seed",
                help="random seed: the same seed draws the same runs (default: a new one, printed)",
            ),
        ],
    ),
    _keyword(
        "max_parallel",
        None,
        Annotated[
            int | None,
            typer.Option("--max-parallel", help="runs at once (default: 4)"),
        ],
    ),
    _keyword(
        "objective",
        None,
        Annotated[
            str | None,
            typer.Option("--objective", help="METRIC:min or METRIC:max: names the best run"),
        ],
    ),
    _keyword(
        "tolerate_failures",
        None,
        Annotated[
            float | None,
            typer.Option(
                "--tolerate-failures",
                help="percent of runs that may fail before the sweep fails (default: 0)",
            ),
        ],
    ),
    _keyword(
        "stop_on_failure",
        False,
        Annotated[
            bool,
            typer.Option("--stop-on-failure", help="stop the remaining runs at the first failure"),
        ],
    ),
]


def sweep_from_flags(
    grid: list[str] | None,
    sample: list[str] | None,
    random: int | None,
    seed: int | None,
    max_parallel: int | None,
    objective: str | None,
    tolerate_failures: float | None,
    stop_on_failure: bool,
) -> SweepOptions:
    """Typed SweepOptions. `--random` without `--seed` draws a seed here, once, so two sweeps
    differ unless asked not to (the sweep prints its seed, to repeat it)."""
    if random is not None and seed is None:
        seed = secrets.randbelow(2**32)
    return SweepOptions(
        grid=tuple(grid or ()),
        samples=tuple(sample or ()),
        random=random,
        seed=seed,
        max_parallel=max_parallel,
        objective=objective,
        tolerated_failure_percentage=tolerate_failures,
        stop_on_failure=stop_on_failure,
    )


# Adds the sweep flags; the command receives `sweep: SweepOptions`. Use under @run_options.
sweep_options = _bundled("sweep", _SWEEP_FLAGS, sweep_from_flags)

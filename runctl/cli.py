"""The `runctl` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lambdas.models.run_spec import RunSpec
from runctl.local.commands import local_app

app = typer.Typer(
    name="runctl",
    help="Run ML training on EC2 spot instances that survives interruptions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(local_app, name="local")
console = Console()


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file instead of stdout")
    ] = None,
) -> None:
    """Print the RunSpec JSON Schema (what a run's input must look like)."""
    text = json.dumps(RunSpec.model_json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


def main() -> None:
    app()

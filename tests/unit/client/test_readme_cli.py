"""The README's "Using the CLI" and "Sweeps" sections name commands and SDK calls that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.main import get_command

from runctl.cli import app
from runctl.client import Client

README = Path(__file__).resolve().parents[3] / "README.md"


def _section(title: str = "Using the CLI") -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


@pytest.mark.parametrize("title", ["Using the CLI", "Sweeps"])
def test_every_command_in_the_section_exists(title):
    group = get_command(app)
    shown = re.findall(r"^runctl ([a-z]+)(?: ([a-z]+))?", _section(title), re.M)
    assert shown
    for command, sub in shown:
        assert command in group.commands  # type: ignore[attr-defined]
        if sub and hasattr(group.commands[command], "commands"):  # type: ignore[attr-defined]
            assert sub in group.commands[command].commands  # type: ignore[attr-defined]


def test_the_sdk_example_calls_methods_the_client_has():
    example = re.search(r"```python\n(.*?)```", _section(), re.S)[1]  # type: ignore[index]
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(example))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "client"
    }
    assert calls == {"submit", "follow", "compare", "plot"}
    assert all(callable(getattr(Client, name)) for name in calls)


def test_the_sweeps_section_names_sdk_methods_the_client_has():
    named = set(re.findall(r"client\.([a-z_]+)", _section("Sweeps")))
    assert named == {"submit_sweep", "follow_sweep", "sweep", "cancel_sweep", "list_sweeps"}
    assert all(callable(getattr(Client, name)) for name in named)

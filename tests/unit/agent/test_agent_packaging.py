"""The agent ships alone to a stock python3.9: standard library and boto3 only, no project code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

AGENT_DIR = Path(__file__).resolve().parents[3] / "instance_agent"
MODULES = sorted(AGENT_DIR.glob("*.py"))
ALLOWED_THIRD_PARTY = {"boto3", "botocore"}


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_the_agent_imports_only_itself_the_standard_library_and_boto3(module: Path):
    tree = ast.parse(module.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])

    foreign = names - set(sys.stdlib_module_names) - ALLOWED_THIRD_PARTY - {"__future__"}

    assert foreign == set(), f"{module.name} imports {sorted(foreign)}"


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_every_agent_module_postpones_annotations_for_python_3_9(module: Path):
    tree = ast.parse(module.read_text())
    futures = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "__future__"
        for alias in node.names
    }

    assert "annotations" in futures


def test_the_agent_lints_for_python_3_9():
    config = (AGENT_DIR / "ruff.toml").read_text()

    assert 'target-version = "py39"' in config
    assert 'extend = "../pyproject.toml"' in config

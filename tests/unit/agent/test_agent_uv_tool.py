"""find_uv: the uv the agent builds environments with, or None (then pip builds them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from instance_agent.uv_tool import UV_VERSION, find_uv


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


class FakePip:
    """Stands in for `python -m pip install --target DIR uv==X`: records, and lays out DIR."""

    def __init__(self, succeed: bool = True) -> None:
        self.succeed = succeed
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        target = Path(argv[argv.index("--target") + 1])
        if self.succeed:
            _executable(target / "bin" / "uv")
            return subprocess.CompletedProcess(argv, 0, "", "")
        return subprocess.CompletedProcess(argv, 1, "", "ERROR: No matching distribution\n")


def test_given_runctl_uv_then_it_is_used_without_installing(tmp_path):
    given = _executable(tmp_path / "mine" / "uv")
    pip = FakePip()

    assert find_uv(tmp_path, {"RUNCTL_UV": str(given), "PATH": ""}, run=pip) == str(given)
    assert pip.calls == []


def test_given_nothing_then_uv_is_installed_once_under_tools(tmp_path):
    pip = FakePip()

    first = find_uv(tmp_path, {"PATH": ""}, run=pip)
    second = find_uv(tmp_path, {"PATH": ""}, run=pip)

    assert first == second == str(tmp_path / "tools" / f"uv-{UV_VERSION}" / "bin" / "uv")
    assert len(pip.calls) == 1
    assert pip.calls[0][-1] == f"uv=={UV_VERSION}"
    assert not (tmp_path / "tools" / f"uv-{UV_VERSION}.partial").exists()


def test_given_uv_on_path_then_it_is_used(tmp_path):
    on_path = _executable(tmp_path / "bin" / "uv")
    pip = FakePip()

    assert find_uv(tmp_path / "home", {"PATH": str(on_path.parent)}, run=pip) == str(on_path)
    assert pip.calls == []


def test_given_the_install_fails_then_none_and_nothing_half_installed(tmp_path):
    assert find_uv(tmp_path, {"PATH": ""}, run=FakePip(succeed=False)) is None
    assert not (tmp_path / "tools").exists() or not any((tmp_path / "tools").iterdir())

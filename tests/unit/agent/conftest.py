"""Fixtures for the instance agent's unit tests: specs, work directories, tar archives."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from instance_agent.config import Spec
from instance_agent.workdir import WorkDirs


@pytest.fixture
def make_spec() -> Callable[..., Spec]:
    def build(**fields: Any) -> Spec:
        defaults: dict[str, Any] = {
            "code_uri": "s3://bucket/code/abc.tar.gz",
            "entry_point": "train.py",
        }
        return Spec(**{**defaults, **fields})

    return build


@pytest.fixture
def workdirs(tmp_path: Path) -> WorkDirs:
    return WorkDirs.create(tmp_path / "home", "run-1")


@pytest.fixture
def make_tar(tmp_path: Path) -> Callable[[list[tarfile.TarInfo | tuple[str, bytes]]], Path]:
    """Build a .tar.gz from (name, content) files and hand-made TarInfo entries (links, devices)."""

    def build(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
        path = tmp_path / "archive.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for member in members:
                if isinstance(member, tarfile.TarInfo):
                    tar.addfile(member)
                else:
                    name, content = member
                    info = tarfile.TarInfo(name)
                    info.size = len(content)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(content))
        return path

    return build

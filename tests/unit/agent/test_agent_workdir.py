"""A run's directories: the same paths on every attempt (libraries that remember where they saved
resume without noticing a move), fresh each time, under RUNCTL_WORK_ROOT when it is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from instance_agent.workdir import OWNER_FILE, WORK_ROOT_ENV, WorkDirs


def test_every_attempt_gets_the_same_paths_and_starts_them_afresh(tmp_path, monkeypatch):
    monkeypatch.delenv(WORK_ROOT_ENV, raising=False)
    first = WorkDirs.create(tmp_path / "home", "run-1")
    (first.checkpoints / "last.ckpt").write_text("attempt 1")

    second = WorkDirs.create(tmp_path / "home", "run-1")

    assert second == first
    assert second.checkpoints == (tmp_path / "home" / "work" / "run-1" / "checkpoints").resolve()
    assert list(second.checkpoints.iterdir()) == []


@pytest.mark.parametrize("run_id", ["run-a", "run-b"])
def test_a_work_root_shared_by_local_instances_names_the_home_that_owns_each_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_id: str
):
    monkeypatch.setenv(WORK_ROOT_ENV, str(tmp_path / "shared"))
    home = tmp_path / "instances" / "i-1"

    dirs = WorkDirs.create(home, run_id)

    assert dirs.root == (tmp_path / "shared" / run_id).resolve()
    assert (dirs.root / OWNER_FILE).read_text() == str(home.resolve())

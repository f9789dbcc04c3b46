"""The experiment record's source: git commit of the packaged project and whether it was dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runctl.source_info import source_info


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _repository(root: Path) -> str:
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "test@example.com")
    _git(root, "config", "user.name", "test")
    (root / "project").mkdir()
    (root / "project" / "train.py").write_text("print(1)\n")
    (root / ".gitignore").write_text("*.ckpt\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    return _git(root, "rev-parse", "HEAD")


def test_a_clean_tree_records_its_commit_and_not_dirty(tmp_path):
    head = _repository(tmp_path)
    (tmp_path / "project" / "model.ckpt").write_text("ignored by git")

    info = source_info(tmp_path / "project")

    assert info.git_commit == head
    assert info.git_dirty is False


def test_a_changed_or_untracked_file_in_the_project_makes_it_dirty(tmp_path):
    _repository(tmp_path)
    (tmp_path / "project" / "new.py").write_text("x = 1\n")

    assert source_info(tmp_path / "project").git_dirty is True


def test_changes_outside_the_packaged_folder_do_not_count(tmp_path):
    _repository(tmp_path)
    (tmp_path / "README.md").write_text("notes\n")

    assert source_info(tmp_path / "project").git_dirty is False


def test_outside_a_repository_both_are_unknown(tmp_path):
    info = source_info(tmp_path)
    assert info.git_commit is None
    assert info.git_dirty is None

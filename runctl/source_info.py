"""The git commit of the packaged project and whether its tree had uncommitted changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lambdas.models.run_spec import SourceInfo

_GIT_TIMEOUT_SECONDS = 10


def _git(root: Path, *args: str) -> str | None:
    """git's stdout, or None when git is missing, the folder is no repository, or git fails."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        completed = subprocess.run(
            [git, "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout if completed.returncode == 0 else None


def source_info(root: Path) -> SourceInfo:
    """Commit of HEAD, and dirty = changed or untracked (not ignored) files under `root`.

    Both are None outside a repository (or in one with no commit yet).
    """
    commit = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if commit is None:
        return SourceInfo()
    # Only what is packaged counts: changes elsewhere in the repository did not ship.
    status = _git(root, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    return SourceInfo(
        git_commit=commit.strip(), git_dirty=None if status is None else bool(status.strip())
    )

"""The attempt's local directories under ${RUNCTL_HOME}/work/<run_id>/<attempt>/."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "/opt/runctl"


def runctl_home() -> Path:
    return Path(os.environ.get("RUNCTL_HOME") or DEFAULT_HOME)


@dataclass(frozen=True)
class WorkDirs:
    root: Path
    code: Path
    data: Path
    checkpoints: Path
    output: Path
    logs: Path
    scratch: Path

    @classmethod
    def create(cls, home: Path, run_id: str, attempt: int) -> WorkDirs:
        """Make a fresh set of directories; a restarted agent starts its attempt from scratch."""
        root = (home / "work" / run_id / str(attempt)).resolve()
        if root.exists():
            shutil.rmtree(root)
        dirs = cls(
            root=root,
            code=root / "code",
            data=root / "data",
            checkpoints=root / "checkpoints",
            output=root / "output",
            logs=root / "logs",
            scratch=root / "scratch",
        )
        for path in (dirs.code, dirs.data, dirs.checkpoints, dirs.output, dirs.logs, dirs.scratch):
            path.mkdir(parents=True)
        return dirs

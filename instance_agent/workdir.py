"""The run's local directories under ${RUNCTL_WORK_ROOT:-$RUNCTL_HOME/work}/<run_id>/.

The same paths on every attempt: libraries that remember where they saved (Lightning's
ModelCheckpoint dirpath, a Trainer's output_dir) resume without noticing a move. Each attempt
starts them afresh; on AWS each attempt has its own instance, and in local mode, where instances
share one work root, an attempt's agent starts only after the previous attempt's instance handed
off or was terminated (ReleasePreviousAttempt).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "/opt/runctl"
WORK_ROOT_ENV = "RUNCTL_WORK_ROOT"
# Names the agent home that last used a run's directories (local mode removes them with it).
OWNER_FILE = ".owner"


def runctl_home() -> Path:
    return Path(os.environ.get("RUNCTL_HOME") or DEFAULT_HOME)


def work_root(home: Path) -> Path:
    return Path(os.environ.get(WORK_ROOT_ENV) or home / "work")


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
    def create(cls, home: Path, run_id: str) -> WorkDirs:
        """Make a fresh set of directories; a restarted agent starts its attempt from scratch."""
        root = (work_root(home) / run_id).resolve()
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
        (root / OWNER_FILE).write_text(str(home.resolve()))
        return dirs

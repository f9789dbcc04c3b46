"""Finding (or fetching) uv, which builds script environments over plain images fast.

uv is a wheel on PyPI with the binary inside. The agent installs it once per instance with its
own Python's pip (python3's) into $RUNCTL_HOME/tools/uv-<version>, only when an environment is
built with uv; without it, environments are built with pip (instance_agent/environment.py), so a
failure here only costs speed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

UV_VERSION = "0.13.9"
UV_ENV = "RUNCTL_UV"  # a uv to use as is (local mode sets it to runctl's own)
# Bounded: it runs inside a set-up that an interruption (two minutes' notice) may cut short.
_INSTALL_TIMEOUT = 60.0


def find_uv(
    home: Path,
    environ: dict[str, str] | None = None,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    python: str = sys.executable,
) -> str | None:
    """A uv executable: $RUNCTL_UV, one installed here before, one on PATH, or a fresh install;
    None when none can be had."""
    environ = dict(os.environ) if environ is None else environ
    given = environ.get(UV_ENV)
    if given and os.access(given, os.X_OK):
        return given
    target = home / "tools" / f"uv-{UV_VERSION}"
    installed = target / "bin" / "uv"
    if installed.is_file() and os.access(installed, os.X_OK):
        return str(installed)
    on_path = shutil.which("uv", path=environ.get("PATH"))
    if on_path:
        return on_path
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [python, "-m", "pip", "install", "--quiet", "--no-input", "--target", str(staging)]
    try:
        completed = run(
            [*command, f"uv=={UV_VERSION}"],
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.warning("cannot install uv (%s): building environments with pip", error)
        return None
    if completed.returncode != 0 or not (staging / "bin" / "uv").is_file():
        last = (completed.stderr or completed.stdout or "").strip().splitlines()[-1:] or ["?"]
        logger.warning("cannot install uv (%s): building environments with pip", last[0])
        shutil.rmtree(staging, ignore_errors=True)
        return None
    try:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except OSError as error:
        logger.warning("cannot install uv (%s): building environments with pip", error)
        return None
    return str(installed)

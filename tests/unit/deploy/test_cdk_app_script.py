"""scripts/cdk_app.sh, cdk.json's app command: the project's .venv interpreter from any shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "cdk_app.sh"
# Prints which interpreter ran, in which folder, with which arguments.
FAKE_PYTHON = '#!/bin/sh\necho "{name} $(pwd) $*"\n'


def _project(tmp_path: Path, with_venv: bool) -> Path:
    """A project folder holding the script (and a stand-in .venv interpreter, if asked)."""
    project = tmp_path / "runctl-0.1.0"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, project / "scripts" / "cdk_app.sh")
    if with_venv:
        _executable(project / ".venv" / "bin" / "python", FAKE_PYTHON.format(name="venv"))
    return project


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def _run_from_elsewhere(project: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`sh <project>/scripts/cdk_app.sh` from another folder, with a PATH whose python3 is a
    stand-in, and nothing else from our environment."""
    path_bin = tmp_path / "path-bin"
    _executable(path_bin / "python3", FAKE_PYTHON.format(name="path-python3"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return subprocess.run(
        ["/bin/sh", str(project / "scripts" / "cdk_app.sh"), "--extra"],
        cwd=elsewhere,
        env={"PATH": f"{path_bin}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cdk_json_runs_app_py_through_the_script():
    app = json.loads((REPO_ROOT / "cdk.json").read_text())["app"]

    assert app == "sh scripts/cdk_app.sh"


def test_the_script_runs_app_py_with_the_projects_venv_in_the_project_folder(tmp_path):
    project = _project(tmp_path, with_venv=True)

    done = _run_from_elsewhere(project, tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"venv {project} app.py --extra"
    assert done.stderr == ""


def test_without_a_venv_it_says_how_to_get_one_and_tries_python3(tmp_path):
    project = _project(tmp_path, with_venv=False)

    done = _run_from_elsewhere(project, tmp_path)

    assert done.stdout.strip() == f"path-python3 {project} app.py --extra"
    assert "no .venv/bin/python" in done.stderr
    assert "run `make synth` (or `make deploy`) first" in done.stderr

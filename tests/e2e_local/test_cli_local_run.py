"""`runctl local run` as a user types it: progress, final status, where the outputs are."""

from __future__ import annotations

import json
import shutil
import traceback

import pytest
from typer.testing import CliRunner

from runctl.cli import app
from tests.e2e_local.conftest import EXAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_cli_local_run")]


# Keeps the argv it was given in its outputs, then trains as the tiny example does.
RECORD_ARGV = """
import json, os, pathlib, runpy, sys
pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"], "argv.json").write_text(json.dumps(sys.argv[1:]))
runpy.run_path(str(pathlib.Path(__file__).with_name("train_tiny.py")), run_name="__main__")
"""
# Script arguments a shell would split, expand or run, if one ever saw them unquoted.
SCRIPT_ARGS = ["--flag", "two words", "$HOME;touch pwned", "'quoted'", "*"]


def test_local_run_of_the_example_prints_progress_and_succeeds(tmp_path, monkeypatch):
    # Given the tiny example in a project folder of its own, behind a script that keeps its argv
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(EXAMPLES / "train_tiny.py", project / "train_tiny.py")
    (project / "train.py").write_text(RECORD_ARGV)
    monkeypatch.chdir(tmp_path)

    # When the user runs it locally with hyperparameters and script arguments
    result = CliRunner().invoke(
        app,
        [
            "local",
            "run",
            "project/train.py",
            "--hp",
            "steps=20",
            "--hp",
            "step_seconds=0",
            "--",
            *SCRIPT_ARGS,
        ],
    )

    # Then it shows status changes and metrics, and ends SUCCEEDED with the outputs location
    assert result.exit_code == 0, (
        result.output,
        "".join(traceback.format_exception(result.exception)) if result.exception else "",
    )
    out = result.output
    # (statuses are sampled, so a fast run may skip one, but never reorder them)
    lifecycle = ["PENDING", "LAUNCHING", "STAGING", "RUNNING", "SUCCEEDED"]
    shown = [line.split("status ")[1].strip() for line in out.splitlines() if "status " in line]
    assert shown == sorted(shown, key=lifecycle.index)
    assert shown[-1] == "SUCCEEDED"
    assert len(shown) >= 2
    assert "metric step=20" in out
    assert "outputs: s3://runctl-local-bucket/runs/run-" in out
    outputs = next((tmp_path / ".runctl-local" / "runs").glob("run-*/outputs"))
    assert (outputs / "weights.npy").is_file()
    # And the script got its arguments verbatim, one argv entry each, none run by a shell
    assert json.loads((outputs / "argv.json").read_text()) == SCRIPT_ARGS
    assert not list(tmp_path.rglob("pwned"))


def test_local_run_of_a_missing_script_says_so_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["local", "run", "nope.py"])

    assert result.exit_code == 2
    assert "script not found" in result.output
    assert "Traceback" not in result.output


def test_local_run_with_bad_hp_syntax_fails_before_starting_anything(tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["local", "run", "train.py", "--hp", "lr"])

    assert result.exit_code == 2
    assert "expected key=value" in result.output
    assert not (tmp_path / ".runctl-local").exists()

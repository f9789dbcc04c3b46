"""`runctl local run` keeps each run in the local history, where `runctl local runs ...` and
`runctl local status` read it back with the same rendering as the cloud commands."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from runctl.client.plotting import curve_id
from tests.e2e_local.conftest import invoke_cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_cli_local_history")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_local_runs_are_listed_compared_and_plotted_after_the_emulator_is_gone(
    tmp_path, monkeypatch
):
    # Given a project with defaults in .runctl.toml
    shutil.copy(EXAMPLES / "train_tiny.py", tmp_path / "train_tiny.py")
    (tmp_path / ".runctl.toml").write_text(
        'experiment = "local-e2e"\n[hyperparameters]\nsteps = 10\nstep_seconds = 0\n'
    )
    monkeypatch.chdir(tmp_path)

    # When two local runs finish (each with its own emulator, gone when the command ends)
    first = invoke_cli("local", "run", "train_tiny.py", "--hp", "lr=0.05")
    second = invoke_cli("local", "run", "train_tiny.py", "--hp", "lr=0.3")
    run_a = re.search(r"started run (run-\S+)", first)[1]  # type: ignore[index]
    run_b = re.search(r"started run (run-\S+)", second)[1]  # type: ignore[index]

    # Then the local history lists both under the config's experiment
    listed = invoke_cli("local", "runs", "list", "--experiment", "local-e2e")
    assert re.findall(r"run-\S+", listed) == [run_b, run_a]
    # ...compares them, and plots both curves
    plot = tmp_path / "curves.html"
    compared = invoke_cli("local", "runs", "compare", run_a, run_b, "--plot", str(plot))
    lr_row = next(line for line in compared.splitlines() if line.startswith("lr"))
    assert lr_row.split()[1:] == ["0.05", "0.3"]
    page = plot.read_text()
    assert curve_id("loss", run_a) in page
    assert curve_id("loss", run_b) in page
    # ...and shows how one ended
    status = invoke_cli("local", "status", run_a)
    assert f"{run_a} SUCCEEDED" in status
    assert re.search(r"completed in \d+s, cost <?\$", status)
    shown = invoke_cli("local", "runs", "show", run_a)
    assert "steps=10" in shown
    assert "lr=0.05" in shown

"""`runctl sweep`, `runctl sweeps ...` and `runctl local sweep` as a user types them, with whole
sweeps really running: the cloud commands against local mode registered as the stack, and the
local command with an emulator of its own."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lambdas.logic.sweeps import child_run_id
from lambdas.models.run_record import RunStatus
from runctl.client import Client
from tests.e2e_local.conftest import (
    EXAMPLES,
    QUICK,
    STACK,
    assert_checkpointed_on_sigterm,
    invoke_cli,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_cli_sweeps")]


def _sweep_id(output: str) -> str:
    return re.search(r"started sweep (sweep-[0-9a-f-]+)", output)[1]  # type: ignore[index]


def _row(output: str, run_id: str) -> str:
    return next(line for line in output.splitlines() if f" {run_id}" in line and "│" in line)


def test_sweep_wait_runs_every_point_and_names_the_best_then_list_show_and_runs(cloud, project):
    # When the user sweeps two learning rates, two at a time, and waits
    output = invoke_cli("sweep", "train_tiny.py", *QUICK, "--grid", "lr=0.02,0.2",
                        "--max-parallel", "2", "--objective", "loss:min", "--wait")  # fmt: skip
    sweep_id = _sweep_id(output)
    first, second = child_run_id(sweep_id, 0), child_run_id(sweep_id, 1)

    # Then it said what it started, each run as it finished, and the summary with the best
    assert f"started sweep {sweep_id}: 2 runs, 2 at a time, best by loss:min" in output
    assert f"SUCCEEDED {first}" in output and f"SUCCEEDED {second}" in output
    assert f"sweep {sweep_id}: SUCCEEDED - 2 of 2 runs succeeded" in output
    client = Client(stack_name=STACK)
    losses = {run: client.status(run).record.final_metrics["loss"] for run in (first, second)}
    best = min(losses, key=losses.__getitem__)
    assert f"{best} *" in _row(output, best)
    assert f"best by loss:min: {best}" in output

    # ...and the sweep is listed, shown again, and its runs are one experiment
    listed = invoke_cli("sweeps", "list")
    assert re.search(rf"{sweep_id}\s+│\s+SUCCEEDED", listed), listed
    assert f"{best} *" in invoke_cli("sweeps", "show", sweep_id)
    runs = invoke_cli("runs", "list", "--experiment", sweep_id)
    assert first in runs and second in runs
    compared = invoke_cli("runs", "compare", first, second)
    assert "lr" in compared


def test_sweeps_cancel_stops_the_running_runs_gracefully_and_leaves_no_instance(
    cloud, project, wait_for_record
):
    # Given a sweep of long runs, one at a time, started without waiting
    output = invoke_cli("sweep", "train_tiny.py", "--hp", "steps=4000", "--hp",
                        "step_seconds=0.05", "--grid", "lr=0.01,0.02,0.03",
                        "--max-parallel", "1")  # fmt: skip
    sweep_id = _sweep_id(output)
    first = child_run_id(sweep_id, 0)
    # (the stop reaches the script through a notice the agent reads every 2 s: steps are done by
    # then, so its SIGTERM checkpoint is past step 0)
    wait_for_record(cloud, first, lambda record: record.status == RunStatus.RUNNING)

    # When the user cancels it
    cancelled = invoke_cli("sweeps", "cancel", sweep_id)
    shown = invoke_cli("sweeps", "show", sweep_id, "--wait", exit_code=1)  # not a success

    # Then the running run was asked to stop, the others never started, nothing is left running
    assert f"sweep {sweep_id} starts no more runs; 1 running run was asked to stop" in cancelled
    assert first in cancelled
    assert f"sweep {sweep_id}: CANCELLED" in shown
    assert "CANCELLED" in _row(shown, first)
    assert_checkpointed_on_sigterm(cloud, first)
    for index in (1, 2):
        assert "SKIPPED" in _row(shown, child_run_id(sweep_id, index))
    assert cloud.live_instances() == []


def test_local_sweep_runs_the_sweep_and_keeps_it_in_the_local_history(tmp_path, monkeypatch):
    # Given the example in a project folder, and no emulator running (the command starts one)
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(EXAMPLES / "train_tiny.py", project / "train_tiny.py")
    monkeypatch.chdir(tmp_path)

    # When the user runs a sweep locally
    output = invoke_cli("local", "sweep", "project/train_tiny.py", *QUICK,
                        "--grid", "lr=0.02,0.2", "--objective", "loss:min")  # fmt: skip
    sweep_id = _sweep_id(output)

    # Then it ran and summarised both runs, and the sweep and its runs outlive the emulator
    assert f"sweep {sweep_id}: SUCCEEDED - 2 of 2 runs succeeded" in output
    assert sweep_id in invoke_cli("local", "sweeps", "list")
    shown = invoke_cli("local", "sweeps", "show", sweep_id)
    assert "*" in _row(shown, child_run_id(sweep_id, 0)) + _row(shown, child_run_id(sweep_id, 1))
    runs = invoke_cli("local", "runs", "list", "--experiment", sweep_id)
    assert child_run_id(sweep_id, 0) in runs and child_run_id(sweep_id, 1) in runs
    assert (Path(tmp_path) / ".runctl-local" / "history" / ".sweeps" / f"{sweep_id}.json").is_file()

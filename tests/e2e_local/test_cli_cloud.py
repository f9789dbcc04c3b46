"""The cloud commands as a user types them, against local mode standing in for AWS.

The local deployment is registered as the CloudFormation stack "Runctl" (as `cdk deploy` would
leave it), and the emulator's AWS_ENDPOINT_URL is in the environment, so `runctl submit` finds the
stack through DescribeStacks and runs really execute: state machine, Lambdas, agent, script.
"""

from __future__ import annotations

import re

import pytest
from matplotlib import colors as mcolors
from matplotlib import image
from typer.testing import CliRunner

from lambdas.models.run_record import RunStatus
from runctl.cli import app
from runctl.client import Client
from runctl.client.plotting import curve_id
from tests.e2e_local.conftest import QUICK, STACK, invoke_cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_cli_cloud")]


def _run_id(output: str) -> str:
    return re.search(r"started run (run-\S+)", output)[1]  # type: ignore[index]


def _cells(output: str, row_name: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.strip().startswith(row_name))
    return line.split()[len(row_name.split()) :]


def test_submit_wait_two_runs_then_list_compare_and_plot(cloud, project, tmp_path):
    # Given every code upload the emulated S3 sees
    code_uploads: list[str] = []
    recorder = code_uploads.append
    cloud.emulator.on_upload_started.append(recorder)
    try:
        # When the user submits the example twice, with two learning rates, and waits
        first = invoke_cli("submit", "train_tiny.py", "--hp", "lr=0.05", *QUICK,
                        "--experiment", "cli-e2e", "--wait")  # fmt: skip
        second = invoke_cli("submit", "train_tiny.py", "--hp", "lr=0.2", *QUICK,
                         "--experiment", "cli-e2e", "--wait")  # fmt: skip
    finally:
        cloud.emulator.on_upload_started.remove(recorder)
    run_a, run_b = _run_id(first), _run_id(second)

    # Then each followed its run to the end, with metrics, and said what it took and cost
    lifecycle = ["PENDING", "LAUNCHING", "STAGING", "RUNNING", "SUCCEEDED"]
    for output in (first, second):
        # (statuses are sampled every 2 s, so a quick run may skip some, never reorder them)
        shown = re.findall(r"● status (\w+)", output)
        assert shown == sorted(shown, key=lifecycle.index)
        assert shown[-1] == "SUCCEEDED"
        assert "metric step=15" in output
        assert re.search(r"SUCCEEDED run run-\S+\n\s+completed in \d+s, cost <?\$", output)
    assert "↳ attempt 1: g5.xlarge spot i-" in first
    # ...and the unchanged code was uploaded once: the second submit sent nothing
    assert "nothing uploaded" not in first
    assert "code unchanged, nothing uploaded" in second
    assert len([key for key in code_uploads if key.startswith("code/")]) == 1

    # When the user lists the experiment's runs
    listed = invoke_cli("runs", "list", "--experiment", "cli-e2e")
    # Then both are there, newest first, succeeded
    assert re.findall(r"run-\S+", listed) == [run_b, run_a]
    assert listed.count("SUCCEEDED") == 2

    # When the user compares them and plots their curves
    plot = tmp_path / "curves.png"
    compared = invoke_cli("runs", "compare", run_a, run_b, "--plot", str(plot))

    # Then the learning rates differ side by side, with final metrics, duration and cost
    assert _cells(compared, "lr") == ["0.05", "0.2"]
    assert len(_cells(compared, "loss (last)")) == 2
    assert len(_cells(compared, "duration")) == 2
    assert "$" in _cells(compared, "cost")[0]
    assert "same in all runs: step_seconds=0, steps=15" in compared
    # ...and the PNG has both runs' curves (default colours C0 and C1, in the order given)
    pixels = image.imread(str(plot))[..., :3]
    for colour in ("C0", "C1"):
        close = (abs(pixels - mcolors.to_rgb(colour)) < 0.02).all(axis=-1)
        assert close.sum() > 200, f"no {colour} curve in the plot"
    # ...and an HTML plot names every run's curve
    page = tmp_path / "curves.html"
    invoke_cli("runs", "compare", run_a, run_b, "--plot", str(page))
    text = page.read_text()
    assert curve_id("loss", run_a) in text
    assert curve_id("loss", run_b) in text

    # And the experiment record holds what the issue asks for
    details = Client(stack_name=STACK).show(run_a)
    record = details.record
    assert record.experiment == "cli-e2e"
    assert record.spec["hyperparameters"] == {"lr": 0.05, "steps": 15, "step_seconds": 0}
    assert record.spec["code"]["sha256"]
    assert record.spec["entry_point"] == "train_tiny.py"
    assert record.metrics_summary["loss"].count == 3  # steps 5, 10, 15
    assert record.cost is not None and record.cost.attempts[0].seconds > 0
    assert details.metrics["loss"].last == Client(stack_name=STACK).metrics(run_a).last("loss")

    # And status, logs and runs show read the same run back
    status = invoke_cli("status", run_a)
    assert f"{run_a} SUCCEEDED" in status
    assert re.search(r"completed in \d+s, cost <?\$", status)
    logs = invoke_cli("logs", run_a)
    assert 'RUNCTL_METRIC {"step": 15' in logs
    shown = invoke_cli("runs", "show", run_a)
    assert "train_tiny.py" in shown
    assert "lr=0.05" in shown
    assert "completed" in _cells(shown, "1")


def test_logs_stream_a_live_run_and_stop_ends_it_gracefully(cloud, project):
    # Given a long run
    run_id = invoke_cli("submit", "-q", "train_tiny.py", "--hp", "steps=2000",
                     "--hp", "step_seconds=0.05").strip()  # fmt: skip
    client = Client(stack_name=STACK)

    # When the user follows its logs, and stops it once training shows in them
    streamed: list[str] = []
    stop_output = ""
    for line in client.logs(run_id, follow=True, poll_seconds=0.5):
        streamed.append(line.message)
        if not stop_output and line.message.startswith("RUNCTL_METRIC"):
            stop_output = invoke_cli("stop", run_id)

    # Then the CLI said what it did, the log stream went on to the agent's graceful end and
    # stopped by itself when the run became final
    assert "asked the agent on i-" in stop_output
    assert "(agent-asked-to-stop)" in stop_output
    metrics_seen = [line for line in streamed if line.startswith("RUNCTL_METRIC")]
    assert 1 <= len(metrics_seen) < 400  # it did not train to the end
    assert client.status(run_id).status == RunStatus.CANCELLED.value
    # ...the run says it was stopped, what it cost, and a second stop says it had finished
    status = invoke_cli("status", run_id)
    assert f"{run_id} CANCELLED" in status
    assert re.search(r"stopped after \d+s, cost <?\$", status)
    assert "already finished" in invoke_cli("stop", run_id)


def test_errors_against_the_emulated_cloud_are_one_line(cloud, project):
    cases = {
        ("--stack", "Nope", "runs", "list"): "no runctl stack named 'Nope'",
        ("status", "run-unknown"): "no run 'run-unknown' in stack 'Runctl'",
        ("logs", "run-unknown"): "no run 'run-unknown' in stack 'Runctl'",
        ("stop", "run-unknown"): "no run 'run-unknown' in stack 'Runctl'",
        ("submit", "missing.py"): "script not found: missing.py",
        ("submit", "train_tiny.py", "--hp", "lr"): "--hp 'lr': expected key=value",
    }
    for args, expected in cases.items():
        result = CliRunner().invoke(app, list(args))

        assert result.exit_code != 0, args
        assert "Traceback" not in result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith(f"error: {expected}"), (args, line)

"""Reading runs back from the stack: status, logs, list, show, compare (with a plot), stop."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from lambdas.models.run_record import Attempt, AttemptCost, ImageRecord, MetricSummary, RunCost
from runctl.cli import app
from runctl.client import Client, RunNotFound, RunRequest
from runctl.client.plotting import curve_id
from runctl.errors import StopUnavailable

from .conftest import STACK_NAME, record


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _cost(*attempts: tuple[float, str]) -> RunCost:
    costs = [
        AttemptCost(number=n, seconds=900, usd_per_hour=usd * 4, usd=usd, price_source=source)
        for n, (usd, source) in enumerate(attempts, start=1)
    ]
    return RunCost(total_usd=sum(usd for usd, _ in attempts), attempts=costs)


def _attempt(number: int, reason: str) -> Attempt:
    return Attempt(
        number=number,
        instance_id=f"i-{number:04d}",
        instance_type="g5.xlarge",
        market="spot",
        availability_zone="us-east-1a",
        started_at="2026-11-23T10:00:00+00:00",
        ended_at="2026-11-23T10:15:00+00:00",
        end_reason=reason,
    )


@pytest.fixture
def two_runs(cloud):
    """run-a (lr=0.1, interrupted once) and run-b (lr=0.01), same batch, in experiment demo."""
    cloud.put_record(
        record(
            "run-a",
            experiment="demo",
            attempt=2,
            spec={
                "entry_point": "train.py",
                "args": ["--fast"],
                "hyperparameters": {"lr": 0.1, "batch": 64},
                "code": {"s3_uri": "s3://b/code/x.tar.gz", "sha256": "ab" * 32},
                "source": {"git_commit": "0123456789abcdef", "git_dirty": True},
            },
            attempts={"1": _attempt(1, "spot-interrupted"), "2": _attempt(2, "completed")},
            cost=_cost((0.10, "spot-price-history"), (0.12, "spot-price-history")),
            metrics_summary={"loss": MetricSummary(last=0.2, min=0.2, max=1.0, count=4)},
        )
    )
    cloud.put_record(
        record(
            "run-b",
            experiment="demo",
            created_at="2026-11-23T11:00:00+00:00",
            spec={"entry_point": "train.py", "hyperparameters": {"lr": 0.01, "batch": 64}},
            attempts={"1": _attempt(1, "completed")},
            cost=_cost((0.84, "static-spot-estimate")),
            metrics_summary={"loss": MetricSummary(last=0.6, min=0.6, max=1.2, count=3)},
        )
    )
    cloud.put_metrics("run-a", 1, [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)])
    cloud.put_metrics("run-a", 2, [{"step": 3, "loss": 0.2}, {"step": 4, "loss": 0.15}])
    cloud.put_metrics("run-b", 1, [{"step": s, "loss": 1.2 / s} for s in (1, 2, 3)])
    return cloud


def _cells(output: str, row_name: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.strip().startswith(row_name))
    return line.split()[len(row_name.split()) :]


def test_runs_list_shows_newest_first_and_filters(two_runs):
    cloud = two_runs
    cloud.put_record(record("run-c", experiment="other", status="FAILED"))

    listed = CliRunner().invoke(app, ["runs", "list"])
    demo = CliRunner().invoke(app, ["runs", "list", "--experiment", "demo"])
    failed = CliRunner().invoke(app, ["runs", "list", "--status", "failed"])

    assert listed.exit_code == 0, listed.output
    order = re.findall(r"run-[abc]", listed.output)
    assert order == ["run-b", "run-a", "run-c"]  # run-b started an hour after the others
    assert re.findall(r"run-[abc]", demo.output) == ["run-b", "run-a"]
    assert re.findall(r"run-[abc]", failed.output) == ["run-c"]


def test_compare_puts_the_differing_hyperparameters_metrics_and_cost_side_by_side(
    two_runs, wide_console
):
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["runs", "compare", "run-a", "run-b"])

    assert result.exit_code == 0, result.output
    assert _cells(result.output, "lr") == ["0.1", "0.01"]
    assert _cells(result.output, "loss (last)") == ["0.2", "0.6"]
    assert _cells(result.output, "duration") == ["30m00s", "30m00s"]
    assert _cells(result.output, "cost") == [
        "$0.22",
        "$0.84",
        "(est.:",
        "static",
        "list",
        "prices)",
    ]
    assert _cells(result.output, "attempts") == ["2", "1"]
    # the same in both: said once, not a row
    assert not any(line.strip().startswith("batch") for line in result.output.splitlines())
    assert "same in all runs: batch=64" in result.output


def test_compare_plot_draws_every_run_s_curves(two_runs, tmp_path):
    plot = tmp_path / "curves.html"

    result = CliRunner().invoke(app, ["runs", "compare", "run-a", "run-b", "--plot", str(plot)])

    assert result.exit_code == 0, result.output
    page = plot.read_text()
    assert curve_id("loss", "run-a") in page
    assert curve_id("loss", "run-b") in page
    assert "run-a (lr=0.1)" in page


def test_metrics_merge_attempts_with_the_resumed_points_winning(two_runs):
    series = Client(stack_name=STACK_NAME).metrics("run-a")
    assert series.curves["loss"] == [(1.0, 1.0), (2.0, 0.5), (3.0, 0.2), (4.0, 0.15)]


def test_show_tells_the_experiment_record_attempts_and_cost(two_runs, wide_console):
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["runs", "show", "run-a"])

    assert result.exit_code == 0, result.output
    out = result.output
    assert "completed in 30m00s, cost $0.22" in out
    assert "train.py --fast" in out
    assert "lr=0.1, batch=64" in out
    assert "ab" * 32 in out
    assert "0123456789ab (uncommitted changes)" in out
    attempt_rows = [line.split() for line in out.splitlines() if re.match(r"\s*[12]\s+g5", line)]
    assert [row[-5] for row in attempt_rows] == ["spot-interrupted", "completed"]
    assert _cells(out, "loss") == ["0.2", "0.2", "1", "4"]


def test_status_of_a_finished_run(two_runs):
    result = CliRunner().invoke(app, ["status", "run-b"])

    assert result.exit_code == 0, result.output
    assert "run-b SUCCEEDED" in result.output
    assert "completed in 30m00s, cost $0.84 (est.: static list prices)" in result.output


def test_logs_print_every_attempt_in_order(cloud):
    cloud.put_record(record("run-a", attempt=2))
    cloud.put_logs("run-a", 1, ["first attempt", "interrupted"])
    cloud.put_logs("run-a", 2, ["resumed", "done"])

    result = CliRunner().invoke(app, ["logs", "run-a"])

    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert lines == ["first attempt", "interrupted", "── attempt 2 ──", "resumed", "done"]


def test_logs_print_the_image_build_before_the_attempts(cloud):
    build_id = "runctl-image-build:0f1e2d3c-aaaa-bbbb-cccc-000000000001"
    built = record("run-a", attempt=1).model_copy(
        update={"image": ImageRecord(uri="r/images:abc", build_id=build_id)}
    )
    cloud.put_record(built)
    cloud.put_logs(
        "run-a",
        0,
        ["Step 1/2 : FROM base", "Successfully built 1234"],
        stream="builds/abc/0f1e2d3c-aaaa-bbbb-cccc-000000000001",
    )
    cloud.put_logs("run-a", 1, ["training"])

    result = CliRunner().invoke(app, ["logs", "run-a"])

    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert lines == [
        "── image build ──",
        "Step 1/2 : FROM base",
        "Successfully built 1234",
        "── attempt 1 ──",
        "training",
    ]


def test_logs_follow_ends_when_the_run_is_final(cloud):
    cloud.put_record(record("run-a"))
    cloud.put_logs("run-a", 1, ["only line"])

    result = CliRunner().invoke(app, ["logs", "-f", "run-a"])

    assert result.exit_code == 0
    assert result.output.strip() == "only line"


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["logs"],
        ["logs", "-f"],
        ["stop"],
        ["runs", "show"],
        ["runs", "compare", "run-a"],
    ],
)
def test_an_unknown_run_id_is_one_line_pointing_at_the_list(two_runs, command):
    result = CliRunner().invoke(app, [*command, "run-nope"])

    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: no run 'run-nope' in stack 'Runctl': see the run ids with `runctl runs list`"
    ]


def test_the_sdk_raises_run_not_found(cloud):
    with pytest.raises(RunNotFound):
        Client(stack_name=STACK_NAME).show("run-nope")


def test_a_submitted_run_without_a_record_yet_is_starting(cloud, tmp_path):
    (tmp_path / "train.py").write_text("print(1)\n")
    client = Client(stack_name=STACK_NAME)
    run_id = client.submit(RunRequest(tmp_path / "train.py")).run_id

    # (moto's Step Functions does not execute here, so RecordRun never runs)
    assert client.status(run_id).status == "STARTING"


def test_stop_needs_a_stack_with_the_stop_function(cloud):
    # Given a stack deployed before `runctl stop` existed (no StopRunFunctionName output)
    cloud.put_record(record("run-a", status="RUNNING"))
    client = Client(stack_name=STACK_NAME)

    with pytest.raises(StopUnavailable, match="npx cdk deploy"):
        client.stop("run-a")


def test_logs_of_a_run_not_recorded_yet_are_empty_and_of_one_that_never_started_an_error(
    cloud, tmp_path
):
    (tmp_path / "train.py").write_text("print(1)\n")
    client = Client(stack_name=STACK_NAME)
    run_id = client.submit(RunRequest(tmp_path / "train.py")).run_id

    # (moto's Step Functions does not execute here: the run stays unrecorded)
    assert list(client.logs(run_id)) == []

    cloud.client("stepfunctions").stop_execution(executionArn=client.outputs.execution_arn(run_id))
    result = CliRunner().invoke(app, ["logs", run_id])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: run {run_id} never started, so it has no logs (its execution is ABORTED)"
    ]
    status = CliRunner().invoke(app, ["status", run_id])
    assert f"{run_id} ABORTED" in status.output
    assert "it never started: its execution is ABORTED" in status.output


def test_ctrl_c_while_waiting_stops_following_not_the_run(cloud, tmp_path, monkeypatch):
    # Given following a run is interrupted by the user (Ctrl-C)
    (tmp_path / "train.py").write_text("print(1)\n")

    def interrupted(self, run_id, on_event, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Client, "follow", interrupted)

    result = CliRunner().invoke(app, ["submit", "train.py", "--wait"])

    # Then the CLI says the run goes on and how to find it again; the execution still runs
    assert result.exit_code == 130
    run_id = result.output.split("started run ")[1].split()[0]
    assert f"stopped following; run {run_id} goes on" in result.output
    assert "Traceback" not in result.output
    described = cloud.client("stepfunctions").describe_execution(
        executionArn=Client(stack_name=STACK_NAME).outputs.execution_arn(run_id)
    )
    assert described["status"] == "RUNNING"

"""`runctl sweep` and `runctl sweeps ...` against a moto stack: the SweepSpec it starts (checked
and with the code uploaded once), how a sweep is found, listed and shown, and the errors.

Step Functions does not execute here: tests/e2e_local/test_cli_sweeps.py runs whole sweeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from lambdas.constants import sweep_summary_key
from lambdas.dal.runs_table import RunsTable
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.sweeps import plan_sweep
from lambdas.models.sweep_summary import SweepSummary
from runctl.cli import app
from runctl.client import Client
from runctl.local.deploy import LocalStack
from runctl.local.stack_outputs import publish_stack_outputs
from runctl.run_request import RunRequest
from runctl.sweeps import SweepOptions, SweepWatcher, sweep_execution_arn

from .conftest import STACK_NAME, record

SWEEP_STACK = "RunctlWithSweeps"


@pytest.fixture
def sweeps(cloud):
    """The same resources plus a Sweep state machine, registered as the stack SWEEP_STACK."""
    sfn = cloud.client("stepfunctions")
    role = cloud.client("iam").get_role(RoleName="train-run")["Role"]["Arn"]
    sweep_arn = sfn.create_state_machine(
        name="Sweep",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=role,
    )["stateMachineArn"]
    stack = LocalStack(
        cloud.stack.bucket,
        cloud.stack.table,
        cloud.stack.log_group,
        cloud.stack.state_machine_arn,
        function_arns={},
        sweep_state_machine_arn=sweep_arn,
    )
    publish_stack_outputs(stack, SWEEP_STACK, cloud.client("cloudformation"))
    return stack


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    root.mkdir()
    (root / "train.py").write_text("print('train')\n")
    monkeypatch.chdir(root)
    return root


def _sweep(*args: str, stack: str = SWEEP_STACK):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--stack", stack, *args])


def _execution_arn(sweeps, sweep_id: str) -> str:
    return sweep_execution_arn(sweeps.sweep_state_machine_arn, sweep_id)


def _sweep_input(cloud, sweeps, sweep_id: str) -> dict:
    sfn = cloud.client("stepfunctions")
    described = sfn.describe_execution(executionArn=_execution_arn(sweeps, sweep_id))
    return json.loads(described["input"])


def _started_sweep_id(output: str) -> str:
    return output.split("started sweep ")[1].split(":")[0]


def test_sweep_uploads_the_code_once_and_starts_the_sweep_it_checked(
    cloud, sweeps, project, wide_console
):
    result = _sweep(
        "sweep", "train.py", "--hp", "steps=50", "--experiment", "tuning",
        "--grid", "lr=0.001,0.01,0.1", "--grid", "batch=32,64",
        "--max-parallel", "2", "--objective", "val_loss:min", "--tolerate-failures", "20",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    sweep_id = _started_sweep_id(result.output)
    assert "6 runs, 2 at a time, best by val_loss:min" in result.output
    assert f"runctl sweeps cancel {sweep_id}" in result.output
    started = _sweep_input(cloud, sweeps, sweep_id)
    assert started["grid"] == {"lr": [0.001, 0.01, 0.1], "batch": [32, 64]}
    assert started["max_parallel"] == 2
    assert started["objective"] == "val_loss:min"
    assert started["tolerated_failure_percentage"] == 20
    base = started["base_spec"]
    assert base["hyperparameters"] == {"steps": 50}
    assert base["experiment"] == "tuning"
    assert base["entry_point"] == "train.py"
    assert cloud.code_objects() == [base["code"]["s3_uri"].split(f"{cloud.stack.bucket}/")[1]]


def test_random_search_with_a_seed_is_started_as_given(cloud, sweeps, project):
    client = Client(stack_name=SWEEP_STACK)

    submission = client.submit_sweep(
        RunRequest(project / "train.py"),
        SweepOptions(samples=("lr=log_uniform:0.0001:0.1",), random=5, seed=7),
    )

    started = _sweep_input(cloud, sweeps, submission.sweep_id)
    assert submission.total_runs == 5
    assert started["random"] == {
        "samples": 5,
        "seed": 7,
        "space": {"lr": {"log_uniform": [0.0001, 0.1]}},
    }
    assert "grid" not in started or started["grid"] == {}


def test_random_search_without_a_seed_draws_a_new_one_and_says_it(cloud, sweeps, project):
    args = ("sweep", "train.py", "--random", "3", "--sample", "lr=uniform:0:1")
    seeds = []
    for _ in range(2):
        result = _sweep(*args)
        assert result.exit_code == 0, result.output
        seed = _sweep_input(cloud, sweeps, _started_sweep_id(result.output))["random"]["seed"]
        assert f"random seed {seed}" in result.output
        seeds.append(seed)

    assert seeds[0] != seeds[1]  # 1 in 2**32 to collide


def test_sweeps_list_refuses_a_limit_aws_would(cloud, sweeps, project):
    result = _sweep("sweeps", "list", "--limit", "0")

    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_a_resubmitted_sweep_of_unchanged_code_uploads_nothing(cloud, sweeps, project):
    client = Client(stack_name=SWEEP_STACK)

    request, options = RunRequest(project / "train.py"), SweepOptions(grid=("lr=0.1,0.2",))
    first = client.submit_sweep(request, options)
    second = client.submit_sweep(request, options)

    assert first.uploaded_bytes > 0
    assert second.uploaded_bytes == 0
    assert first.sweep_id != second.sweep_id


def test_a_wrong_sweep_is_refused_before_anything_is_uploaded(cloud, sweeps, project):
    cases = {
        ("--grid", "lr"): "--grid 'lr': expected NAME=..., for example --grid lr=0.001,0.01,0.1",
        ("--grid", "lr=0.1", "--objective", "loss"): "--objective 'loss': expected METRIC:min",
        ("--grid", "lr=0.1", "--seed", "3"): "--sample and --seed need --random N",
        ("--grid", "lr=0.1", "--max-parallel", "0"): "invalid sweep: max_parallel",
        ("--grid", "lr=0.1", "--tolerate-failures", "150"): "invalid sweep: tolerated_failure",
        ("--hp", "lr=0.1"): "invalid sweep",  # nothing to sweep over
        ("--random", "5"): "--random N draws from --sample NAME=... (or from the --grid values)",
    }
    for flags, expected in cases.items():
        result = _sweep("sweep", "train.py", *flags)

        assert result.exit_code == 2, (flags, result.output)
        [line] = result.output.strip().splitlines()
        assert line.startswith(f"error: {expected}"), (flags, line)
    assert cloud.code_objects() == []
    assert _sweep("sweeps", "list").output.count("sweep-") == 0


def test_a_stack_without_sweeps_says_to_deploy_this_version(cloud, project):
    # Given the stack deployed before sweeps existed (no Sweep outputs)
    result = _sweep("sweep", "train.py", "--grid", "lr=0.1,0.2", stack=STACK_NAME)

    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert "has no Sweep state machine" in line
    assert "npx cdk deploy" in line
    assert cloud.code_objects() == []


def test_sweeps_are_listed_and_shown_running_then_with_their_summary(
    cloud, sweeps, project, wide_console
):
    # Given a started sweep (moto leaves it RUNNING)
    sweep_id = _started_sweep_id(_sweep("sweep", "train.py", "--grid", "lr=0.1,0.2").output)

    # Then it is listed and shown as running
    listed = _sweep("sweeps", "list")
    assert listed.exit_code == 0, listed.output
    assert sweep_id in listed.output and "RUNNING" in listed.output
    shown = _sweep("sweeps", "show", sweep_id)
    assert shown.exit_code == 0, shown.output
    assert f"sweep {sweep_id}: RUNNING" in shown.output

    # When it ends with a summary in S3
    summary = _summary(sweep_id)
    cloud.client("s3").put_object(
        Bucket=cloud.stack.bucket,
        Key=sweep_summary_key(sweep_id),
        Body=summary.model_dump_json().encode(),
    )
    cloud.client("stepfunctions").stop_execution(executionArn=_execution_arn(sweeps, sweep_id))

    # Then show prints the summary: every run, the best one starred
    shown = _sweep("sweeps", "show", sweep_id)
    assert shown.exit_code == 0, shown.output
    assert f"sweep {sweep_id}: SUCCEEDED - 2 of 2 runs succeeded" in shown.output
    assert f"{sweep_id}-r001 *" in shown.output
    assert f"best by loss:min: {sweep_id}-r001" in shown.output


def test_an_unknown_sweep_is_one_line(cloud, sweeps, project):
    for command in (("sweeps", "show", "sweep-nope"), ("sweeps", "cancel", "sweep-nope")):
        result = _sweep(*command)

        assert result.exit_code == 1
        [line] = result.output.strip().splitlines()
        assert line.startswith("error: no sweep 'sweep-nope'"), line
        assert "runctl sweeps list" in line


def _summary(sweep_id: str) -> SweepSummary:
    runs = [
        {"index": index, "run_id": f"{sweep_id}-r00{index}", "swept": {"lr": lr},
         "status": "SUCCEEDED", "objective_value": loss, "cost_usd": 0.01,
         "duration_seconds": 60}
        for index, (lr, loss) in enumerate([(0.1, 0.5), (0.2, 0.3)])
    ]  # fmt: skip
    return SweepSummary.model_validate(
        {
            "sweep_id": sweep_id,
            "execution_arn": "arn",
            "verdict": "succeeded",
            "message": "2 of 2 runs succeeded",
            "objective": "loss:min",
            "best": runs[1],
            "counts": {"total": 2, "succeeded": 2},
            "tolerated_failure_percentage": 0,
            "stop_on_failure": False,
            "runs": runs,
            "written_at": datetime.now(UTC).isoformat(),
        }
    )


def test_following_a_sweep_reports_its_runs_progress_until_it_ends(cloud, sweeps, project):
    # Given a started sweep of two runs, its plan written, one run finished and one running
    client = Client(stack_name=SWEEP_STACK)
    submission = client.submit_sweep(
        RunRequest(project / "train.py"), SweepOptions(grid=("lr=0.1,0.2",))
    )
    sweep_id = submission.sweep_id
    plan = plan_sweep(submission.spec, sweep_id)
    SweepFiles(cloud.client("s3"), cloud.stack.bucket).put_plan(plan, {})
    cloud.put_record(record(plan.runs[0].run_id, status="SUCCEEDED"))
    cloud.put_record(record(plan.runs[1].run_id, status="RUNNING", ended_at=None))

    # When the user follows it, and it ends after the first poll
    lines: list[str] = []

    def on_progress(progress):
        lines.append(progress.line())
        cloud.client("stepfunctions").stop_execution(executionArn=_execution_arn(sweeps, sweep_id))

    outcome = client.follow_sweep(sweep_id, on_progress=on_progress, poll_seconds=0)

    # Then each poll said how far the runs were, and the outcome is the ended sweep's
    assert lines[0] == f"sweep {sweep_id}: 1 of 2 runs done (1 succeeded), 1 running"
    assert outcome.execution_status == "ABORTED"
    assert outcome.summary is None  # stopped by hand before SummarizeSweep


def test_progress_before_the_plan_exists_says_planning(cloud, sweeps, project):
    client = Client(stack_name=SWEEP_STACK)
    submission = client.submit_sweep(
        RunRequest(project / "train.py"), SweepOptions(grid=("lr=0.1,0.2",))
    )
    watcher = SweepWatcher(
        SweepFiles(cloud.client("s3"), cloud.stack.bucket),
        RunsTable(cloud.stack.table, cloud.client("dynamodb")),
        submission.sweep_id,
    )

    assert watcher.poll().line() == f"sweep {submission.sweep_id}: planning"

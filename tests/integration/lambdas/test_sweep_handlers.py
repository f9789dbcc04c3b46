"""The Sweep's Lambdas against moto: ExpandSweep writes the plan or refuses the sweep before any
run; PrepareSweepRun builds each run's RunSpec until the sweep is stopped; OnSweepRunFailed and
StopSweep stop a sweep's live runs gracefully; SummarizeSweep reads records and executions."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from lambdas.constants import sweep_plan_key, sweep_stop_key, sweep_summary_key
from lambdas.errors import SweepNotFound, SweepSpecInvalid
from lambdas.handlers import (
    expand_sweep,
    on_sweep_run_failed,
    prepare_sweep_run,
    stop_sweep,
    summarize_sweep,
)
from lambdas.integrations.aws_clients import aws_client
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.models.sweep_summary import SweepStop

from .conftest import BUCKET, CODE_KEY

SWEEP = "sw"
SWEEP_ARN = f"arn:aws:states:us-east-1:123456789012:execution:Sweep:{SWEEP}"
TOKEN = "AQCEAAAAKgAAAA-task-token-" + "t" * 40


def sweep_spec(**fields: Any) -> dict[str, Any]:
    return {
        "base_spec": {
            "code": {"s3_uri": f"s3://{BUCKET}/{CODE_KEY}"},
            "entry_point": "train.py",
            "hyperparameters": {"steps": 20},
        },
        "grid": {"lr": [0.1, 0.01, 0.001]},
        **fields,
    }


@pytest.fixture
def expand(invoke, lambda_environment):
    def call(spec: dict[str, Any], sweep_id: str = SWEEP) -> dict[str, Any]:
        return dict(
            invoke(expand_sweep, {"spec": spec, "sweep_id": sweep_id, "execution_arn": SWEEP_ARN})
        )

    return call


@pytest.fixture
def s3_json(aws):
    def read(key: str) -> Any:
        return json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    return read


@pytest.fixture
def sweep_runs(make_run_context, record, set_record_fields):
    """Record the sweep's runs (as their TrainRun executions' RecordRun would), then set each
    one's fields: sweep_runs({"status": "RUNNING"}, {"status": "SUCCEEDED"}, None)."""

    def put(*fields: dict[str, Any] | None) -> list[str]:
        run_ids = []
        for index, values in enumerate(fields):
            run_id = f"{SWEEP}-r{index:03d}"
            run_ids.append(run_id)
            if values is None:
                continue
            record(make_run_context(run_id=run_id))
            set_record_fields(run_id, **values)
        return run_ids

    return put


# ------------------------------------------------------------------------------- ExpandSweep


def test_expand_writes_the_plan_and_returns_only_the_run_indices_as_the_state(expand, s3_json):
    state = expand(sweep_spec(max_parallel=2, objective="loss:min"))

    assert state["indices"] == [0, 1, 2]
    assert "runs" not in state and "base_spec" not in state
    assert (state["max_parallel"], state["total_runs"], state["objective"]) == (2, 3, "loss:min")
    stored = s3_json(sweep_plan_key(SWEEP))
    assert [run["run_id"] for run in stored["runs"]] == ["sw-r000", "sw-r001", "sw-r002"]
    assert [run["swept"] for run in stored["runs"]] == [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.001}]
    assert stored["spec"]["grid"] == {"lr": [0.1, 0.01, 0.001]}


def test_expand_refuses_a_sweep_whose_code_is_missing_before_any_run(expand, aws):
    spec = sweep_spec()
    spec["base_spec"]["code"]["s3_uri"] = f"s3://{BUCKET}/code/{'d' * 64}.tar.gz"

    with pytest.raises(SweepSpecInvalid, match=r"base_spec: code.s3_uri: cannot read"):
        expand(spec)

    assert aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="sweeps/")["KeyCount"] == 0


def test_expand_refuses_an_invalid_sweep_naming_the_field(expand):
    with pytest.raises(SweepSpecInvalid, match=r"max_parallel: Input should be less than"):
        expand(sweep_spec(max_parallel=100))


# ------------------------------------------------------------------------------- PrepareSweepRun


def test_prepare_merges_the_planned_run_s_values_into_the_base_spec(invoke, expand):
    # Given a planned sweep whose base spec has lr 1.0
    spec = sweep_spec()
    spec["base_spec"]["hyperparameters"] = {"steps": 20, "lr": 1.0}
    expand(spec)

    # When run 1 is prepared from its index alone
    prepared = invoke(prepare_sweep_run, {"sweep_id": SWEEP, "index": 1})

    # Then it gets its id and the plan's values over the base spec's
    assert (prepared["start"], prepared["run_id"]) == (True, "sw-r001")
    assert prepared["spec"]["hyperparameters"] == {"steps": 20, "lr": 0.01}


def test_prepare_starts_nothing_once_the_sweep_is_stopped(invoke, lambda_environment, aws):
    SweepFiles(aws.s3, BUCKET).request_stop(
        SWEEP, SweepStop(reason="cancelled", requested_at="2026-11-23T12:00:00+00:00")
    )

    prepared = invoke(prepare_sweep_run, {"sweep_id": SWEEP, "index": 1})

    assert prepared == {"start": False, "run_id": "sw-r001", "spec": None}


# ------------------------------------------------------------------------------- OnSweepRunFailed


@pytest.fixture
def run_failed(invoke, lambda_environment, fake_ssm):
    def call(run_id: str, total: int, tolerated: float = 0) -> dict[str, Any]:
        event = {
            "sweep_id": SWEEP,
            "run_id": run_id,
            "total_runs": total,
            "tolerated_failure_percentage": tolerated,
        }
        return dict(invoke(on_sweep_run_failed, event))

    return call


def test_a_failure_past_the_tolerance_stops_the_live_runs_and_marks_the_sweep(
    run_failed, sweep_runs, launched, set_record_fields, read_record, fake_ssm, s3_json, clock
):
    # Given a failed run, a training run (on the launched instance), a finished and an unstarted
    failed, training, finished, _ = sweep_runs(
        {"status": "FAILED"}, {"status": "LAUNCHING"}, {"status": "SUCCEEDED"}, None
    )
    set_record_fields(
        training, status="RUNNING", task_token=TOKEN, instance_id=launched["instance_id"]
    )

    # When the failure is reported with no failure tolerated
    answer = run_failed(failed, total=4)

    # Then the sweep is marked stopped and the training run's agent is told to stop
    assert answer == {"stopping": True, "failed_runs": 1}
    stop = s3_json(sweep_stop_key(SWEEP))
    assert stop["reason"] == "failures"
    assert stop["detail"] == "1 of 4 runs failed (0% tolerated); the last was sw-r000"
    assert read_record(training)["stop_requested_at"] == clock().isoformat()
    (sent,) = fake_ssm.sent
    assert sent["InstanceIds"] == [launched["instance_id"]]
    assert "stop_requested_at" not in read_record(finished)


def test_failures_within_the_tolerance_stop_nothing(run_failed, sweep_runs, aws, read_record):
    failed, running, _, _ = sweep_runs({"status": "FAILED"}, {"status": "RUNNING"}, None, None)

    answer = run_failed(failed, total=4, tolerated=25)

    assert answer == {"stopping": False, "failed_runs": 1}
    assert aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=sweep_stop_key(SWEEP))["KeyCount"] == 0
    assert "stop_requested_at" not in read_record(running)


def test_without_stop_on_failure_the_failure_is_recorded_and_nothing_stops(
    invoke, lambda_environment, fake_ssm, sweep_runs, s3_json, aws
):
    # Given a sweep without stop_on_failure whose run's start was refused
    unrecorded, _ = sweep_runs(None, {"status": "RUNNING"})
    event = {
        "sweep_id": SWEEP,
        "run_id": unrecorded,
        "total_runs": 2,
        "tolerated_failure_percentage": 0,
        "stop_on_failure": False,
        "error": {"Error": "StepFunctions.AccessDeniedException", "Cause": "no"},
    }

    # When OnSweepRunFailed is told
    answer = invoke(on_sweep_run_failed, event)

    # Then the error is recorded for SummarizeSweep, and the sweep is not stopped
    assert answer == {"stopping": False, "failed_runs": None}
    assert s3_json(f"sweeps/{SWEEP}/failures/{unrecorded}.json") == {
        "run_id": unrecorded,
        "error": "StepFunctions.AccessDeniedException",
    }
    assert aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=sweep_stop_key(SWEEP))["KeyCount"] == 0


def test_cancelled_runs_are_not_failures(run_failed, sweep_runs):
    cancelled, _ = sweep_runs({"status": "CANCELLED"}, {"status": "RUNNING"})

    assert run_failed(cancelled, total=2) == {"stopping": False, "failed_runs": 0}


def test_a_run_that_failed_before_it_was_recorded_counts(run_failed, sweep_runs):
    unrecorded, _ = sweep_runs(None, {"status": "RUNNING"})

    assert run_failed(unrecorded, total=2, tolerated=0)["stopping"] is True


def test_once_stopped_a_later_failure_changes_nothing(run_failed, sweep_runs, s3_json):
    first, second = sweep_runs({"status": "FAILED"}, {"status": "FAILED"})
    run_failed(first, total=2)
    mark = s3_json(sweep_stop_key(SWEEP))

    answer = run_failed(second, total=2)

    assert answer == {"stopping": True, "failed_runs": None}
    assert s3_json(sweep_stop_key(SWEEP)) == mark


# ------------------------------------------------------------------------------- StopSweep


def test_cancel_marks_the_sweep_cancelled_and_stops_its_live_runs(
    invoke, expand, sweep_runs, read_record, fake_ssm
):
    expand(sweep_spec())
    _, booting, _ = sweep_runs({"status": "SUCCEEDED"}, {"status": "LAUNCHING"}, None)

    answer = invoke(stop_sweep, {"sweep_id": SWEEP})

    assert answer["stop"]["reason"] == "cancelled"
    assert answer["runs_asked_to_stop"] == [booting]
    assert answer["message"] == (
        f"sweep {SWEEP} starts no more runs; 1 running run was asked to stop "
        f"(checkpoint, upload, CANCELLED): {booting}"
    )
    assert read_record(booting)["stop_requested_at"]


def test_cancel_keeps_the_reason_of_a_sweep_already_stopped_for_failures(
    invoke, expand, sweep_runs, run_failed
):
    expand(sweep_spec())
    failed, _, _ = sweep_runs({"status": "FAILED"}, None, None)
    run_failed(failed, total=3)

    answer = invoke(stop_sweep, {"sweep_id": SWEEP})

    assert answer["stop"]["reason"] == "failures"


def test_cancel_leaves_an_ended_sweep_as_it_is(invoke, expand, aws, lambda_environment):
    expand(sweep_spec())
    aws.s3.put_object(
        Bucket=BUCKET,
        Key=sweep_summary_key(SWEEP),
        Body=json.dumps(
            {
                "sweep_id": SWEEP,
                "execution_arn": SWEEP_ARN,
                "verdict": "succeeded",
                "message": "3 of 3 runs succeeded",
                "counts": {"total": 3, "succeeded": 3},
                "tolerated_failure_percentage": 0,
                "stop_on_failure": False,
                "runs": [],
                "written_at": "2026-11-23T12:00:00+00:00",
            }
        ).encode(),
    )

    answer = invoke(stop_sweep, {"sweep_id": SWEEP})

    assert answer["stop"] is None
    assert answer["message"] == "sweep sw had already ended: succeeded"
    assert aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=sweep_stop_key(SWEEP))["KeyCount"] == 0


def test_cancel_of_an_unknown_sweep_says_so(invoke, lambda_environment, fake_ssm):
    with pytest.raises(SweepNotFound, match="no sweep 'nope'"):
        invoke(stop_sweep, {"sweep_id": "nope"})


# ------------------------------------------------------------------------------- SummarizeSweep


@pytest.fixture
def train_run_machine(aws) -> str:
    role = aws.iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    return str(
        aws.stepfunctions.create_state_machine(
            name="TrainRun", definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
    )


def test_summary_reads_each_run_names_the_best_and_is_written_to_s3(
    invoke, expand, sweep_runs, train_run_machine, s3_json
):
    # Given a planned sweep of 3 runs: two succeeded with a loss, one never started
    plan = expand(sweep_spec(objective="loss:min", tolerated_failure_percentage=50))
    sweep_runs(
        {"status": "SUCCEEDED", "final_metrics": {"loss": Decimal("0.5")}},
        {"status": "SUCCEEDED", "final_metrics": {"loss": Decimal("0.25")}},
        None,
    )

    # When the sweep is summarised
    digest = invoke(
        summarize_sweep,
        {"state": plan, "train_run_state_machine_arn": train_run_machine},
    )

    # Then the best run is the lower loss, the unstarted run is skipped, and S3 has it all
    assert digest["verdict"] == "succeeded"
    assert (digest["best_run_id"], digest["best_objective_value"]) == ("sw-r001", 0.25)
    assert digest["summary_uri"] == f"s3://{BUCKET}/{sweep_summary_key(SWEEP)}"
    summary = s3_json(sweep_summary_key(SWEEP))
    assert [run["status"] for run in summary["runs"]] == ["SUCCEEDED", "SUCCEEDED", "SKIPPED"]
    assert summary["runs"][1]["swept"] == {"lr": 0.01}


def test_summary_of_a_run_that_failed_before_its_record_uses_its_execution(
    invoke, expand, sweep_runs, train_run_machine, aws
):
    plan = expand(sweep_spec(tolerated_failure_percentage=50))
    sweep_runs({"status": "SUCCEEDED"}, {"status": "SUCCEEDED"}, None)
    aws_client("stepfunctions").start_execution(
        stateMachineArn=train_run_machine, name="sw-r002", input="{}"
    )

    digest = invoke(
        summarize_sweep,
        {"state": plan, "train_run_state_machine_arn": train_run_machine},
    )

    # moto does not run the execution here: it stays RUNNING, as a run still going would
    assert digest["counts"]["running"] == 1


def test_summary_of_a_run_whose_start_failed_names_the_recorded_error(
    invoke, expand, sweep_runs, train_run_machine, lambda_environment, fake_ssm, s3_json
):
    plan = expand(sweep_spec(tolerated_failure_percentage=50))
    sweep_runs({"status": "SUCCEEDED"}, {"status": "SUCCEEDED"}, None)
    refused = {"Error": "StepFunctions.AccessDeniedException", "Cause": "no"}
    event = {"sweep_id": SWEEP, "run_id": "sw-r002", "total_runs": 3}
    invoke(on_sweep_run_failed, {**event, "tolerated_failure_percentage": 50, "error": refused})

    digest = invoke(
        summarize_sweep,
        {"state": plan, "train_run_state_machine_arn": train_run_machine},
    )

    assert digest["counts"]["failed"] == 1
    line = s3_json(sweep_summary_key(SWEEP))["runs"][2]
    assert (line["status"], line["error"]) == (
        "FAILED",
        "(StepFunctions.AccessDeniedException): its TrainRun execution could not be started",
    )


def test_summary_after_the_map_failed_fails_the_sweep(
    invoke, expand, sweep_runs, train_run_machine
):
    plan = expand(sweep_spec())
    sweep_runs({"status": "SUCCEEDED"}, None, None)
    state = {**plan, "map_error": {"Error": "States.Runtime", "Cause": "boom"}}
    assert "runs" not in state

    digest = invoke(
        summarize_sweep,
        {"state": state, "train_run_state_machine_arn": train_run_machine},
    )

    assert digest["verdict"] == "failed"
    assert digest["error"] == "Runctl.SweepFailed"
    assert digest["message"].startswith("the sweep's Map state failed (States.Runtime: boom)")

"""FinalizeRun handler: always terminate the attempt's instance, then record how the run ended."""

from __future__ import annotations

import json

from lambdas.constants import attempt_result_key
from tests.integration.lambdas.conftest import instance_state

OUTPUTS_URI = "s3://runctl-test-bucket/runs/run-1/outputs/"


def _lambda_cause(error_type: str, message: str) -> str:
    return json.dumps({"errorType": error_type, "errorMessage": message, "stackTrace": []})


def test_given_agent_result_when_finalized_then_instance_terminated_and_run_succeeded(
    finalize, recorded_run, launched, clock, read_record, capsys, aws
):
    clock.advance(3600)
    result = {
        "outcome": "succeeded",
        "exit_code": 0,
        "outputs_uri": OUTPUTS_URI,
        "final_metrics": {"loss": 0.125, "accuracy": 0.9, "step": 1000},
    }

    output = finalize({"run": recorded_run, "instance": launched, "result": result})

    assert output == {
        "run_id": "run-1",
        "status": "SUCCEEDED",
        "end_reason": "completed",
        "error": "None",
        "cause": "",
        "outputs_uri": OUTPUTS_URI,
    }
    assert instance_state(aws, launched["instance_id"]) == "terminated"
    item = read_record("run-1")
    assert item["status"] == "SUCCEEDED"
    assert item["end_reason"] == "completed"
    assert item["outputs_uri"] == OUTPUTS_URI
    assert item["final_metrics"] == {"loss": 0.125, "accuracy": 0.9, "step": 1000}
    assert item["exit_code"] == 0
    assert item["task_token"] is None
    assert item["ended_at"] == clock().isoformat()
    assert item["duration_seconds"] == 3600
    assert item["attempts"]["1"]["end_reason"] == "completed"
    assert item["attempts"]["1"]["ended_at"] == clock().isoformat()
    assert '"Run-SUCCEEDED"' in capsys.readouterr().out  # the EMF metric line


def test_given_no_instance_in_state_when_finalized_then_instance_is_found_by_tags(
    finalize, recorded_run, launched, read_record, aws
):
    cause = _lambda_cause("InstanceStartTimeout", "instance i-1 not ready before the deadline")

    output = finalize(
        {"run": recorded_run, "error": {"Error": "InstanceStartTimeout", "Cause": cause}}
    )

    assert instance_state(aws, launched["instance_id"]) == "terminated"
    assert (output["status"], output["end_reason"]) == ("FAILED", "start-timeout")
    assert output["error"] == "Runctl.StartTimeout"
    assert output["cause"] == "instance i-1 not ready before the deadline"
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("FAILED", "start-timeout")
    assert item["error"] == "instance i-1 not ready before the deadline"


def test_given_script_failure_without_result_when_finalized_then_result_json_is_read(
    finalize, recorded_run, launched, lambda_environment, read_record, aws
):
    stderr = "Traceback (most recent call last):\n  File train.py\nRuntimeError: CUDA OOM\n"
    aws.s3.put_object(
        Bucket=lambda_environment["BUCKET_NAME"],
        Key=attempt_result_key("run-1", 1),
        Body=json.dumps({"outcome": "script-failed", "exit_code": 3, "stderr_tail": stderr}),
    )

    output = finalize(
        {
            "run": recorded_run,
            "instance": launched,
            "error": {"Error": "Runctl.ScriptFailed", "Cause": None},
        }
    )

    assert output["status"] == "FAILED"
    assert output["end_reason"] == "script-failed"
    assert output["error"] == "Runctl.ScriptFailed"
    assert output["cause"] == "script exited with code 3: RuntimeError: CUDA OOM"
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("FAILED", "script-failed")
    assert item["exit_code"] == 3
    assert item["stderr_tail"] == stderr
    assert item["error"] == "script exited with code 3: RuntimeError: CUDA OOM"
    assert instance_state(aws, launched["instance_id"]) == "terminated"


def test_given_finalized_run_when_finalize_is_retried_then_record_and_output_stay_the_same(
    finalize, recorded_run, launched, clock, read_record
):
    event = {
        "run": recorded_run,
        "instance": launched,
        "error": {"Error": "States.HeartbeatTimeout", "Cause": None},
    }
    first = finalize(event)
    recorded = read_record("run-1")
    clock.advance(120)

    second = finalize(event)

    assert second == first
    assert first["end_reason"] == "instance-lost"
    assert read_record("run-1") == recorded


def test_given_capacity_failure_before_any_attempt_when_finalized_then_failed_capacity(
    finalize, recorded_run, read_record, instances_of
):
    cause = _lambda_cause(
        "CapacityUnavailable", "no capacity for any allowed option: spot g5.xlarge in us-east-1a"
    )

    output = finalize(
        {"run": recorded_run, "error": {"Error": "CapacityUnavailable", "Cause": cause}}
    )

    assert output["status"] == "FAILED"
    assert output["end_reason"] == "capacity"
    assert output["error"] == "Runctl.Capacity"
    assert output["cause"].startswith("no capacity for any allowed option")
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("FAILED", "capacity")
    assert item["attempts"] == {}
    assert instances_of("run-1") == []


def test_given_cancelled_run_when_finalized_then_the_final_status_is_kept(
    finalize, recorded_run, launched, read_record, aws
):
    aws.dynamodb.update_item(
        TableName="runctl-runs",
        Key={"run_id": {"S": "run-1"}},
        UpdateExpression="SET #s = :c",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":c": {"S": "CANCELLED"}},
    )

    finalize({"run": recorded_run, "instance": launched, "error": {"Error": "States.Timeout"}})

    assert read_record("run-1")["status"] == "CANCELLED"
    assert instance_state(aws, launched["instance_id"]) == "terminated"


def test_given_run_id_owned_by_other_execution_when_finalized_then_that_run_is_left_alone(
    finalize, recorded_run, launched, make_run_context, read_record, aws
):
    # A second execution reused the run id: its RecordRun failed and its Catch went to FinalizeRun.
    intruder = make_run_context(run_id="run-1", execution="second-execution")
    before = read_record("run-1")
    cause = _lambda_cause("RunAlreadyExists", "run id 'run-1' is already used by another execution")

    output = finalize({"run": intruder, "error": {"Error": "RunAlreadyExists", "Cause": cause}})

    assert output["status"] == "FAILED"
    assert output["cause"] == "run id 'run-1' is already used by another execution"
    assert instance_state(aws, launched["instance_id"]) == "running"
    assert read_record("run-1") == before


def test_given_unreadable_result_json_when_finalized_then_the_run_still_ends_failed(
    finalize, recorded_run, launched, lambda_environment, read_record, aws
):
    # Given a torn result.json (the agent died while writing it)
    aws.s3.put_object(
        Bucket=lambda_environment["BUCKET_NAME"],
        Key=attempt_result_key("run-1", 1),
        Body=b'{"outcome": "script-fai',
    )

    output = finalize(
        {"run": recorded_run, "instance": launched, "error": {"Error": "Runctl.ScriptFailed"}}
    )

    # Then finalize does not fail (its retries would leave the record live forever)
    assert output["status"] == "FAILED"
    assert output["end_reason"] == "script-failed"
    assert read_record("run-1")["status"] == "FAILED"
    assert instance_state(aws, launched["instance_id"]) == "terminated"

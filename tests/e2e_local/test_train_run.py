"""TrainRun end to end in local mode: success, script failure, bad input, hostile strings."""

from __future__ import annotations

import json

import pytest

from lambdas.constants import (
    attempt_prefix,
    checkpoint_manifest_key,
    checkpoint_version_prefix,
    outputs_prefix,
)
from lambdas.models.run_record import EndReason, RunStatus

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_train_run")]

SUCCESSFUL_SCRIPT = """
    import json, os, pathlib
    ckpt = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
    out = pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"])
    for step in range(1, 4):
        print("RUNCTL_METRIC " + json.dumps({"step": step, "loss": 1.0 / step}), flush=True)
    tmp = ckpt / ".model-3.tmp"
    tmp.write_bytes(b"weights-at-step-3")
    tmp.rename(ckpt / "model-3.ckpt")
    (out / "model.txt").write_text("trained")
"""


def test_successful_run_uploads_outputs_and_metrics_and_terminates_the_instance(runner):
    # Given a script that reports metrics, checkpoints and writes an output
    # When it runs through TrainRun
    outcome = runner.run(SUCCESSFUL_SCRIPT, hyperparameters={"lr": 0.1})

    # Then the run is recorded SUCCEEDED with its final metrics and outputs location
    record = outcome.record
    assert outcome.execution_status == "SUCCEEDED"
    assert record.status is RunStatus.SUCCEEDED
    assert record.end_reason is EndReason.COMPLETED
    assert record.exit_code == 0
    assert record.final_metrics == {"step": 3, "loss": pytest.approx(1 / 3)}
    bucket = runner.session.stack.bucket
    assert record.outputs_uri == f"s3://{bucket}/{outputs_prefix(outcome.run_id)}"
    # And outputs, checkpoint and metrics are in S3
    assert runner.s3_text(outputs_prefix(outcome.run_id) + "model.txt") == "trained"
    newest = json.loads(runner.s3_text(checkpoint_manifest_key(outcome.run_id)))["checkpoints"][0]
    assert (newest["name"], newest["step"]) == ("model-3.ckpt", 3)
    key = checkpoint_version_prefix(outcome.run_id, newest["version"]) + "model-3.ckpt"
    assert runner.s3_text(key) == "weights-at-step-3"
    metric_lines = runner.s3_text(attempt_prefix(outcome.run_id, 1) + "metrics.jsonl").splitlines()
    assert [json.loads(line)["step"] for line in metric_lines] == [1, 2, 3]
    # And the record says what the attempt cost and summarises the metrics
    assert record.cost is not None
    assert [attempt.number for attempt in record.cost.attempts] == [1]
    assert record.cost.total_usd > 0
    assert record.metrics_summary["loss"].last == pytest.approx(1 / 3)
    assert (record.metrics_summary["loss"].max, record.metrics_summary["loss"].count) == (1.0, 3)
    # And the follower saw the metrics as they arrived, and the local copy of outputs exists
    assert [e.data["step"] for e in runner.events if e.kind == "metric"] == [1, 2, 3]
    assert (outcome.outputs_dir / "model.txt").read_text() == "trained"
    # And the instance is gone
    instance_id = record.attempts["1"].instance_id
    assert instance_id not in runner.session.live_instances()
    assert runner.session.emulator.fleet.get(instance_id).processes() == []


def test_script_exiting_1_fails_the_run_with_its_stderr_tail(runner):
    # Given a script that fails after writing to stderr
    outcome = runner.run(
        """
        import sys
        print("about to fail", flush=True)
        print("ValueError: loss is NaN at step 7", file=sys.stderr, flush=True)
        sys.exit(1)
        """
    )

    # Then the execution fails with a runctl error and the record says why
    assert outcome.execution_status == "FAILED"
    assert outcome.error == "Runctl.ScriptFailed"
    assert "exited with code 1" in outcome.cause
    record = outcome.record
    assert record.status is RunStatus.FAILED
    assert record.end_reason is EndReason.SCRIPT_FAILED
    assert record.exit_code == 1
    assert "loss is NaN at step 7" in record.stderr_tail
    assert "loss is NaN at step 7" in record.error
    # And no instance is left running
    assert record.attempts["1"].instance_id not in runner.session.live_instances()


def test_bad_runspec_fails_at_validation_and_creates_nothing(runner):
    # Given a RunSpec with an absolute entry point and a malformed instance type
    spec = runner.spec("print('never runs')")
    spec |= {"entry_point": "/etc/passwd", "instance_types": ["not an instance type"]}
    instances_before = set(runner.session.live_instances())

    # When it is started
    outcome = runner.run_spec(spec)

    # Then the execution fails at ValidateRun with an error naming each field
    assert outcome.execution_status == "FAILED"
    assert outcome.error == "RunSpecInvalid"
    assert "entry_point" in outcome.cause
    assert "instance_types.0" in outcome.cause
    # And nothing was recorded or launched
    assert outcome.record is None
    assert set(runner.session.live_instances()) == instances_before
    history = runner.session.sfn.get_execution_history(
        executionArn=runner.session.execution_arn(outcome.run_id)
    )["events"]
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e
    ]
    assert entered == ["Init", "ValidateRun"]


def hostile_strings(marker: str) -> list[str]:
    return [
        'it\'s "quoted"',
        "two words",
        f"$(touch {marker})",
        f"a; touch {marker}",
        f"line one\ntouch {marker}",
        f"`touch {marker}`",
        "--not-an-option",
        "",
    ]


def test_args_and_hyperparameters_reach_the_script_byte_for_byte(runner, tmp_path):
    # Given arguments and hyperparameters full of shell metacharacters
    marker = tmp_path / "a-shell-ran-this"
    hostile = hostile_strings(str(marker))
    hyperparameters = {f"h{index}": value for index, value in enumerate(hostile)}
    hyperparameters |= {"lr": 0.001, "layers": 3, "shuffle": True}
    outcome = runner.run(
        """
        import json, os, pathlib, sys
        out = pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"])
        (out / "seen.json").write_text(json.dumps({
            "argv": sys.argv[1:],
            "hparams": json.loads(os.environ["RUNCTL_HPARAMS"]),
        }))
        """,
        args=hostile,
        hyperparameters=hyperparameters,
    )

    # Then the script saw exactly what was sent, and nothing was executed by a shell
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    seen = json.loads((outcome.outputs_dir / "seen.json").read_text())
    assert seen["argv"] == hostile
    assert seen["hparams"] == hyperparameters
    assert isinstance(seen["hparams"]["lr"], float) and seen["hparams"]["layers"] == 3
    assert not marker.exists()

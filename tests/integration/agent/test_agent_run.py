"""Whole agent runs in-process against moto: staging, the script, uploads, result, task token."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from boto3.dynamodb.types import TypeDeserializer

from instance_agent.errors import ConfigError

SUCCESS_SCRIPT = r"""
import json, os, sys
from pathlib import Path

ckpt = Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
out = Path(os.environ["RUNCTL_OUTPUT_DIR"])
data = Path(os.environ["RUNCTL_DATA_DIR"])
print("RUNCTL_METRIC " + json.dumps({"step": 1, "loss": 0.9}))
print("RUNCTL_METRIC {not json")
print("hello from the script")
print("warming up", file=sys.stderr)
tmp = ckpt / ".ckpt-000002.pt.tmp"
tmp.write_bytes(b"weights-2")
os.replace(tmp, ckpt / "ckpt-000002.pt")
print("RUNCTL_METRIC " + json.dumps({"step": 2, "loss": 0.4, "acc": 0.8}))
(out / "model.txt").write_text("model")
(out / "sub").mkdir()
(out / "sub" / "seen.json").write_text(json.dumps({
    "argv": sys.argv[1:],
    "hparams": json.loads(os.environ["RUNCTL_HPARAMS"]),
    "mode": os.environ.get("MODE"),
    "run": [os.environ["RUNCTL_RUN_ID"], os.environ["RUNCTL_ATTEMPT"]],
    "data": sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()),
    "cwd": os.getcwd(),
}))
(out / "metrics.jsonl").write_text(json.dumps({"step": 3, "val_loss": 0.5}) + "\n")
"""


def _stage_data(harness) -> list[dict[str, str]]:
    for key, body in {
        "sets/mnist/train.bin": b"t",
        "sets/mnist/nested/val.bin": b"v",
        "single/labels.csv": b"a,b",
    }.items():
        harness.s3.put_object(Bucket=harness.data_bucket, Key=key, Body=body)
    return [
        {"s3_uri": f"s3://{harness.data_bucket}/sets/mnist/", "name": "mnist"},
        {"s3_uri": f"s3://{harness.data_bucket}/single/labels.csv", "name": "labels"},
    ]


def test_a_successful_script_leaves_everything_in_s3_and_ends_the_token_once(harness):
    spec = harness.spec(
        SUCCESS_SCRIPT,
        args=["--name", "a b; $(touch pwned)"],
        hyperparameters={"lr": 0.001, "amp": True},
        hyperparameters_as_args=True,
        environment={"MODE": "fast"},
        data=_stage_data(harness),
    )

    result = harness.run(harness.write_config(spec))

    run = f"runs/{harness.run_id}"
    assert result.outcome == "succeeded", result.message
    assert result.exit_code == 0
    # Outputs, including the nested file, and what the script saw.
    assert harness.get_text(f"{run}/outputs/model.txt") == "model"
    seen = harness.get_json(f"{run}/outputs/sub/seen.json")
    assert seen["argv"] == ["--name", "a b; $(touch pwned)", "--lr", "0.001", "--amp", "true"]
    assert seen["hparams"] == {"lr": 0.001, "amp": True}
    assert seen["mode"] == "fast"
    assert seen["run"] == [harness.run_id, "1"]
    assert seen["data"] == ["labels/labels.csv", "mnist/nested/val.bin", "mnist/train.bin"]
    assert seen["cwd"] == str(harness.home.resolve() / "work" / harness.run_id / "code")
    # Metrics: stdout lines and the output file, the bad line skipped.
    lines = harness.get_text(f"{run}/attempts/1/metrics.jsonl").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "loss": 0.9},
        {"step": 2, "loss": 0.4, "acc": 0.8},
        {"step": 3, "val_loss": 0.5},
    ]
    assert result.final_metrics == {"step": 3, "loss": 0.4, "acc": 0.8, "val_loss": 0.5}
    # Logs.
    stdout = harness.get_text(f"{run}/attempts/1/logs/stdout.log")
    assert "hello from the script\n" in stdout and "RUNCTL_METRIC {not json" in stdout
    assert harness.get_text(f"{run}/attempts/1/logs/stderr.log") == "warming up\n"
    assert "hello from the script" in harness.log_messages()
    assert "warming up" in harness.log_messages()
    # The checkpoint (its own version's key), its checksum, and the manifest listing it.
    key = f"{run}/checkpoints/v/1-000001/ckpt-000002.pt"
    head = harness.s3.head_object(Bucket=harness.bucket, Key=key, ChecksumMode="ENABLED")
    assert "ChecksumSHA256" in head
    assert harness.keys(f"{run}/checkpoints/") == [
        f"{run}/checkpoints/latest.json",
        key,
    ]
    assert harness.s3.get_object(Bucket=harness.bucket, Key=key)["Body"].read() == b"weights-2"
    manifest = harness.get_json(f"{run}/checkpoints/latest.json")
    assert manifest["format"] == 2
    (entry,) = manifest["checkpoints"]
    assert {name: entry[name] for name in ("version", "name", "kind", "step", "attempt")} == {
        "version": "1-000001",
        "name": "ckpt-000002.pt",
        "kind": "file",
        "step": 2,
        "attempt": 1,
    }
    assert entry["files"] == [
        {
            "path": "ckpt-000002.pt",
            "sha256": hashlib.sha256(b"weights-2").hexdigest(),
            "size": len(b"weights-2"),
        }
    ]
    # result.json, and the task output is the same document.
    stored = harness.get_json(f"{run}/attempts/1/result.json")
    assert stored == result.to_dict()
    assert stored["outputs_uri"] == f"s3://{harness.bucket}/{run}/outputs/"
    assert stored["metrics_uri"] == f"s3://{harness.bucket}/{run}/attempts/1/metrics.jsonl"
    assert stored["logs_uri"] == f"s3://{harness.bucket}/{run}/attempts/1/logs/"
    assert stored["stderr_tail"] == "warming up\n"
    (success,) = harness.sfn.named("success")
    assert success == {"taskToken": "task-token-1", "output": result.to_json()}
    assert harness.sfn.named("failure") == []
    assert len(harness.sfn.named("heartbeat")) >= 1
    # The run item: STAGING then RUNNING, and the latest metrics.
    assert harness.statuses == ["STAGING", "RUNNING"]
    item = harness.run_item()
    assert item["status"] == {"S": "RUNNING"}
    assert item["latest_metrics"]["M"]["loss"] == {"N": "0.4"}
    assert item["latest_metrics"]["M"]["val_loss"] == {"N": "0.5"}
    assert item["updated_at"]["S"] != "2026-11-23T09:00:00+00:00"
    # The run item's checkpoint facts: nothing resumed, the newest durable one.
    facts = TypeDeserializer().deserialize(item["checkpoints"]["M"]["1"])
    assert facts["resumed_from"] is None
    assert facts["newest"]["name"] == "ckpt-000002.pt"
    assert facts["newest"]["version"] == entry["version"]
    assert not (harness.home / "work" / harness.run_id / "code" / "pwned").exists()


def test_a_failing_script_fails_the_task_with_its_stderr_tail(harness):
    script = (
        "import sys\n"
        'print(\'RUNCTL_METRIC {"step": 7, "loss": 2.5}\')\n'
        "print('Traceback (most recent call last):', file=sys.stderr)\n"
        "print('ValueError: bad learning rate', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )

    result = harness.run(harness.write_config(harness.spec(script)))

    stored = harness.get_json(f"runs/{harness.run_id}/attempts/1/result.json")
    assert stored["outcome"] == "script-failed"
    assert stored["exit_code"] == 1
    assert stored["stderr_tail"].endswith("ValueError: bad learning rate\n")
    assert stored["final_metrics"] == {"step": 7, "loss": 2.5}
    assert stored["message"] == "the script exited with code 1"
    (failure,) = harness.sfn.named("failure")
    assert failure["error"] == "Runctl.ScriptFailed"
    assert json.loads(failure["cause"]) == stored == result.to_dict()
    assert harness.sfn.named("success") == []
    assert "ValueError: bad learning rate" in harness.log_messages()


def test_a_script_killed_by_a_signal_reports_128_plus_the_signal(harness):
    script = "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"

    result = harness.run(harness.write_config(harness.spec(script)))

    assert result.outcome == "script-failed"
    assert result.exit_code == 143
    assert "SIGTERM" in result.message
    assert harness.sfn.named("failure")[0]["error"] == "Runctl.ScriptFailed"


def test_a_missing_data_prefix_fails_the_agent_before_the_script_starts(harness, tmp_path: Path):
    marker = tmp_path / "script-started"
    spec = harness.spec(
        f"open({str(marker)!r}, 'w').close()\n",
        data=[{"s3_uri": f"s3://{harness.data_bucket}/nothing/here/", "name": "missing"}],
    )

    result = harness.run(harness.write_config(spec))

    assert not marker.exists()
    assert result.outcome == "agent-failed"
    assert result.exit_code is None
    assert result.message == f"no objects under s3://{harness.data_bucket}/nothing/here/"
    (failure,) = harness.sfn.named("failure")
    assert failure["error"] == "Runctl.AgentFailed"
    assert json.loads(failure["cause"])["message"] == result.message
    assert (
        harness.get_json(f"runs/{harness.run_id}/attempts/1/result.json")["outcome"]
        == "agent-failed"
    )
    assert harness.statuses == ["STAGING"]
    assert any(
        line.startswith("[runctl-agent] ERROR") and "no objects under" in line
        for line in harness.log_messages()
    )


def test_a_code_checksum_mismatch_fails_the_agent(harness, tmp_path: Path):
    marker = tmp_path / "script-started"
    spec = harness.spec(f"open({str(marker)!r}, 'w').close()\n")
    actual = spec["code"]["sha256"]
    spec["code"]["sha256"] = "0" * 64

    result = harness.run(harness.write_config(spec))

    assert not marker.exists()
    assert result.outcome == "agent-failed"
    assert result.message == (
        f"code archive {spec['code']['s3_uri']} has sha256 {actual}, expected {'0' * 64}"
    )
    assert harness.sfn.named("failure")[0]["error"] == "Runctl.AgentFailed"


def test_a_missing_interpreter_ends_the_attempt_environment_failed_with_a_clear_message(
    harness,
):
    spec = harness.spec("print('never')\n", interpreter="no-such-python3")

    result = harness.run(harness.write_config(spec))

    assert result.outcome == "environment-failed"
    assert result.message == "the image's Python 'no-such-python3' was not found on PATH"
    assert harness.sfn.named("failure")[0]["error"] == "Runctl.EnvironmentFailed"


def test_a_missing_entry_point_fails_the_agent_with_a_clear_message(harness):
    spec = harness.spec("print('never')\n", entry_point="src/main.py")

    result = harness.run(harness.write_config(spec))

    assert result.message == "entry point 'src/main.py' is not in the code archive"
    assert harness.sfn.named("failure")[0]["error"] == "Runctl.AgentFailed"


def test_a_run_item_of_another_attempt_is_left_alone(harness):
    harness.put_run_item(status="RUNNING", attempt=2)
    before = harness.run_item()

    result = harness.run(harness.write_config(harness.spec("print('ok')\n")))

    assert result.outcome == "succeeded"
    item = harness.run_item()
    assert item["attempt"] == {"N": "2"}
    # Only this attempt's own checkpoint facts (checkpoints.1), which may be written after the
    # run moved on; the newer attempt's fields, status and metrics are untouched.
    assert item["checkpoints"]["M"].keys() == {"1"}
    assert {
        name: value for name, value in item.items() if name not in ("checkpoints", "updated_at")
    } == {
        name: value for name, value in before.items() if name not in ("checkpoints", "updated_at")
    }
    assert len(harness.sfn.named("success")) == 1


WAITING_SCRIPT = r"""
import json, os, sys, time
from pathlib import Path

ckpt = Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
print("RUNCTL_METRIC " + json.dumps({"step": 5, "loss": 0.25}), flush=True)
print("still training", flush=True)
tmp = ckpt / "ckpt-000005.pt.partial"
tmp.write_bytes(b"weights-5")
os.replace(tmp, ckpt / "ckpt-000005.pt")
# Wait, with a deadline, for the agent to do its background work while the script still runs.
deadline = time.monotonic() + 30
waiting = [Path(p) for p in os.environ["WAIT_FOR"].split(os.pathsep)]
while not all(p.exists() for p in waiting):
    if time.monotonic() > deadline:
        print("gave up waiting for " + str([str(p) for p in waiting if not p.exists()]),
              file=sys.stderr)
        sys.exit(3)
    time.sleep(0.01)
"""


def test_checkpoints_logs_and_metrics_are_synced_while_the_script_runs(harness, tmp_path: Path):
    harness.signals.update(
        {
            "checkpoints/latest.json": tmp_path / "manifest-written",
            "logs/stdout.log": tmp_path / "stdout-copied",
            "attempts/1/metrics.jsonl": tmp_path / "metrics-copied",
            "dynamodb:latest_metrics": tmp_path / "latest-metrics-written",
        }
    )
    waits = ":".join(str(path) for path in harness.signals.values())
    spec = harness.spec(WAITING_SCRIPT, environment={"WAIT_FOR": waits})

    result = harness.run(harness.write_config(spec))

    assert result.outcome == "succeeded", result.stderr_tail
    manifest = harness.get_json(f"runs/{harness.run_id}/checkpoints/latest.json")
    (entry,) = manifest["checkpoints"]
    assert (entry["name"], entry["step"], entry["version"]) == ("ckpt-000005.pt", 5, "1-000001")
    assert harness.keys(f"runs/{harness.run_id}/checkpoints/") == [
        f"runs/{harness.run_id}/checkpoints/latest.json",
        f"runs/{harness.run_id}/checkpoints/v/1-000001/ckpt-000005.pt",
    ]


def test_an_unreadable_config_raises_and_ends_no_token(harness):
    with pytest.raises(ConfigError, match="cannot read agent config"):
        harness.run(f"s3://{harness.bucket}/runs/{harness.run_id}/attempts/9/agent-config.json")

    assert harness.sfn.calls == []


def test_a_config_missing_a_field_fails_its_task_when_the_token_is_known(harness):
    uri = harness.write_config({"code": {}}, log_group=None)

    with pytest.raises(ConfigError):
        harness.run(uri)

    (failure,) = harness.sfn.named("failure")
    assert failure["error"] == "Runctl.AgentFailed"
    assert "log_group" in json.loads(failure["cause"])["message"]


def test_a_failed_output_upload_after_a_successful_script_fails_the_agent(harness):
    harness.failing_uploads.add("/outputs/")
    script = (
        "import os\nopen(os.path.join(os.environ['RUNCTL_OUTPUT_DIR'], 'm.bin'), 'w').close()\n"
    )

    result = harness.run(harness.write_config(harness.spec(script)))

    assert result.outcome == "agent-failed"
    assert result.exit_code == 0
    assert result.message.startswith("the script exited with code 0, but the agent could not")
    assert "uploading outputs failed: OSError: injected failure" in result.message
    assert harness.sfn.named("failure")[0]["error"] == "Runctl.AgentFailed"
    # The other uploads still happened.
    assert harness.keys(f"runs/{harness.run_id}/attempts/1/logs/") == [
        f"runs/{harness.run_id}/attempts/1/logs/stderr.log",
        f"runs/{harness.run_id}/attempts/1/logs/stdout.log",
    ]

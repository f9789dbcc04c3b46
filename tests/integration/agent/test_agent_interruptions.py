"""Interruptions and resume, whole agent runs against moto, a fake Step Functions and a local IMDS.

The scripts checkpoint every 0.2 s (temporary name, then rename) and open a gate file at step 2;
the fake IMDS serves its notice only once the gate exists, and notice.json is written by the
script itself at that moment, so every notice lands while the script runs, with no sleeps here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from .conftest import FAST

SUMMARY_FIELDS = ("name", "kind", "step", "attempt", "version", "saved_at")


@pytest.fixture(autouse=True)
def agent_info_logs(caplog: pytest.LogCaptureFixture) -> None:
    """INFO, as main() configures it on an instance, so the agent's notes reach the log stream."""
    caplog.set_level(logging.INFO, logger="instance_agent")


CHECKPOINTING_SCRIPT = r"""
import json, os, signal, sys, time
from pathlib import Path

ckpt = Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
(Path(os.environ["RUNCTL_OUTPUT_DIR"]) / "partial-model.txt").write_text("not finished")
print("resume from: " + os.environ.get("RUNCTL_RESUME_FROM", "nothing"), flush=True)
state = {"step": 0, "term": False}

def save(step):
    tmp = ckpt / f"ckpt-{step:06d}.pt.tmp"
    tmp.write_bytes(f"weights-{step}".encode())
    os.replace(tmp, ckpt / f"ckpt-{step:06d}.pt")

def on_term(signum, frame):
    if os.environ.get("ON_TERM") == "ignore":
        state["term"] = True
        print("SIGTERM ignored", flush=True)
        return
    save(state["step"] + 1)
    print(f"SIGTERM: final checkpoint at step {state['step'] + 1}", flush=True)
    sys.exit(143)

signal.signal(signal.SIGTERM, on_term)

def open_gate():
    gate = Path(os.environ["GATE"])
    body = os.environ.get("NOTICE_BODY")
    if body is None:
        gate.touch()
        return
    tmp = gate.with_name(".notice.json.tmp")
    tmp.write_text(body)
    os.replace(tmp, gate)

deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if state["term"]:
        # Killed mid-write, in place: this file must never count as a checkpoint.
        torn = open(ckpt / "ckpt-999999.pt", "ab")
        tmp = open(ckpt / "ckpt-888888.pt.tmp", "ab")
        while True:
            torn.write(b"x" * 1024); torn.flush()
            tmp.write(b"x" * 1024); tmp.flush()
            time.sleep(0.01)
    state["step"] += 1
    save(state["step"])
    if state["step"] == 2:
        open_gate()
    time.sleep(0.2)
print("no notice came", file=sys.stderr)
sys.exit(3)
"""


def _iso(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).isoformat()


def _checkpoint_steps(harness) -> dict[int, str]:
    steps = {}
    for key in harness.keys(f"runs/{harness.run_id}/checkpoints/"):
        match = re.search(r"ckpt-(\d+)\.pt$", key)
        if match:
            steps[int(match.group(1))] = key
    return steps


def _version_key(harness, version: str, relative: str) -> str:
    return f"runs/{harness.run_id}/checkpoints/v/{version}/{relative}"


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    """What the agent says of a manifest entry elsewhere (handoff.json, the run item)."""
    return {name: entry[name] for name in SUMMARY_FIELDS}


def _assert_latest_is_the_newest_intact_checkpoint(harness, keep: int = 3) -> dict[str, Any]:
    """latest.json lists the newest checkpoint in S3 first, intact; and S3 holds nothing else
    under checkpoints/ than what it lists (older versions were deleted past `keep`)."""
    prefix = f"runs/{harness.run_id}/checkpoints/"
    manifest = harness.get_json(prefix + "latest.json")
    assert manifest["format"] == 2
    listed = manifest["checkpoints"]
    assert 1 <= len(listed) <= keep
    steps = _checkpoint_steps(harness)
    top = max(steps)
    newest = listed[0]
    assert (newest["name"], newest["kind"], newest["step"], newest["attempt"]) == (
        f"ckpt-{top:06d}.pt",
        "file",
        top,
        1,
    )
    (item,) = newest["files"]
    assert steps[top] == _version_key(harness, newest["version"], item["path"])
    body = harness.s3.get_object(Bucket=harness.bucket, Key=steps[top])["Body"].read()
    assert body == f"weights-{top}".encode()
    assert (item["sha256"], item["size"]) == (hashlib.sha256(body).hexdigest(), len(body))
    assert [entry["step"] for entry in listed] == sorted(steps, reverse=True)
    listed_keys = [
        _version_key(harness, entry["version"], file["path"])
        for entry in listed
        for file in entry["files"]
    ]
    assert harness.keys(prefix) == sorted([*listed_keys, prefix + "latest.json"])
    return manifest


def _checkpoint_facts(harness, attempt: int) -> dict[str, Any]:
    """checkpoints.<attempt> on the run item, as plain values."""
    item = harness.run_item()
    value = TypeDeserializer().deserialize(item["checkpoints"]["M"][str(attempt)])
    return json.loads(json.dumps(value, default=int))


def _assert_handed_off(harness, reason: str, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """result.json (interrupted) after the last latest.json, then handoff.json, in that order."""
    attempt = f"runs/{harness.run_id}/attempts/1/"
    writes = harness.writes
    handoff_at = writes.index(attempt + "handoff.json")
    result_at = writes.index(attempt + "result.json")
    manifests = [i for i, key in enumerate(writes) if key.endswith("/checkpoints/latest.json")]
    assert manifests and max(manifests) < result_at < handoff_at
    assert writes.count(attempt + "handoff.json") == 1
    handoff = harness.get_json(attempt + "handoff.json")
    assert handoff["attempt"] == 1
    assert handoff["reason"] == reason
    expected = _summary(manifest["checkpoints"][0]) if manifest is not None else None
    assert handoff["checkpoint"] == expected
    assert datetime.fromisoformat(handoff["completed_at"]).tzinfo is not None
    return harness.get_json(attempt + "result.json")


def _assert_task_failed_once_as_interrupted(harness, reason: str) -> dict[str, Any]:
    (failure,) = harness.sfn.named("failure")
    assert failure["error"] == "Runctl.Interrupted"
    assert harness.sfn.named("success") == []
    cause = json.loads(failure["cause"])
    assert cause["reason"] == reason
    # No heartbeat once the task was failed.
    names = [name for name, _ in harness.sfn.calls]
    assert "heartbeat" not in names[names.index("failure") :]
    return cause


def test_given_a_spot_notice_from_imds_then_the_agent_saves_hands_off_and_fails_the_task_once(
    harness, fake_imds, tmp_path: Path
):
    gate = tmp_path / "gate"
    termination = _iso(120)
    fake_imds.serve("spot/instance-action", {"action": "terminate", "time": termination}, gate)
    spec = harness.spec(
        CHECKPOINTING_SCRIPT,
        environment={"GATE": str(gate)},
        interruptions={"rebalance": "checkpoint", "grace_seconds": 10},
        checkpoints={"keep": 2},
    )

    result = harness.run(harness.write_config(spec))

    cause = _assert_task_failed_once_as_interrupted(harness, "spot-interrupted")
    assert cause["termination_time"] == termination
    assert datetime.fromisoformat(cause["notice_time"]).tzinfo is not None
    assert harness.statuses == ["STAGING", "RUNNING", "CHECKPOINTING"]
    assert harness.run_item()["status"] == {"S": "CHECKPOINTING"}
    # Which notice, for PlanNextAttempt when the failure's cause is lost (the emulator drops it)
    assert harness.run_item()["interrupted_by"] == {"S": "spot-interrupted"}
    # The script got SIGTERM and wrote its final checkpoint: the newest, and latest.json's.
    stdout = harness.get_text(f"runs/{harness.run_id}/attempts/1/logs/stdout.log")
    final_step = int(re.search(r"SIGTERM: final checkpoint at step (\d+)", stdout).group(1))
    manifest = _assert_latest_is_the_newest_intact_checkpoint(harness, keep=2)
    assert manifest["checkpoints"][0]["step"] == final_step >= 3
    assert len(manifest["checkpoints"]) == 2  # of 3 or more: the oldest were deleted
    stored = _assert_handed_off(harness, "spot-interrupted", manifest)
    # The run item's newest checkpoint is the one handed off.
    facts = _checkpoint_facts(harness, 1)
    assert facts["newest"] == _summary(manifest["checkpoints"][0])
    assert facts["resumed_from"] is None
    assert stored == result.to_dict()
    assert result.outcome == "interrupted"
    assert result.exit_code == 143
    assert "outputs are not uploaded for an interrupted attempt" in result.message
    assert result.outputs_uri is None
    assert harness.keys(f"runs/{harness.run_id}/outputs/") == []
    assert any("no checkpoint: starting from scratch" in line for line in harness.log_messages())


def test_given_a_spot_notice_in_notice_json_then_the_same_protocol_runs(harness, tmp_path: Path):
    notice = {
        "kind": "spot-interrupted",
        "notice_time": "2026-11-23T10:00:00Z",
        "termination_time": None,
        "source": "eventbridge",
    }
    spec = harness.spec(
        CHECKPOINTING_SCRIPT,
        environment={"GATE": str(harness.home / "notice.json"), "NOTICE_BODY": json.dumps(notice)},
        interruptions={"grace_seconds": 10},
    )

    result = harness.run(harness.write_config(spec))

    cause = _assert_task_failed_once_as_interrupted(harness, "spot-interrupted")
    assert cause == {
        "reason": "spot-interrupted",
        "notice_time": "2026-11-23T10:00:00Z",
        "termination_time": None,
    }
    assert harness.statuses[-1] == "CHECKPOINTING"
    manifest = _assert_latest_is_the_newest_intact_checkpoint(harness)
    stored = _assert_handed_off(harness, "spot-interrupted", manifest)
    assert stored["outcome"] == "interrupted" and stored["exit_code"] == 143
    assert "from eventbridge" in result.message


def test_given_a_script_ignoring_sigterm_then_it_is_killed_after_the_grace_and_still_handed_off(
    harness, fake_imds, tmp_path: Path
):
    gate = tmp_path / "gate"
    fake_imds.serve("spot/instance-action", {"action": "terminate", "time": _iso(120)}, gate)
    spec = harness.spec(
        CHECKPOINTING_SCRIPT,
        environment={"GATE": str(gate), "ON_TERM": "ignore"},
        interruptions={"grace_seconds": 1},
    )

    result = harness.run(harness.write_config(spec))

    assert result.outcome == "interrupted"
    assert result.exit_code == 137
    assert "killed by SIGKILL after the grace period" in result.message
    _assert_task_failed_once_as_interrupted(harness, "spot-interrupted")
    assert "SIGTERM ignored" in harness.get_text(
        f"runs/{harness.run_id}/attempts/1/logs/stdout.log"
    )
    # The file being written when SIGKILL landed, and the temporary one, are not checkpoints.
    keys = harness.keys(f"runs/{harness.run_id}/checkpoints/")
    assert not [key for key in keys if "999999" in key or "888888" in key]
    manifest = _assert_latest_is_the_newest_intact_checkpoint(harness)
    _assert_handed_off(harness, "spot-interrupted", manifest)


def test_given_a_termination_time_near_then_sigkill_comes_before_it_whatever_the_grace(
    harness, fake_imds, tmp_path: Path
):
    gate = tmp_path / "gate"
    # 20.5 s away: SIGKILL is due 20 s before, so after the 1 s minimum, not the 60 s grace.
    fake_imds.serve("spot/instance-action", {"action": "terminate", "time": _iso(20.5)}, gate)
    spec = harness.spec(
        CHECKPOINTING_SCRIPT,
        environment={"GATE": str(gate), "ON_TERM": "ignore"},
        interruptions={"grace_seconds": 60},
    )
    started = time.monotonic()

    result = harness.run(harness.write_config(spec))

    assert time.monotonic() - started < 45  # not the 60 s grace, with room for a loaded machine
    assert result.exit_code == 137
    _assert_handed_off(
        harness, "spot-interrupted", _assert_latest_is_the_newest_intact_checkpoint(harness)
    )


def test_given_a_rebalance_with_the_migrate_policy_then_it_goes_like_a_spot_warning(
    harness, fake_imds, tmp_path: Path
):
    gate = tmp_path / "gate"
    fake_imds.serve(
        "events/recommendations/rebalance", {"noticeTime": "2026-11-23T10:00:00Z"}, gate
    )
    spec = harness.spec(
        CHECKPOINTING_SCRIPT,
        environment={"GATE": str(gate)},
        interruptions={"rebalance": "migrate", "grace_seconds": 10},
    )

    result = harness.run(harness.write_config(spec))

    cause = _assert_task_failed_once_as_interrupted(harness, "rebalance")
    assert cause == {
        "reason": "rebalance",
        "notice_time": "2026-11-23T10:00:00Z",
        "termination_time": None,
    }
    assert result.outcome == "interrupted"
    _assert_handed_off(
        harness, "rebalance", _assert_latest_is_the_newest_intact_checkpoint(harness)
    )


REBALANCE_SCRIPT = r"""
import os, signal, sys, time
from pathlib import Path

ckpt = Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
if os.environ.get("RUNCTL_SIGUSR1_CHECKPOINT") == "1":
    def on_usr1(signum, frame):
        tmp = ckpt / "ckpt-000777.pt.tmp"
        tmp.write_bytes(b"weights-777")
        os.replace(tmp, ckpt / "ckpt-000777.pt")
        print("SIGUSR1: checkpoint written", flush=True)
    signal.signal(signal.SIGUSR1, on_usr1)
(ckpt / "ckpt-000001.pt").write_bytes(b"weights-1")
Path(os.environ["GATE"]).touch()
deadline = time.monotonic() + 20
waiting = Path(os.environ["WAIT_FOR"])
while not waiting.exists():
    if time.monotonic() > deadline:
        print("gave up waiting for " + str(waiting), file=sys.stderr)
        sys.exit(3)
    time.sleep(0.01)
print("training goes on", flush=True)
"""


def test_given_a_rebalance_with_the_checkpoint_policy_and_opt_in_then_sigusr1_and_the_run_goes_on(
    harness, fake_imds, tmp_path: Path
):
    gate, uploaded = tmp_path / "gate", tmp_path / "usr1-checkpoint-uploaded"
    harness.signals["/ckpt-000777.pt"] = uploaded
    fake_imds.serve(
        "events/recommendations/rebalance", {"noticeTime": "2026-11-23T10:00:00Z"}, gate
    )
    spec = harness.spec(
        REBALANCE_SCRIPT,
        environment={
            "GATE": str(gate),
            "WAIT_FOR": str(uploaded),
        },
        interruptions={"rebalance": "checkpoint", "signal_checkpoint": True},
    )

    result = harness.run(harness.write_config(spec))

    assert result.outcome == "succeeded", result.stderr_tail
    assert harness.sfn.named("failure") == []
    assert len(harness.sfn.named("success")) == 1
    assert "CHECKPOINTING" not in harness.statuses
    stdout = harness.get_text(f"runs/{harness.run_id}/attempts/1/logs/stdout.log")
    assert stdout.count("SIGUSR1: checkpoint written") == 1  # the notice stays up: acted on once
    # Synced while the script ran (it waited for the upload), and named by latest.json.
    manifest = harness.get_json(f"runs/{harness.run_id}/checkpoints/latest.json")
    assert [(entry["name"], entry["step"]) for entry in manifest["checkpoints"]] == [
        ("ckpt-000777.pt", 777),
        ("ckpt-000001.pt", 1),
    ]
    assert not harness.keys(f"runs/{harness.run_id}/attempts/1/handoff.json")


def test_given_a_rebalance_without_opt_in_then_no_signal_only_a_sync_and_the_run_goes_on(
    harness, fake_imds, tmp_path: Path
):
    gate, handled = tmp_path / "gate", tmp_path / "rebalance-handled"
    fake_imds.serve(
        "events/recommendations/rebalance",
        {"noticeTime": "2026-11-23T10:00:00Z"},
        gate,
        handled_marker=handled,
    )
    # The script has no SIGUSR1 handler: had the agent sent one, it would have died of it.
    spec = harness.spec(REBALANCE_SCRIPT, environment={"GATE": str(gate), "WAIT_FOR": str(handled)})

    result = harness.run(harness.write_config(spec))

    assert result.outcome == "succeeded", result.message
    assert result.exit_code == 0
    assert harness.sfn.named("failure") == []
    assert any(
        "rebalance recommended: syncing the checkpoints written so far" in line
        for line in harness.log_messages()
    )
    manifest = harness.get_json(f"runs/{harness.run_id}/checkpoints/latest.json")
    assert [(entry["name"], entry["step"]) for entry in manifest["checkpoints"]] == [
        ("ckpt-000001.pt", 1)
    ]


RESUME_SCRIPT = r"""
import json, os
from pathlib import Path

path = os.environ.get("RUNCTL_RESUME_FROM")
if path and Path(path).is_dir():
    content = {
        p.relative_to(path).as_posix(): p.read_text()
        for p in sorted(Path(path).rglob("*"))
        if p.is_file()
    }
else:
    content = Path(path).read_text() if path else None
seen = {"path": path, "content": content}
(Path(os.environ["RUNCTL_OUTPUT_DIR"]) / "seen.json").write_text(json.dumps(seen))
"""

HF_40 = {
    "checkpoint-40/model.safetensors": b"weights-40",
    "checkpoint-40/trainer_state.json": b'{"global_step": 40}',
}


def _seed_version(
    harness,
    version: str,
    name: str,
    files: dict[str, bytes],
    step: int | None = 40,
    saved_at: str = "2026-11-23T10:00:00+00:00",
    sha256: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Put a version's objects in S3; return its latest.json entry (see _seed_manifest)."""
    for relative, data in files.items():
        harness.s3.put_object(
            Bucket=harness.bucket, Key=_version_key(harness, version, relative), Body=data
        )
    return {
        "version": version,
        "name": name,
        "kind": "file" if list(files) == [name] else "folder",
        "step": step,
        "attempt": int(version.split("-")[0]),
        "saved_at": saved_at,
        "uploaded_at": saved_at,
        "files": [
            {
                "path": relative,
                "sha256": (sha256 or {}).get(relative) or hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
            for relative, data in files.items()
        ],
    }


def _seed_manifest(harness, *entries: dict[str, Any]) -> None:
    harness.s3.put_object(
        Bucket=harness.bucket,
        Key=f"runs/{harness.run_id}/checkpoints/latest.json",
        Body=json.dumps({"format": 2, "checkpoints": list(entries)}).encode(),
    )


def _seed_format_1(harness, relative: str, data: bytes) -> None:
    """latest.json as agents wrote it before versions: one file, overwritten in place."""
    key = f"runs/{harness.run_id}/checkpoints/{relative}"
    harness.s3.put_object(Bucket=harness.bucket, Key=key, Body=data)
    manifest = {
        "key": key,
        "path": relative,
        "step": 40,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "uploaded_at": "2026-11-23T10:00:00+00:00",
        "attempt": 1,
    }
    harness.s3.put_object(
        Bucket=harness.bucket,
        Key=f"runs/{harness.run_id}/checkpoints/latest.json",
        Body=json.dumps(manifest).encode(),
    )


def _checkpoints_dir(harness) -> Path:
    """The run's checkpoint directory: the same path on every attempt."""
    return harness.home.resolve() / "work" / harness.run_id / "checkpoints"


def test_given_a_checkpoint_in_s3_when_the_next_attempt_starts_then_the_script_resumes_from_it(
    harness,
):
    harness.put_run_item(status="LAUNCHING", attempt=2)
    entry = _seed_version(harness, "1-000007", "checkpoint-40", HF_40)
    _seed_manifest(harness, entry)
    harness.writes.clear()

    result = harness.run(harness.write_config(harness.spec(RESUME_SCRIPT), attempt=2))

    assert result.outcome == "succeeded", result.stderr_tail
    seen = harness.get_json(f"runs/{harness.run_id}/outputs/seen.json")
    # The folder, whole, at the stable path.
    assert seen == {
        "path": str(_checkpoints_dir(harness) / "checkpoint-40"),
        "content": {
            "model.safetensors": "weights-40",
            "trainer_state.json": '{"global_step": 40}',
        },
    }
    # Already in S3: not uploaded again, and latest.json is left as it was.
    assert not [key for key in harness.writes if "/checkpoints/" in key]
    line = (
        "[runctl-agent] INFO instance_agent.attempt: resuming from checkpoint checkpoint-40 "
        "(step 40, saved by attempt 1 at 2026-11-23T10:00:00+00:00)"
    )
    assert line in harness.log_messages(attempt=2)
    facts = _checkpoint_facts(harness, 2)
    assert facts["resumed_from"] == _summary(entry)
    assert facts["newest"] == _summary(entry)
    assert "skipped" not in facts


def test_given_a_torn_newest_checkpoint_then_the_script_resumes_from_the_one_before(harness):
    harness.put_run_item(status="LAUNCHING", attempt=3)
    newer = _seed_version(
        harness,
        "2-000003",
        "checkpoint-50",
        {"checkpoint-50/model.safetensors": b"weights-5"},  # torn: 10 bytes were listed
        step=50,
        saved_at="2026-11-23T11:00:00+00:00",
        sha256={"checkpoint-50/model.safetensors": hashlib.sha256(b"weights-50").hexdigest()},
    )
    older = _seed_version(harness, "1-000007", "checkpoint-40", HF_40)
    _seed_manifest(harness, newer, older)

    result = harness.run(harness.write_config(harness.spec(RESUME_SCRIPT), attempt=3))

    assert result.outcome == "succeeded", result.stderr_tail
    seen = harness.get_json(f"runs/{harness.run_id}/outputs/seen.json")
    assert seen["path"] == str(_checkpoints_dir(harness) / "checkpoint-40")
    assert seen["content"]["model.safetensors"] == "weights-40"
    assert not (_checkpoints_dir(harness) / "checkpoint-50").exists()
    facts = _checkpoint_facts(harness, 3)
    assert facts["resumed_from"] == _summary(older)
    (skipped,) = facts["skipped"]
    assert skipped.startswith("checkpoint-50 (version 2-000003): ")  # cut short on the item
    assert "/v/2-000003/checkpoint-50/model.safetensors has sha256 " in skipped
    assert any(
        "not resuming from checkpoint checkpoint-50" in line and "a torn or altered file" in line
        for line in harness.log_messages(attempt=3)
    )


def test_given_a_format_1_latest_json_then_the_script_still_resumes_from_its_file(harness):
    harness.put_run_item(status="LAUNCHING", attempt=2)
    _seed_format_1(harness, "ckpt-000040.pt", b"weights-40")
    harness.writes.clear()

    result = harness.run(harness.write_config(harness.spec(RESUME_SCRIPT), attempt=2))

    assert result.outcome == "succeeded", result.stderr_tail
    seen = harness.get_json(f"runs/{harness.run_id}/outputs/seen.json")
    assert seen == {
        "path": str(_checkpoints_dir(harness) / "ckpt-000040.pt"),
        "content": "weights-40",
    }
    assert not [key for key in harness.writes if "/checkpoints/" in key]
    assert _checkpoint_facts(harness, 2)["resumed_from"]["step"] == 40


def test_given_a_torn_checkpoint_then_the_attempt_fails_before_the_script_starts(
    harness, tmp_path: Path
):
    harness.put_run_item(status="LAUNCHING", attempt=2)
    torn = _seed_version(
        harness,
        "1-000004",
        "ckpt-000040.pt",
        {"ckpt-000040.pt": b"weights-4"},
        sha256={"ckpt-000040.pt": hashlib.sha256(b"weights-40").hexdigest()},
    )
    _seed_manifest(harness, torn)
    marker = tmp_path / "script-started"

    result = harness.run(
        harness.write_config(harness.spec(f"open({str(marker)!r}, 'w').close()\n"), attempt=2)
    )

    assert not marker.exists()
    assert result.outcome == "agent-failed"
    assert "lists can be restored intact: ckpt-000040.pt (version 1-000004): " in result.message
    assert "has sha256 " in result.message
    assert "a torn or altered file" in result.message
    (failure,) = harness.sfn.named("failure")
    assert failure["error"] == "Runctl.AgentFailed"
    assert harness.sfn.named("success") == []
    assert not (_checkpoints_dir(harness) / "ckpt-000040.pt").exists()


def test_given_no_imds_and_no_notice_then_imds_is_logged_once_and_the_run_ends_normally(
    harness, tmp_path: Path
):
    script = (
        "import os, sys, time\n"
        "deadline = time.monotonic() + 20\n"
        "while not os.path.exists(os.environ['WAIT_FOR']):\n"
        "    if time.monotonic() > deadline: sys.exit(3)\n"
        "    time.sleep(0.01)\n"
    )
    # The script ends once the agent's metrics thread has ticked: many notice polls by then.
    harness.signals["attempts/1/logs/stdout.log"] = tmp_path / "copied"
    spec = harness.spec(script, environment={"WAIT_FOR": str(tmp_path / "copied")})
    fast_poll = replace(FAST, imds_poll=0.01)

    result = harness.run(harness.write_config(spec), intervals=fast_poll)

    assert result.outcome == "succeeded", result.stderr_tail
    assert harness.keys(f"runs/{harness.run_id}/attempts/1/handoff.json") == []
    assert "CHECKPOINTING" not in harness.statuses
    unreachable = [line for line in harness.log_messages() if "gives no notices" in line]
    assert len(unreachable) == 1


def test_given_a_notice_while_staging_then_the_script_never_starts_and_the_attempt_hands_off(
    harness, tmp_path: Path
):
    harness.home.mkdir(parents=True)
    notice = {
        "kind": "spot-interrupted",
        "notice_time": "2026-11-23T10:00:00Z",
        "termination_time": None,
    }
    (harness.home / "notice.json").write_text(json.dumps(notice))
    entry = _seed_version(harness, "1-000004", "ckpt-000040.pt", {"ckpt-000040.pt": b"w-40"})
    _seed_manifest(harness, entry)
    marker = tmp_path / "script-started"
    # Staging (the code download) waits until the task was failed: the notice lands meanwhile.
    harness.hold_downloads = harness.sfn.ended

    result = harness.run(
        harness.write_config(harness.spec(f"open({str(marker)!r}, 'w').close()\n"))
    )

    assert not marker.exists()
    assert result.outcome == "interrupted"
    assert result.exit_code is None
    assert "the script had not started" in result.message
    _assert_task_failed_once_as_interrupted(harness, "spot-interrupted")
    # STAGING may come first or not at all (a notice at once wins the race), never after.
    assert harness.statuses[-1] == "CHECKPOINTING" and "RUNNING" not in harness.statuses
    assert harness.run_item()["status"] == {"S": "CHECKPOINTING"}
    handoff = harness.get_json(f"runs/{harness.run_id}/attempts/1/handoff.json")
    assert handoff["checkpoint"] == _summary(entry)  # what latest.json still lists first

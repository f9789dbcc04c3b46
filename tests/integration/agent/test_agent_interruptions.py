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

from .conftest import FAST


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


def _assert_latest_is_the_newest_intact_checkpoint(harness) -> dict[str, Any]:
    manifest = harness.get_json(f"runs/{harness.run_id}/checkpoints/latest.json")
    steps = _checkpoint_steps(harness)
    newest = max(steps)
    assert (manifest["key"], manifest["step"]) == (steps[newest], newest)
    body = harness.s3.get_object(Bucket=harness.bucket, Key=manifest["key"])["Body"].read()
    assert body == f"weights-{newest}".encode()
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
    return manifest


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
    assert handoff["checkpoint"] == manifest
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
    manifest = _assert_latest_is_the_newest_intact_checkpoint(harness)
    assert manifest["step"] == final_step >= 3
    stored = _assert_handed_off(harness, "spot-interrupted", manifest)
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
    harness.signals["checkpoints/ckpt-000777.pt"] = uploaded
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
    assert manifest["step"] == 777
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
    assert harness.get_json(f"runs/{harness.run_id}/checkpoints/latest.json")["step"] == 1


RESUME_SCRIPT = r"""
import json, os
from pathlib import Path

path = os.environ.get("RUNCTL_RESUME_FROM")
seen = {"path": path, "content": Path(path).read_text() if path else None}
(Path(os.environ["RUNCTL_OUTPUT_DIR"]) / "seen.json").write_text(json.dumps(seen))
"""


def _seed_checkpoint(harness, relative: str, data: bytes, sha256: str | None = None) -> None:
    key = f"runs/{harness.run_id}/checkpoints/{relative}"
    harness.s3.put_object(Bucket=harness.bucket, Key=key, Body=data)
    manifest = {
        "key": key,
        "path": relative,
        "step": 40,
        "sha256": sha256 or hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "uploaded_at": "2026-11-23T10:00:00+00:00",
        "attempt": 1,
    }
    harness.s3.put_object(
        Bucket=harness.bucket,
        Key=f"runs/{harness.run_id}/checkpoints/latest.json",
        Body=json.dumps(manifest).encode(),
    )


def test_given_a_checkpoint_in_s3_when_the_next_attempt_starts_then_the_script_resumes_from_it(
    harness,
):
    harness.put_run_item(status="LAUNCHING", attempt=2)
    _seed_checkpoint(harness, "epoch-4/ckpt-000040.pt", b"weights-40")
    harness.writes.clear()

    result = harness.run(harness.write_config(harness.spec(RESUME_SCRIPT), attempt=2))

    assert result.outcome == "succeeded", result.stderr_tail
    seen = harness.get_json(f"runs/{harness.run_id}/outputs/seen.json")
    expected = harness.home.resolve() / "work" / harness.run_id / "2" / "checkpoints"
    assert seen == {"path": str(expected / "epoch-4" / "ckpt-000040.pt"), "content": "weights-40"}
    # Already in S3: not uploaded again, and latest.json is left as it was.
    assert not [key for key in harness.writes if "/checkpoints/" in key]
    key = f"runs/{harness.run_id}/checkpoints/epoch-4/ckpt-000040.pt"
    line = f"[runctl-agent] INFO instance_agent.attempt: resuming from {key} (step 40)"
    assert line in harness.log_messages(attempt=2)


def test_given_a_torn_checkpoint_then_the_attempt_fails_before_the_script_starts(
    harness, tmp_path: Path
):
    harness.put_run_item(status="LAUNCHING", attempt=2)
    _seed_checkpoint(
        harness, "ckpt-000040.pt", b"weights-4", hashlib.sha256(b"weights-40").hexdigest()
    )
    marker = tmp_path / "script-started"

    result = harness.run(
        harness.write_config(harness.spec(f"open({str(marker)!r}, 'w').close()\n"), attempt=2)
    )

    assert not marker.exists()
    assert result.outcome == "agent-failed"
    assert "has sha256 " in result.message
    assert "not resuming from a torn or altered file" in result.message
    (failure,) = harness.sfn.named("failure")
    assert failure["error"] == "Runctl.AgentFailed"
    assert harness.sfn.named("success") == []


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
    _seed_checkpoint(harness, "ckpt-000040.pt", b"weights-40")
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
    assert handoff["checkpoint"]["step"] == 40  # what latest.json still names

"""`runctl stop` in local mode: the agent checkpoints and uploads, the run ends CANCELLED, and no
instance is left; a run stopped before training never trains, and does not wait for its boot."""

from __future__ import annotations

import json

import pytest

from lambdas.constants import checkpoint_manifest_key, outputs_prefix
from lambdas.models.run_record import EndReason, RunStatus

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_stop")]

# Counts steps for a long time, checkpoints every 10 and on SIGTERM, and leaves an output behind.
LONG_SCRIPT = """
import json, os, pathlib, signal, sys, time
ckpt = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
out = pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"])
step = 0
def save():
    tmp = ckpt / f".ckpt-{step:05d}.tmp"
    tmp.write_text(json.dumps({"step": step}))
    tmp.rename(ckpt / f"ckpt-{step:05d}.json")
def on_term(*_):
    save()
    (out / "partial.json").write_text(json.dumps({"step": step}))
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
while step < 100000:
    step += 1
    print("RUNCTL_METRIC " + json.dumps({"step": step}), flush=True)
    if step % 10 == 0:
        save()
    time.sleep(0.05)
"""


def test_stopping_a_training_run_checkpoints_uploads_and_cancels(runner, wait_for_record):
    session = runner.session
    run_id = session.start(runner.spec(LONG_SCRIPT))
    wait_for_record(session, run_id, lambda r: r.status is RunStatus.RUNNING and r.latest_metrics)

    answer = session.stop(run_id)
    outcome = session.wait(run_id, timeout_seconds=120)

    assert answer["action"] == "agent-asked-to-stop"
    assert outcome.record.status is RunStatus.CANCELLED
    assert outcome.record.end_reason is EndReason.CANCELLED
    assert outcome.error == "Runctl.Cancelled"
    # The checkpoint written on SIGTERM is the newest one in S3, and the outputs are there
    manifest = json.loads(runner.s3_text(checkpoint_manifest_key(run_id)))
    partial = json.loads(runner.s3_text(outputs_prefix(run_id) + "partial.json"))
    assert manifest["checkpoints"][0]["step"] == partial["step"] > 0
    assert session.live_instances() == []


def test_stopping_during_a_long_boot_ends_the_run_without_waiting_for_the_boot(
    runner, wait_for_record, monkeypatch
):
    # Given a run whose instance takes ten minutes to come online, as a slow AMI might
    session = runner.session
    monkeypatch.setattr(session.emulator.fleet, "boot_seconds", 600)
    run_id = session.start(runner.spec(LONG_SCRIPT))
    wait_for_record(session, run_id, lambda r: r.status is RunStatus.LAUNCHING)

    # When the user stops it
    answer = session.stop(run_id)
    outcome = session.wait(run_id, timeout_seconds=120)

    # Then it ends CANCELLED at the next boot poll (well inside the boot), never trained, and
    # its instance is gone
    assert answer["action"] == "stopping-before-training", answer
    assert outcome.record.status is RunStatus.CANCELLED
    assert outcome.record.end_reason is EndReason.CANCELLED
    assert "stopped on request before training began" in outcome.record.error
    assert runner.s3_keys(outputs_prefix(run_id)) == []
    assert not outcome.record.latest_metrics
    assert session.live_instances() == []


def test_stopping_a_finished_run_changes_nothing(runner):
    outcome = runner.run("print('done')\n")
    assert outcome.record.status is RunStatus.SUCCEEDED

    answer = runner.session.stop(outcome.run_id)

    assert answer["action"] == "already-finished"
    assert runner.session.table.get(outcome.run_id).status is RunStatus.SUCCEEDED


def test_stopping_an_unknown_run_says_so(runner):
    answer = runner.session.stop("run-that-never-was")

    assert answer["errorType"] == "RunNotFound"
    assert "run-that-never-was" in answer["errorMessage"]

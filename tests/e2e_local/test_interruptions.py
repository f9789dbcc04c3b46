"""The fault matrix, in local mode (training interrupted): each run must end as it should,
resume from the newest complete checkpoint (no step lost beyond it, none repeated from an older
one), and leave no instance running. The run and its script: fault_matrix.py."""

from __future__ import annotations

import json

import pytest

from lambdas.constants import checkpoint_manifest_key
from lambdas.models.run_record import EndReason, RunStatus
from runctl.local.faults import Fault
from tests.e2e_local.fault_matrix import AT_STEP_30, AT_STEP_250, end_reasons

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_faults")]


def test_interruption_during_training_resumes_from_the_newest_checkpoint(faults):
    # Given a run that is interrupted while it trains
    outcome = faults.run([Fault("interrupt", 0, when_upload=AT_STEP_30)])

    # Then it succeeds on a second attempt, and says why the first one stopped
    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.attempt == 2
    assert end_reasons(outcome)[0] is EndReason.SPOT_INTERRUPTED
    # And attempt 2 starts right after the checkpoint attempt 1 handed off (none lost, none redone)
    handed = faults.handoff(outcome.run_id, 1)["checkpoint"]
    first, second = faults.steps(outcome.run_id, 1), faults.steps(outcome.run_id, 2)
    assert handed["step"] == max(first)  # checkpointed on SIGTERM, where it stopped
    assert second[0] == handed["step"] + 1
    assert second[-1] == 300
    faults.assert_no_instance_left(outcome.run_id)


def test_two_interruptions_in_a_row_resume_twice(faults):
    outcome = faults.run(
        [
            Fault("interrupt", 0, when_upload=AT_STEP_30),
            Fault("interrupt", 0, when_upload=AT_STEP_250),
        ],
        steps=400,
        slow_attempts=2,
    )

    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert outcome.record.attempt == 3
    assert end_reasons(outcome)[:2] == [EndReason.SPOT_INTERRUPTED, EndReason.SPOT_INTERRUPTED]
    for attempt in (2, 3):
        handed = faults.handoff(outcome.run_id, attempt - 1)["checkpoint"]
        assert faults.steps(outcome.run_id, attempt)[0] == handed["step"] + 1
    faults.assert_no_instance_left(outcome.run_id)


def test_lost_instance_without_warning_resumes_from_the_newest_durable_checkpoint(faults):
    # Given an instance that disappears with no notice once training is well under way (no
    # SIGTERM, no final checkpoint, no final upload of anything), while a large checkpoint
    # (step 30) is on its way to S3: what latest.json lists then is what attempt 1 made durable
    session = faults.session
    durable_at_kill: list[dict] = []

    def note_latest(key: str) -> None:
        if key.endswith(AT_STEP_30) and not durable_at_kill:
            manifest_key = checkpoint_manifest_key(key.split("/")[1])
            try:
                body = session.s3.get_object(Bucket=session.stack.bucket, Key=manifest_key)
            except session.s3.exceptions.NoSuchKey:
                durable_at_kill.append({"step": None})  # nothing durable: the test says so
                return
            durable_at_kill.append(json.loads(body["Body"].read())["checkpoints"][0])

    session.emulator.on_upload_started.append(note_latest)
    try:
        outcome = faults.run(
            [Fault("kill", 0, when_upload=AT_STEP_30)], pad_step=30, pad_bytes=40 * 1024 * 1024
        )
    finally:
        session.emulator.on_upload_started.remove(note_latest)

    # Then the run resumes on a new attempt, and says why the first one stopped
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert end_reasons(outcome)[0] is EndReason.INSTANCE_LOST
    # And attempt 2 resumed from exactly the newest checkpoint attempt 1 had made durable (a
    # periodic one: the step-30 one never finished its upload), and went on right after it
    newest = durable_at_kill[0]
    assert newest["step"] in (10, 20), newest
    assert newest["attempt"] == 1
    assert faults.steps(outcome.run_id, 2)[0] == newest["step"] + 1
    resumed_from = outcome.record.checkpoints["2"]["resumed_from"]
    assert (resumed_from["name"], resumed_from["version"]) == (newest["name"], newest["version"])
    # And no handoff: nothing was handed over by an instance that vanished
    with pytest.raises(session.s3.exceptions.NoSuchKey):
        faults.handoff(outcome.run_id, 1)
    faults.assert_no_instance_left(outcome.run_id)


def test_script_that_ignores_sigterm_is_killed_and_resumes_from_its_last_checkpoint(faults):
    outcome = faults.run([Fault("interrupt", 0, when_upload=AT_STEP_30)], ignore_sigterm=True)

    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    handed = faults.handoff(outcome.run_id, 1)["checkpoint"]
    assert handed["step"] % 10 == 0  # only periodic checkpoints exist
    assert faults.steps(outcome.run_id, 2)[0] == handed["step"] + 1
    faults.assert_no_instance_left(outcome.run_id)


def test_script_that_never_checkpoints_restarts_from_scratch(faults):
    # (long enough that the notice lands before the script's end, even on a loaded machine)
    outcome = faults.run([Fault("interrupt", 0, when_status="RUNNING")], every=0, steps=200)

    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert faults.handoff(outcome.run_id, 1)["checkpoint"] is None
    assert faults.steps(outcome.run_id, 2)[0] == 1
    faults.assert_no_instance_left(outcome.run_id)


def test_interruption_budget_exhausted_fails_the_run_and_says_so(faults):
    faults.interruptions = {"max_interruptions": 1}
    outcome = faults.run(
        [
            Fault("interrupt", 0, when_upload=AT_STEP_30),
            Fault("interrupt", 0, when_upload=AT_STEP_250),
        ],
        steps=400,
        slow_attempts=2,
    )

    assert outcome.record.status is RunStatus.FAILED
    assert outcome.error == "Runctl.SpotInterrupted"
    assert "interruption budget exhausted (1 of 1)" in outcome.record.error
    # And no third attempt was started: two attempts recorded, two instances ever launched
    assert outcome.record.attempt == 2
    assert sorted(outcome.record.attempts) == ["1", "2"]
    assert len(faults.session.run_instance_ids(outcome.run_id)) == 2
    faults.assert_no_instance_left(outcome.run_id)

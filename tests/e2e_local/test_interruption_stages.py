"""The fault matrix, in local mode (other stages and notices): a warning during boot, data
staging, a checkpoint's or the outputs' upload, twice, or after the end; rebalance policies. Each
run must end as it should and leave no instance running. The run and its script: fault_matrix.py."""

from __future__ import annotations

import json

import pytest

from lambdas.models.run_record import EndReason, RunStatus
from runctl.local.faults import Fault, ec2_event
from tests.e2e_local.fault_matrix import AT_STEP_30, end_reasons

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_fault_stages")]


def test_duplicate_warning_resumes_once(faults, fault_session, wait_for_record):
    # Given a warning that EventBridge delivers twice (and the IMDS notice as well); the second
    # copy comes as soon as attempt 2 is planned, long before its instance has booted
    run_id = faults.start([Fault("interrupt", 0, when_upload=AT_STEP_30)])
    record = wait_for_record(fault_session, run_id, lambda r: r.attempt == 2)
    old = record.attempts["1"].instance_id
    event = ec2_event(
        "EC2 Spot Instance Interruption Warning", old, {"instance-action": "terminate"}
    )
    fault_session.events.send(event)
    outcome = fault_session.wait(run_id, timeout_seconds=240)

    # Then there is exactly one replacement
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert outcome.record.attempt == 2
    assert len(fault_session.run_instance_ids(run_id)) == 2
    faults.assert_no_instance_left(run_id)


def test_warning_after_the_run_finished_changes_nothing(faults, fault_session):
    outcome = faults.run([], steps=10)
    instance_id = outcome.record.attempts["1"].instance_id
    before = fault_session.table.get(outcome.run_id)

    fault_session.events.send(
        ec2_event(
            "EC2 Spot Instance Interruption Warning", instance_id, {"instance-action": "terminate"}
        )
    )
    fault_session.events.send(
        ec2_event("EC2 Instance State-change Notification", instance_id, {"state": "terminated"})
    )
    fault_session.events.flush()

    assert fault_session.table.get(outcome.run_id) == before
    actions = [reply.get("action", "") for _, reply in fault_session.events.delivered[-2:]]
    assert all(action.startswith("ignored") for action in actions), actions


def test_interruption_during_boot_resumes_on_a_new_instance(faults):
    # Given a warning that arrives while the first instance is still starting
    outcome = faults.run([Fault("interrupt", 0.1)], steps=40)

    # Then the run still completes, on a later attempt, from scratch (nothing was trained yet)
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert outcome.record.attempt >= 2
    assert end_reasons(outcome)[0] in {EndReason.SPOT_INTERRUPTED, EndReason.INSTANCE_LOST}
    assert faults.steps(outcome.run_id, outcome.record.attempt)[0] == 1
    faults.assert_no_instance_left(outcome.run_id)


def test_rebalance_under_the_checkpoint_policy_keeps_the_run_where_it_is(faults):
    outcome = faults.run([Fault("rebalance", 0, when_status="RUNNING")], steps=100)

    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert outcome.record.attempt == 1
    assert faults.steps(outcome.run_id, 1) == list(range(1, 101))
    faults.assert_no_instance_left(outcome.run_id)


def test_rebalance_under_the_migrate_policy_moves_the_run(faults):
    faults.interruptions = {"rebalance": "migrate"}
    outcome = faults.run([Fault("rebalance", 0, when_upload=AT_STEP_30)])

    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert end_reasons(outcome)[0] is EndReason.REBALANCE
    handed = faults.handoff(outcome.run_id, 1)["checkpoint"]
    assert faults.steps(outcome.run_id, 2)[0] == handed["step"] + 1
    faults.assert_no_instance_left(outcome.run_id)


def test_interruption_during_data_staging_never_starts_the_script_there(faults):
    # Given a run with a large dataset to stage, interrupted while it stages
    bucket = faults.session.stack.bucket
    faults.session.s3.put_object(
        Bucket=bucket, Key="data/big/blob.bin", Body=b"\0" * (200 * 1024 * 1024)
    )
    faults.data = [{"s3_uri": f"s3://{bucket}/data/big/", "name": "big"}]
    outcome = faults.run([Fault("interrupt", 0, when_status="STAGING")], steps=30)

    # Then the first attempt handed off without ever training, and the second did all the work
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert end_reasons(outcome)[0] is EndReason.SPOT_INTERRUPTED
    assert faults.handoff(outcome.run_id, 1)["checkpoint"] is None
    with pytest.raises(faults.session.s3.exceptions.NoSuchKey):
        faults.steps(outcome.run_id, 1)
    assert faults.steps(outcome.run_id, 2) == list(range(1, 31))
    faults.assert_no_instance_left(outcome.run_id)


def test_interruption_during_a_checkpoint_upload_resumes_from_a_whole_checkpoint(faults):
    # Given a large checkpoint at step 20, and a warning while it is on its way to S3
    outcome = faults.run(
        [Fault("interrupt", 0, when_upload="/ckpt-00020")],
        steps=300,  # long enough that training outlasts the upload, even on a loaded machine
        pad_step=20,
        pad_bytes=150 * 1024 * 1024,
    )

    # Then the next attempt resumes from the newest checkpoint that was whole in S3 (the one the
    # script wrote on SIGTERM, uploaded first), never from a torn file
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert end_reasons(outcome)[0] is EndReason.SPOT_INTERRUPTED
    handed = faults.handoff(outcome.run_id, 1)["checkpoint"]
    assert handed["step"] >= 20
    assert faults.steps(outcome.run_id, 2)[0] == handed["step"] + 1
    faults.assert_no_instance_left(outcome.run_id)


def test_interruption_during_the_output_upload_lets_the_attempt_finish(faults):
    # Given a script that leaves a large output, and a warning once its upload has begun (with
    # a notice long enough for the upload, as AWS's two minutes would be)
    output_bytes = 120 * 1024 * 1024
    outcome = faults.run(
        [Fault("interrupt", 0, when_upload="/outputs/model.bin", notice_seconds=60)],
        steps=20,
        output_bytes=output_bytes,
    )

    # Then the script had exited, so the notice changes nothing: one attempt, completed, whole
    # outputs, and the agent said why it ignored the notice
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert end_reasons(outcome) == [EndReason.COMPLETED]
    assert (outcome.outputs_dir / "model.bin").stat().st_size == output_bytes
    assert json.loads((outcome.outputs_dir / "done.json").read_text()) == {"step": 20}
    assert faults.session.table.get(outcome.run_id).interrupted_by is None
    assert any("notice changes nothing" in line for line in faults.log_lines(outcome.run_id, 1))
    faults.assert_no_instance_left(outcome.run_id)

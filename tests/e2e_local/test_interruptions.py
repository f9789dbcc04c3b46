"""The fault matrix, in local mode: each run must end as it should, resume from the newest
complete checkpoint (no step lost beyond it, none repeated from an older one), and leave no
instance running."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdas.constants import attempt_prefix, handoff_key, log_stream_name
from lambdas.models.run_record import EndReason, RunStatus
from runctl.local.deploy import LocalSettings
from runctl.local.faults import Fault, ec2_event
from runctl.local.session import LocalSession, RunOutcome
from runctl.packaging import package_directory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_faults")]

# Faults fire when training reaches a point (a checkpoint's upload begins), not at a clock time,
# so a loaded machine cannot move them into the boot. An upload begins up to ~4 s (80 steps)
# after its checkpoint is written, and a notice takes up to ~3 s more to stop the script: so
# attempt 1 stops before step ~170, and a second fault at 250 lands on attempt 2, well before
# the script's end at 400 (a notice after the script exited rightly changes nothing).
AT_STEP_30 = "/checkpoints/ckpt-00030.json"
AT_STEP_250 = "/checkpoints/ckpt-00250.json"

# A shorter spot notice than AWS's 120 s, the same protocol. It costs no time: the old instance
# goes once it has handed off, and SIGKILL comes after the 1 s minimum (the notice is within the
# agent's 20 s margin); it only has to outlast the agent's final uploads on a loaded machine.
FAULT_SETTINGS = LocalSettings(poll_seconds=1, heartbeat_seconds=60, spot_notice_seconds=20)

# Counts steps, checkpoints every `every` steps (temp name, then rename), checkpoints on SIGTERM
# unless told to ignore it, reports each step with its attempt. Steps take `step_seconds` on the
# attempts a fault may land on (the first `slow_attempts`) and almost nothing after: the margins
# above are the faulted attempts', and the rest of the run only has to be counted.
STEP_SCRIPT = """
import json, os, pathlib, signal, sys, time
hp = json.loads(os.environ["RUNCTL_HPARAMS"])
ckpt = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
attempt = int(os.environ["RUNCTL_ATTEMPT"])
step = 0
if os.environ.get("RUNCTL_RESUME_FROM"):
    step = json.loads(pathlib.Path(os.environ["RUNCTL_RESUME_FROM"]).read_text())["step"]

def save():
    tmp = ckpt / f".ckpt-{step:05d}.tmp"
    pad = "x" * (hp.get("pad_bytes", 0) if step == hp.get("pad_step") else 0)
    tmp.write_text(json.dumps({"step": step, "pad": pad}))
    tmp.rename(ckpt / f"ckpt-{step:05d}.json")

def on_term(*_):
    if hp.get("ignore_sigterm"):
        return
    if hp.get("every"):
        save()
    sys.exit(143)

signal.signal(signal.SIGTERM, on_term)
while step < hp["steps"]:
    step += 1
    print("RUNCTL_METRIC " + json.dumps({"step": step, "attempt": attempt}), flush=True)
    if hp.get("every") and step % hp["every"] == 0:
        save()
    time.sleep(hp.get("step_seconds", 0.05) if attempt <= hp.get("slow_attempts", 1) else 0.001)
out = pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"])
(out / "model.bin").write_bytes(b"m" * hp.get("output_bytes", 1))
(out / "done.json").write_text(json.dumps({"step": step}))
"""


@pytest.fixture(scope="module")
def fault_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSession]:
    with LocalSession(tmp_path_factory.mktemp("runctl-faults"), FAULT_SETTINGS) as session:
        yield session


class FaultRun:
    def __init__(self, session: LocalSession, tmp_path: Path) -> None:
        self.session = session
        self.tmp_path = tmp_path
        self.interruptions: dict[str, object] = {}
        self.data: list[dict[str, str]] = []

    def start(self, faults: list[Fault], **hparams: object) -> str:
        project = self.tmp_path / "project"
        project.mkdir(exist_ok=True)
        (project / "train.py").write_text(STEP_SCRIPT)
        package = package_directory(project)
        code_uri, _ = self.session.upload_code(package)
        spec = {
            "code": {"s3_uri": code_uri, "sha256": package.sha256},
            "entry_point": "train.py",
            "hyperparameters": {"steps": 300, "every": 10, **hparams},
            "interruptions": self.interruptions,
            "data": self.data,
        }
        return self.session.start(spec, faults=faults)

    def run(self, faults: list[Fault], **hparams: object) -> RunOutcome:
        return self.session.wait(self.start(faults, **hparams), timeout_seconds=240)

    def steps(self, run_id: str, attempt: int) -> list[int]:
        """The steps an attempt reported, in order."""
        key = attempt_prefix(run_id, attempt) + "metrics.jsonl"
        body = self.session.s3.get_object(Bucket=self.session.stack.bucket, Key=key)["Body"]
        return [json.loads(line)["step"] for line in body.read().decode().splitlines() if line]

    def log_lines(self, run_id: str, attempt: int) -> list[str]:
        """The attempt's log stream: the script's output and the agent's own log records."""
        events = self.session.logs.get_log_events(
            logGroupName=self.session.stack.log_group,
            logStreamName=log_stream_name(run_id, attempt),
            startFromHead=True,
        )["events"]
        return [event["message"] for event in events]

    def handoff(self, run_id: str, attempt: int) -> dict:
        body = self.session.s3.get_object(
            Bucket=self.session.stack.bucket, Key=handoff_key(run_id, attempt)
        )["Body"]
        return json.loads(body.read())

    def assert_no_instance_left(self, run_id: str) -> None:
        live = set(self.session.live_instances()) & self.session.run_instance_ids(run_id)
        assert live == set()
        for instance_id in self.session.run_instance_ids(run_id):
            assert self.session.emulator.fleet.get(instance_id).processes() == []


@pytest.fixture
def faults(fault_session: LocalSession, tmp_path: Path) -> FaultRun:
    return FaultRun(fault_session, tmp_path)


def _reasons(outcome: RunOutcome) -> list[str | None]:
    attempts = outcome.record.attempts
    return [attempts[str(n)].end_reason for n in sorted(map(int, attempts))]


def test_interruption_during_training_resumes_from_the_newest_checkpoint(faults):
    # Given a run that is interrupted while it trains
    outcome = faults.run([Fault("interrupt", 0, when_upload=AT_STEP_30)])

    # Then it succeeds on a second attempt, and says why the first one stopped
    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.attempt == 2
    assert _reasons(outcome)[0] is EndReason.SPOT_INTERRUPTED
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
    assert _reasons(outcome)[:2] == [EndReason.SPOT_INTERRUPTED, EndReason.SPOT_INTERRUPTED]
    for attempt in (2, 3):
        handed = faults.handoff(outcome.run_id, attempt - 1)["checkpoint"]
        assert faults.steps(outcome.run_id, attempt)[0] == handed["step"] + 1
    faults.assert_no_instance_left(outcome.run_id)


def test_lost_instance_without_warning_resumes_from_the_last_periodic_checkpoint(faults):
    # Given an instance that disappears with no notice once training is well under way (no
    # SIGTERM, no final checkpoint, no final upload of anything)
    outcome = faults.run([Fault("kill", 0, when_upload=AT_STEP_30)])

    # Then the run resumes on a new attempt, and says why the first one stopped
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert _reasons(outcome)[0] is EndReason.INSTANCE_LOST
    # And the next attempt starts right after a periodic checkpoint that reached S3, not from 0
    resumed_at = faults.steps(outcome.run_id, 2)[0] - 1
    assert resumed_at > 0
    assert resumed_at % 10 == 0
    checkpoint_keys = faults.session.s3.list_objects_v2(
        Bucket=faults.session.stack.bucket, Prefix=f"runs/{outcome.run_id}/checkpoints/"
    )["Contents"]
    assert any(item["Key"].endswith(f"ckpt-{resumed_at:05d}.json") for item in checkpoint_keys)
    # And no handoff: nothing was handed over by an instance that vanished
    with pytest.raises(faults.session.s3.exceptions.NoSuchKey):
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


def test_duplicate_warning_resumes_once(faults, fault_session, wait_for_record):
    # Given a warning that EventBridge delivers twice (and the IMDS notice as well)
    run_id = faults.start([Fault("interrupt", 0, when_upload=AT_STEP_30)], slow_attempts=2)
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
    assert _reasons(outcome)[0] in {EndReason.SPOT_INTERRUPTED, EndReason.INSTANCE_LOST}
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
    assert _reasons(outcome)[0] is EndReason.REBALANCE
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
    assert _reasons(outcome)[0] is EndReason.SPOT_INTERRUPTED
    assert faults.handoff(outcome.run_id, 1)["checkpoint"] is None
    with pytest.raises(faults.session.s3.exceptions.NoSuchKey):
        faults.steps(outcome.run_id, 1)
    assert faults.steps(outcome.run_id, 2) == list(range(1, 31))
    faults.assert_no_instance_left(outcome.run_id)


def test_interruption_during_a_checkpoint_upload_resumes_from_a_whole_checkpoint(faults):
    # Given a large checkpoint at step 20, and a warning while it is on its way to S3
    outcome = faults.run(
        [Fault("interrupt", 0, when_upload="/checkpoints/ckpt-00020")],
        steps=300,  # long enough that training outlasts the upload, even on a loaded machine
        pad_step=20,
        pad_bytes=150 * 1024 * 1024,
    )

    # Then the next attempt resumes from the newest checkpoint that was whole in S3 (the one the
    # script wrote on SIGTERM, uploaded first), never from a torn file
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert _reasons(outcome)[0] is EndReason.SPOT_INTERRUPTED
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
    assert _reasons(outcome) == [EndReason.COMPLETED]
    assert (outcome.outputs_dir / "model.bin").stat().st_size == output_bytes
    assert json.loads((outcome.outputs_dir / "done.json").read_text()) == {"step": 20}
    assert faults.session.table.get(outcome.run_id).interrupted_by is None
    assert any("notice changes nothing" in line for line in faults.log_lines(outcome.run_id, 1))
    faults.assert_no_instance_left(outcome.run_id)

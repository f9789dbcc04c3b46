"""Real training libraries under runctl, in local mode: the Hugging Face Trainer and Lightning
examples (examples/libraries: the library's own checkpointing, the contract's paths and
runctl_helper's callback, nothing else), each losing its instance without warning and then
interrupted by a spot warning. Each attempt must resume from the newest durable checkpoint (a
whole checkpoint-N folder for Trainer, a .ckpt file for Lightning) and carry the global step on.
Both examples share one requirements.txt, so the session builds their environment once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdas.constants import checkpoint_manifest_key
from lambdas.models.run_record import EndReason, RunStatus
from runctl.local.faults import Fault
from runctl.local.instances import LocalInstance
from runctl.local.session import LocalSession
from runctl.packaging import package_directory
from tests.e2e_local.fault_matrix import FaultRun, end_reasons

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_checkpoint_libraries")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# A GPU type: its image (the Deep Learning AMI's stand-in) lends torch, as the real one ships it;
# the example's requirements.txt adds the library on top.
GPU_TYPE = "g5.xlarge"


class LibraryRun(FaultRun):
    """An example of examples/libraries run as the user runs it, with faults; notes what
    latest.json listed when the run's first instance was terminated (the newest durable
    checkpoint when it vanished)."""

    def __init__(self, session: LocalSession, tmp_path: Path, script: str) -> None:
        super().__init__(session, tmp_path)
        self.script = script
        self.durable_at_first_loss: list[dict[str, Any] | None] = []

    def start(self, faults: list[Fault], **hparams: object) -> str:
        package = package_directory(EXAMPLES / "libraries")
        code_uri, _ = self.session.upload_code(package)
        spec = {
            "code": {"s3_uri": code_uri, "sha256": package.sha256},
            "entry_point": self.script,
            "hyperparameters": hparams,
            "instance_types": [GPU_TYPE],
            # Tiny models: one thread each, or the two cores thrash.
            "environment": {"OMP_NUM_THREADS": "1"},
        }
        return self.session.start(spec, faults=faults)

    def run_noting_the_first_loss(self, faults: list[Fault], **hparams: object) -> Any:
        run_id: list[str] = []

        def note(instance: LocalInstance) -> None:
            first = run_id and not self.durable_at_first_loss
            if first and instance.instance_id in self.session.run_instance_ids(run_id[0]):
                self.durable_at_first_loss.append(self._newest_durable(run_id[0]))

        self.session.emulator.fleet.on_terminate.append(note)
        try:
            run_id.append(self.start(faults, **hparams))
            return self.session.wait(run_id[0], timeout_seconds=420)
        finally:
            self.session.emulator.fleet.on_terminate.remove(note)

    def agent_log(self, run_id: str) -> str:
        """What the agents said about checkpoints, every attempt: why a fault never fired."""
        lines = []
        for attempt in range(1, 4):
            try:
                said = self.log_lines(run_id, attempt)
            except self.session.logs.exceptions.ResourceNotFoundException:
                break
            lines += [f"{attempt}: {line}" for line in said if "instance_agent" in line]
        return "\n".join(lines)

    def _newest_durable(self, run_id: str) -> dict[str, Any] | None:
        try:
            body = self.session.s3.get_object(
                Bucket=self.session.stack.bucket, Key=checkpoint_manifest_key(run_id)
            )["Body"]
        except self.session.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body.read())["checkpoints"][0]


@pytest.fixture(scope="module")
def library_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.e2e_local.fault_matrix import FAULT_SETTINGS

    with LocalSession(tmp_path_factory.mktemp("runctl-libraries"), FAULT_SETTINGS) as session:
        yield session


def _resumed_from(outcome: Any, attempt: int) -> dict[str, Any]:
    return outcome.record.checkpoints[str(attempt)]["resumed_from"]


# A fault fires at the Nth upload of a checkpoint that begins, whichever it is: on a loaded
# machine the agent may skip a save the library replaced at once (save_total_limit, save_top_k).
# Warnings give 45 s (SIGKILL 20 s before the end): time for the SIGTERM save, as on AWS's 120 s.
HF_SAVE = "/trainer_state.json"  # one per checkpoint-N folder
LIGHTNING_SAVE = "-step="  # epoch=E-step=S.ckpt, not last.ckpt


def test_hugging_face_trainer_resumes_its_checkpoint_folders_after_a_loss_and_a_warning(
    library_session, tmp_path
):
    # Given the Trainer example losing its instance while its second checkpoint-N folder
    # uploads, then (on attempt 2) warned while the second one of that attempt uploads
    run = LibraryRun(library_session, tmp_path, "train_hf.py")
    outcome = run.run_noting_the_first_loss(
        [
            Fault("kill", 0, when_upload=HF_SAVE, when_upload_count=2),
            Fault("interrupt", 0, when_upload=HF_SAVE, when_upload_count=2, notice_seconds=45),
        ],
        steps=200,
        save_every=20,
        log_every=5,
        step_seconds=0.1,  # a tiny model trains in moments; real steps take longer
    )

    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert end_reasons(outcome)[:2] == [EndReason.INSTANCE_LOST, EndReason.SPOT_INTERRUPTED], (
        run.agent_log(outcome.run_id)
    )
    # Attempt 2: the newest folder that was durable when the instance vanished, restored whole
    # (Trainer refuses a folder with a file missing), its step read from trainer_state.json
    durable = run.durable_at_first_loss[0]
    assert durable is not None and durable["kind"] == "folder" and durable["attempt"] == 1
    assert durable["name"] == f"checkpoint-{durable['step']}"
    assert _resumed_from(outcome, 2)["name"] == durable["name"]
    second = run.steps(outcome.run_id, 2)
    assert durable["step"] < second[0] <= durable["step"] + 5  # the global step carried on
    # Attempt 3: the folder Trainer saved on SIGTERM (runctl_helper's callback), where it stopped
    handed = run.handoff(outcome.run_id, 2)["checkpoint"]
    assert handed["kind"] == "folder" and handed["attempt"] == 2
    assert handed["name"] == f"checkpoint-{handed['step']}" and handed["step"] >= max(second)
    assert _resumed_from(outcome, 3)["name"] == handed["name"]
    third = run.steps(outcome.run_id, 3)
    assert handed["step"] < third[0] <= handed["step"] + 5
    assert third[-1] == 200
    run.assert_no_instance_left(outcome.run_id)


def test_lightning_resumes_its_checkpoint_files_after_a_loss_and_a_warning(
    library_session, tmp_path
):
    # Given the Lightning example (ModelCheckpoint every 20 steps, OnExceptionCheckpoint for
    # SIGTERM) losing its instance while its second step checkpoint uploads, then (on attempt
    # 2) warned while the second one of that attempt uploads
    run = LibraryRun(library_session, tmp_path, "train_lightning.py")
    outcome = run.run_noting_the_first_loss(
        [
            Fault("kill", 0, when_upload=LIGHTNING_SAVE, when_upload_count=2),
            Fault(
                "interrupt", 0, when_upload=LIGHTNING_SAVE, when_upload_count=2, notice_seconds=45
            ),
        ],
        steps=200,
        save_every=20,
        log_every=5,
        step_seconds=0.1,  # a tiny model trains in moments; real steps take longer
    )

    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert end_reasons(outcome)[:2] == [EndReason.INSTANCE_LOST, EndReason.SPOT_INTERRUPTED], (
        run.agent_log(outcome.run_id)
    )
    # Attempt 2: the newest checkpoint file durable when the instance vanished, its global step
    # read from the checkpoint itself when its name has none (last.ckpt)
    durable = run.durable_at_first_loss[0]
    assert durable is not None and durable["attempt"] == 1 and durable["step"] is not None
    assert _resumed_from(outcome, 2)["name"] == durable["name"]
    second = run.steps(outcome.run_id, 2)
    assert durable["step"] < second[0] <= durable["step"] + 5
    # Attempt 3: the file OnExceptionCheckpoint wrote on SIGTERM, at the same path as ever
    handed = run.handoff(outcome.run_id, 2)["checkpoint"]
    assert handed["name"] == "interrupted.ckpt" and handed["attempt"] == 2
    assert handed["step"] >= max(second)
    assert _resumed_from(outcome, 3)["name"] == "interrupted.ckpt"
    third = run.steps(outcome.run_id, 3)
    assert handed["step"] < third[0] <= handed["step"] + 5
    assert third[-1] == 200
    run.assert_no_instance_left(outcome.run_id)

"""Real training libraries under runctl, in local mode: the Hugging Face Trainer and Lightning
examples (examples/hf, examples/lightning: the library's own checkpointing, the contract's paths
and runctl_helper's callback, nothing else), each interrupted by a spot warning and then losing
its instance without one. Each attempt must resume from the newest durable checkpoint (a whole
checkpoint-N folder for Trainer, a .ckpt file for Lightning) and carry the global step on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdas.constants import checkpoint_manifest_key
from lambdas.models.run_record import EndReason, RunStatus
from runctl.local.faults import Fault
from runctl.local.session import LocalSession
from runctl.packaging import package_directory
from tests.e2e_local.fault_matrix import FaultRun, end_reasons

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_checkpoint_libraries")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# A GPU type: its image (the Deep Learning AMI's stand-in) lends torch, as the real one ships it;
# the example's requirements.txt adds the library on top.
GPU_TYPE = "g5.xlarge"


class LibraryRun(FaultRun):
    """An example folder run as the user runs it, with faults; notes what latest.json listed
    when a given upload began (the newest durable checkpoint at that moment)."""

    def __init__(self, session: LocalSession, tmp_path: Path, example: str) -> None:
        super().__init__(session, tmp_path)
        self.example = EXAMPLES / example
        self.durable_when: dict[str, dict[str, Any] | None] = {}

    def start(self, faults: list[Fault], **hparams: object) -> str:
        package = package_directory(self.example)
        code_uri, _ = self.session.upload_code(package)
        spec = {
            "code": {"s3_uri": code_uri, "sha256": package.sha256},
            "entry_point": "train.py",
            "hyperparameters": hparams,
            "instance_types": [GPU_TYPE],
            # Tiny models: one thread each, or the two cores thrash.
            "environment": {"OMP_NUM_THREADS": "1"},
        }
        return self.session.start(spec, faults=faults)

    def run_noting(self, watched: list[str], faults: list[Fault], **hparams: object) -> Any:
        def note(key: str) -> None:
            for text in watched:
                if text in key and text not in self.durable_when:
                    self.durable_when[text] = self._newest_durable(key.split("/")[1])

        self.session.emulator.on_upload_started.append(note)
        try:
            return self.session.wait(self.start(faults, **hparams), timeout_seconds=420)
        finally:
            self.session.emulator.on_upload_started.remove(note)

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


def test_hugging_face_trainer_resumes_its_checkpoint_folders_after_a_warning_and_a_loss(
    library_session, tmp_path
):
    # Given the Trainer example, warned while checkpoint-40 uploads, then (on attempt 2) losing
    # its instance while checkpoint-140 uploads
    run = LibraryRun(library_session, tmp_path, "hf")
    outcome = run.run_noting(
        ["/checkpoint-140/"],
        [
            Fault("interrupt", 0, when_upload="/checkpoint-40/"),
            Fault("kill", 0, when_upload="/checkpoint-140/"),
        ],
        steps=200,
        save_every=20,
        log_every=5,
    )

    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert end_reasons(outcome)[:2] == [EndReason.SPOT_INTERRUPTED, EndReason.INSTANCE_LOST]
    # Attempt 2: the folder Trainer saved on SIGTERM (runctl_helper's callback), restored whole
    # (Trainer refuses a folder with a file missing), its step read from trainer_state.json
    handed = run.handoff(outcome.run_id, 1)["checkpoint"]
    assert handed["kind"] == "folder" and handed["name"] == f"checkpoint-{handed['step']}"
    assert handed["step"] > 40
    assert _resumed_from(outcome, 2)["name"] == handed["name"]
    second = run.steps(outcome.run_id, 2)
    assert handed["step"] < second[0] <= handed["step"] + 5  # the global step carried on
    # Attempt 3: the newest folder that was durable when the instance vanished
    durable = run.durable_when["/checkpoint-140/"]
    assert durable is not None and durable["attempt"] == 2
    assert _resumed_from(outcome, 3)["name"] == durable["name"]
    third = run.steps(outcome.run_id, 3)
    assert durable["step"] < third[0] <= durable["step"] + 5
    assert third[-1] == 200
    run.assert_no_instance_left(outcome.run_id)


def test_lightning_resumes_its_checkpoint_files_after_a_warning_and_a_loss(
    library_session, tmp_path
):
    # Given the Lightning example (ModelCheckpoint every 20 steps, OnExceptionCheckpoint for
    # SIGTERM), warned while its step-40 checkpoint uploads, then losing its instance (on
    # attempt 2) while its step-140 checkpoint uploads
    run = LibraryRun(library_session, tmp_path, "lightning")
    outcome = run.run_noting(
        ["step=140.ckpt"],
        [
            Fault("interrupt", 0, when_upload="step=40.ckpt"),
            Fault("kill", 0, when_upload="step=140.ckpt"),
        ],
        steps=200,
        save_every=20,
        log_every=5,
    )

    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert end_reasons(outcome)[:2] == [EndReason.SPOT_INTERRUPTED, EndReason.INSTANCE_LOST]
    # Attempt 2: the file OnExceptionCheckpoint wrote on SIGTERM, its global step read from the
    # checkpoint itself (the name says none), and Lightning went on from it at the same path
    handed = run.handoff(outcome.run_id, 1)["checkpoint"]
    assert handed["name"] == "interrupted.ckpt" and handed["step"] > 40
    assert _resumed_from(outcome, 2)["name"] == "interrupted.ckpt"
    second = run.steps(outcome.run_id, 2)
    assert handed["step"] < second[0] <= handed["step"] + 5
    # Attempt 3: the newest checkpoint file durable when the instance vanished
    durable = run.durable_when["step=140.ckpt"]
    assert durable is not None and durable["attempt"] == 2 and durable["step"] is not None
    assert _resumed_from(outcome, 3)["name"] == durable["name"]
    third = run.steps(outcome.run_id, 3)
    assert durable["step"] < third[0] <= durable["step"] + 5
    assert third[-1] == 200
    run.assert_no_instance_left(outcome.run_id)

"""Checkpoints saved the ways scripts really save them, in local mode: a large file rewritten in
place (torch.save to one name) while the agent uploads it, and atomic renames faster than any
scan, by a script that ignores SIGTERM. Each run must resume from a whole checkpoint, the newest
one that was durable, and never fail on a hash mismatch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lambdas.models.run_record import EndReason, RunStatus
from runctl.local.faults import Fault
from runctl.local.session import LocalSession
from runctl.packaging import package_directory
from tests.e2e_local.fault_matrix import FaultRun, end_reasons

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_checkpoint_saves")]

# Rewrites checkpoint.pt in place (truncate, then 1 MiB writes) every `every` steps: a header line
# with the step and the body's SHA-256, then `mb` MiB. On resume it checks the body against the
# header and stops (exit 3) on a torn file: a torn checkpoint can never pass unnoticed.
IN_PLACE_SCRIPT = """
import hashlib, json, os, pathlib, sys, time
hp = json.loads(os.environ["RUNCTL_HPARAMS"])
path = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"]) / "checkpoint.pt"
attempt = int(os.environ["RUNCTL_ATTEMPT"])
step = 0
if os.environ.get("RUNCTL_RESUME_FROM"):
    data = pathlib.Path(os.environ["RUNCTL_RESUME_FROM"]).read_bytes()
    header, _, body = data.partition(b"\\n")
    meta = json.loads(header)
    if hashlib.sha256(body).hexdigest() != meta["sha256"]:
        print("torn checkpoint", flush=True)
        sys.exit(3)
    step = meta["step"]
    print(f"resumed at step {step}", flush=True)

def save():
    body = bytes([step % 251]) * (hp["mb"] * 1024 * 1024)
    meta = {"step": step, "sha256": hashlib.sha256(body).hexdigest()}
    with open(path, "wb") as handle:
        handle.write(json.dumps(meta).encode() + b"\\n")
        for start in range(0, len(body), 1024 * 1024):
            handle.write(body[start : start + 1024 * 1024])
    print(f"saved {step}", flush=True)

while step < hp["steps"]:
    step += 1
    print("RUNCTL_METRIC " + json.dumps({"step": step}), flush=True)
    if step % hp["every"] == 0:
        save()
    time.sleep(hp["step_seconds"] if attempt == 1 else 0.001)
"""

# Saves by write-then-rename every step (0.5 s apart: faster than two 2 s scans), and ignores
# SIGTERM, so only SIGKILL stops it: its newest renamed-in checkpoint is whole and must be used.
RENAME_SCRIPT = """
import json, os, pathlib, signal, time
hp = json.loads(os.environ["RUNCTL_HPARAMS"])
ckpt = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
attempt = int(os.environ["RUNCTL_ATTEMPT"])
signal.signal(signal.SIGTERM, signal.SIG_IGN)
step = 0
if os.environ.get("RUNCTL_RESUME_FROM"):
    step = json.loads(pathlib.Path(os.environ["RUNCTL_RESUME_FROM"]).read_text())["step"]
while step < hp["steps"]:
    step += 1
    print("RUNCTL_METRIC " + json.dumps({"step": step}), flush=True)
    tmp = ckpt / f".state-{step}.tmp"
    tmp.write_text(json.dumps({"step": step}))
    tmp.rename(ckpt / f"state-{step:05d}.json")
    print(f"saved {step}", flush=True)
    time.sleep(hp["step_seconds"] if attempt == 1 else 0.001)
"""


class ScriptRun(FaultRun):
    """A FaultRun with a script of the test's own."""

    def __init__(self, session: LocalSession, tmp_path: Path, script: str) -> None:
        super().__init__(session, tmp_path)
        self.script = script

    def start(self, faults: list[Fault], **hparams: object) -> str:
        project = self.tmp_path / "project"
        project.mkdir(exist_ok=True)
        (project / "train.py").write_text(self.script)
        package = package_directory(project)
        code_uri, _ = self.session.upload_code(package)
        spec = {
            "code": {"s3_uri": code_uri, "sha256": package.sha256},
            "entry_point": "train.py",
            "hyperparameters": hparams,
            "interruptions": self.interruptions,
        }
        return self.session.start(spec, faults=faults)

    def stdout(self, run_id: str, attempt: int) -> str:
        key = f"runs/{run_id}/attempts/{attempt}/logs/stdout.log"
        body = self.session.s3.get_object(Bucket=self.session.stack.bucket, Key=key)["Body"]
        return body.read().decode()


def test_a_large_checkpoint_rewritten_in_place_resumes_whole_after_a_kill_mid_upload(
    fault_session, tmp_path
):
    # Given a script that rewrites a 100 MiB checkpoint.pt in place every few steps, and an
    # instance that vanishes while the second version of it is on its way to S3
    run = ScriptRun(fault_session, tmp_path, IN_PLACE_SCRIPT)
    outcome = run.run(
        [Fault("kill", 0, when_upload="/checkpoint.pt", when_upload_count=2)],
        steps=60,
        every=5,
        mb=100,
        step_seconds=0.3,
    )

    # Then the run resumes from a whole checkpoint (the script checks every byte) and finishes:
    # never agent-failed on a hash mismatch, never a torn file
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert end_reasons(outcome)[0] is EndReason.INSTANCE_LOST
    second = run.stdout(outcome.run_id, 2)
    resumed = re.search(r"resumed at step (\d+)", second)
    assert resumed, second[-2000:]
    step = int(resumed.group(1))
    assert step > 0 and step % 5 == 0
    assert run.steps(outcome.run_id, 2)[0] == step + 1
    facts = outcome.record.checkpoints["2"]["resumed_from"]
    assert facts["name"] == "checkpoint.pt" and facts["step"] is None  # no step in it to read
    # And attempt 1's durable version was never overwritten: each version has its own key
    run.assert_no_instance_left(outcome.run_id)


def test_a_script_that_renames_faster_than_a_scan_and_ignores_sigterm_resumes_from_its_newest(
    fault_session, tmp_path
):
    # Given a script that saves by rename every 0.5 s and ignores SIGTERM, interrupted mid-run
    run = ScriptRun(fault_session, tmp_path, RENAME_SCRIPT)
    run.interruptions = {"grace_seconds": 5}
    outcome = run.run(
        [Fault("interrupt", 0, when_upload="/state-00006.json")], steps=40, step_seconds=0.5
    )

    # Then the agent SIGKILLs it after the grace, and the next attempt resumes from the newest
    # checkpoint it had renamed into place before the kill: no step saved by attempt 1 is lost
    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert end_reasons(outcome)[0] is EndReason.SPOT_INTERRUPTED
    saved = [int(step) for step in re.findall(r"saved (\d+)", run.stdout(outcome.run_id, 1))]
    assert saved and max(saved) >= 6
    assert run.steps(outcome.run_id, 2)[0] == max(saved) + 1
    handed = run.handoff(outcome.run_id, 1)["checkpoint"]
    assert (handed["name"], handed["step"]) == (f"state-{max(saved):05d}.json", max(saved))
    # And retention kept the newest three versions in S3 (the rest were deleted once replaced)
    manifest = json.loads(
        fault_session.s3.get_object(
            Bucket=fault_session.stack.bucket, Key=f"runs/{outcome.run_id}/checkpoints/latest.json"
        )["Body"].read()
    )
    names = [item["name"] for item in manifest["checkpoints"]]
    assert names == ["state-00040.json", "state-00039.json", "state-00038.json"]
    listed = fault_session.s3.list_objects_v2(
        Bucket=fault_session.stack.bucket, Prefix=f"runs/{outcome.run_id}/checkpoints/v/"
    )["Contents"]
    assert sorted(item["Key"].rsplit("/", 1)[1] for item in listed) == sorted(names)
    run.assert_no_instance_left(outcome.run_id)

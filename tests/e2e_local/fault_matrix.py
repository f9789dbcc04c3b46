"""The fault matrix's run: a script that counts steps and checkpoints, started through TrainRun
with faults, and what to read back (steps per attempt, handoffs, logs). Its fixtures
(`fault_session`, `faults`) are in conftest.py; the tests are in test_interruptions.py and
test_interruption_stages.py (two modules, so the two xdist workers share them)."""

from __future__ import annotations

import json
from pathlib import Path

from lambdas.constants import attempt_prefix, handoff_key, log_stream_name
from runctl.local.deploy import LocalSettings
from runctl.local.faults import Fault
from runctl.local.session import LocalSession, RunOutcome
from runctl.packaging import package_directory

# Faults fire when training reaches a point (a checkpoint's upload begins), not at a clock time,
# so a loaded machine cannot move them into the boot. An upload begins up to ~4 s (80 steps)
# after its checkpoint is written, and a notice takes up to ~3 s more to stop the script: so
# attempt 1 stops before step ~170, and a second fault at 250 lands on attempt 2, well before
# the script's end at 400 (a notice after the script exited rightly changes nothing).
AT_STEP_30 = "/ckpt-00030.json"
AT_STEP_250 = "/ckpt-00250.json"

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


def end_reasons(outcome: RunOutcome) -> list[str | None]:
    attempts = outcome.record.attempts
    return [attempts[str(n)].end_reason for n in sorted(map(int, attempts))]

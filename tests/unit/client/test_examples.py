"""The examples honour the script contract: metrics, whole checkpoints, resume, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _env(tmp_path: Path, hparams: dict, resume_from: Path | None = None) -> dict[str, str]:
    for name in ("ckpt", "out"):
        (tmp_path / name).mkdir(exist_ok=True)
    env = {
        **os.environ,
        "RUNCTL_HPARAMS": json.dumps(hparams),
        "RUNCTL_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "RUNCTL_OUTPUT_DIR": str(tmp_path / "out"),
    }
    if resume_from is not None:
        env["RUNCTL_RESUME_FROM"] = str(resume_from)
    return env


def _metric_steps(stdout: str) -> list[int]:
    prefix = "RUNCTL_METRIC "
    return [
        json.loads(line[len(prefix) :])["step"]
        for line in stdout.splitlines()
        if line.startswith(prefix)
    ]


@pytest.mark.parametrize(
    ("script", "suffix"), [("train_tiny.py", ".npz"), ("train_torch.py", ".pt")]
)
def test_example_trains_checkpoints_and_resumes_where_it_left_off(tmp_path, script, suffix):
    # Given a first run of 40 steps with a checkpoint every 10
    hparams = {"steps": 40, "checkpoint_every": 10, "step_seconds": 0}
    first = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=_env(tmp_path, hparams),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    checkpoints = sorted((tmp_path / "ckpt").iterdir())
    assert [p.name for p in checkpoints] == [
        f"ckpt-{step:06d}{suffix}" for step in (10, 20, 30, 40)
    ]

    # When it is resumed from step 20 with 40 steps to do
    resumed = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=_env(tmp_path, hparams, resume_from=checkpoints[1]),
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then it continues from step 21, repeating none of the steps before
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert min(_metric_steps(resumed.stdout)) > 20
    assert max(_metric_steps(resumed.stdout)) == 40


@pytest.mark.parametrize("script", ["train_tiny.py", "train_torch.py"])
def test_example_checkpoints_on_sigterm_and_exits_143(tmp_path, script):
    # Given a long run
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / script)],
        env=_env(tmp_path, {"steps": 100000, "checkpoint_every": 100000, "step_seconds": 0.01}),
        stdout=subprocess.PIPE,
        text=True,
    )
    # When it has started training (its first metric line), it gets SIGTERM
    deadline = time.monotonic() + 60
    for line in process.stdout:
        if line.startswith("RUNCTL_METRIC") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[0]

    # Then it wrote a whole checkpoint of where it was and exited 143
    assert process.returncode == 143
    assert "SIGTERM: checkpointed step" in rest
    written = [p for p in (tmp_path / "ckpt").iterdir() if not p.name.startswith(".")]
    assert len(written) == 1

"""The Hugging Face and Lightning examples, through runctl_helper: metric lines, a checkpoint saved
on SIGTERM, and a resumed run that carries on from the step after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from instance_agent.metrics import parse_metric_line
from instance_agent.script import SCRIPT_PATH_DIR

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# Never reached: the first run only ends by SIGTERM.
FOREVER = 100_000


def _env(tmp_path: Path, hparams: dict, resume_from: Path | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SCRIPT_PATH_DIR),  # as the agent sets it (instance_agent/script.py)
        "RUNCTL_HPARAMS": json.dumps(hparams),
        "RUNCTL_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "RUNCTL_OUTPUT_DIR": str(tmp_path / "out"),
        # Tiny models: a second thread only contends with the other tests for the cores.
        "OMP_NUM_THREADS": "1",
    }
    env.pop("RUNCTL_RESUME_FROM", None)
    if resume_from is not None:
        env["RUNCTL_RESUME_FROM"] = str(resume_from)
    return env


def _metrics(stdout: str) -> list[dict[str, Any]]:
    parsed = (parse_metric_line(line) for line in stdout.splitlines())
    return [metric for metric in parsed if metric is not None]


def _sigterm_after_step(
    script: str, env: dict[str, str], tmp_path: Path, step: int
) -> tuple[int, list[dict[str, Any]], str]:
    """Run the example and SIGTERM it as soon as it printed the metric line of `step`: its exit
    code, every metric line it printed, its stderr."""
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line)
            metric = parse_metric_line(line.rstrip("\n"))
            if metric is not None and metric.get("step", 0) >= step:
                process.send_signal(signal.SIGTERM)
                break
        printed.append(process.communicate(timeout=120)[0])
        stderr.seek(0)
        return process.returncode, _metrics("".join(printed)), stderr.read()


def _resume(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_hf_trainer_saves_a_checkpoint_folder_on_sigterm_and_resumes_after_it(tmp_path):
    # Given a Trainer run saving every 10 steps, SIGTERMed once it logged step 12
    hparams = {"steps": FOREVER, "save_every": 10, "log_every": 1}
    code, metrics, stderr = _sigterm_after_step(
        "hf/train.py", _env(tmp_path, hparams), tmp_path, 12
    )

    # Then it saved checkpoint-N for the step it stopped at, and exited 143
    assert code == 143, stderr
    stopped_at = max(metric["step"] for metric in metrics)
    newest = max((tmp_path / "ckpt").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert newest.name == f"checkpoint-{stopped_at}"
    state = json.loads((newest / "trainer_state.json").read_text())
    assert state["global_step"] == stopped_at >= 12
    # The save was the SIGTERM's: a regular one records a Trainer that goes on
    assert state["stateful_callbacks"]["TrainerControl"]["args"]["should_training_stop"] is True

    # When it is run again from that folder, for three more steps
    hparams["steps"] = stopped_at + 3
    resumed = _resume("hf/train.py", _env(tmp_path, hparams, resume_from=newest))

    # Then it trains those three steps only, and saves the model
    assert resumed.returncode == 0, resumed.stderr
    trained = [metric["step"] for metric in _metrics(resumed.stdout) if "loss" in metric]
    assert trained == [stopped_at + 1, stopped_at + 2, stopped_at + 3]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_lightning_saves_a_checkpoint_on_sigterm_and_resumes_after_it(tmp_path):
    import torch  # only here: collecting the other tests need not pay for it

    # Given a Lightning run saving every 10 steps, SIGTERMed once it logged step 12
    hparams = {"steps": FOREVER, "save_every": 10, "log_every": 1}
    code, metrics, stderr = _sigterm_after_step(
        "lightning/train.py", _env(tmp_path, hparams), tmp_path, 12
    )

    # Then OnExceptionCheckpoint saved the step it stopped at, and it exited 143
    assert code == 143, stderr
    stopped_at = max(metric["step"] for metric in metrics)
    interrupted = tmp_path / "ckpt" / "interrupted.ckpt"
    assert torch.load(interrupted, weights_only=True)["global_step"] == stopped_at >= 12

    # When it is run again from that file, for three more steps
    hparams["steps"] = stopped_at + 3
    resumed = _resume("lightning/train.py", _env(tmp_path, hparams, resume_from=interrupted))

    # Then it trains those three steps only, and saves the model
    assert resumed.returncode == 0, resumed.stderr
    assert [metric["step"] for metric in _metrics(resumed.stdout)] == [
        stopped_at + 1,
        stopped_at + 2,
        stopped_at + 3,
    ]
    assert (tmp_path / "out" / "model.ckpt").is_file()

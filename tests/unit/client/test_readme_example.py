"""The README's example script honours the contract it documents (so the docs cannot rot)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def _example_script() -> str:
    text = README.read_text()
    section = text[text.index("## The script contract") :]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def _run(
    tmp_path: Path, hparams: dict, resume_from: Path | None = None
) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(_example_script())
    env = {
        **os.environ,
        "RUNCTL_HPARAMS": json.dumps(hparams),
        "RUNCTL_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "RUNCTL_OUTPUT_DIR": str(tmp_path / "out"),
    }
    if resume_from:
        env["RUNCTL_RESUME_FROM"] = str(resume_from)
    (tmp_path / "ckpt").mkdir(exist_ok=True)
    (tmp_path / "out").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )


def test_readme_example_checkpoints_reports_metrics_and_writes_outputs(tmp_path):
    done = _run(tmp_path, {"steps": 20, "lr": 0.5})

    assert done.returncode == 0, done.stderr
    metrics = [line for line in done.stdout.splitlines() if line.startswith("RUNCTL_METRIC ")]
    assert len(metrics) == 20
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step-10.json", "step-20.json"]
    assert json.loads((tmp_path / "out" / "model.json").read_text()) == {"step": 20, "w": 10.0}


def test_readme_example_resumes_from_a_checkpoint(tmp_path):
    (tmp_path / "ckpt").mkdir()
    checkpoint = tmp_path / "ckpt" / "step-10.json"
    checkpoint.write_text(json.dumps({"step": 10, "w": 5.0}))

    done = _run(tmp_path, {"steps": 12, "lr": 0.5}, resume_from=checkpoint)

    first_metric = json.loads(done.stdout.splitlines()[0].removeprefix("RUNCTL_METRIC "))
    assert first_metric == {"step": 11, "w": 5.5}
    assert json.loads((tmp_path / "out" / "model.json").read_text()) == {"step": 12, "w": 6.0}

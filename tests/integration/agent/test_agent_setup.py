"""The agent's set-up phases against moto: the GPU check on GPU instance types, the script's
environment from requirements.txt, and what is recorded (result.json, setup.<attempt>)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from instance_agent.environment import ImagePython, cache_key
from runctl.local.imds import LocalImds

UV = str(Path(sys.executable).parent / "uv")
SCRIPT = "import pathlib; pathlib.Path('ran').write_text('yes')\n"
GPU_IMAGE = {
    "name": "dlami-pytorch",
    "interpreter": sys.executable,
    "architecture": "x86_64",
    "layered": True,
    "nvidia_gpus": 1,
}
PLAIN_IMAGE = {**GPU_IMAGE, "name": "al2023", "layered": False, "nvidia_gpus": 0}


def _fake_nvidia_smi(folder: Path, broken: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = (
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the driver." >&2\n'
        "exit 9\n"
        if broken
        else 'case "$*" in *--query-gpu*) echo "NVIDIA A10G, 570.86.15";;\n'
        '  *) echo "| NVIDIA-SMI 570.86.15   Driver Version: 570.86.15   CUDA Version: 12.8 |";;\n'
        "esac\n"
    )
    tool = folder / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)


@pytest.fixture
def gpu_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def install(broken: bool) -> None:
        _fake_nvidia_smi(tmp_path / "gpu-bin", broken)
        monkeypatch.setenv("PATH", f"{tmp_path / 'gpu-bin'}{os.pathsep}{os.environ['PATH']}")

    return install


def _script_ran(harness: Any) -> bool:
    return any(harness.home.rglob("code/ran"))


def test_given_a_gpu_type_whose_driver_fails_then_gpu_unavailable_and_no_script(harness, gpu_tool):
    gpu_tool(broken=True)
    spec = harness.spec(SCRIPT)

    result = harness.run(harness.write_config(spec, image=GPU_IMAGE))

    assert result.outcome == "gpu-unavailable"
    assert result.message.startswith("nvidia-smi failed (exit 9): NVIDIA-SMI has failed")
    assert harness.sfn.named("failure")[0]["error"] == "Runctl.GpuUnavailable"
    assert not _script_ran(harness)


def test_given_a_working_gpu_then_it_is_recorded_with_the_environment_phase(harness, gpu_tool):
    gpu_tool(broken=False)
    spec = harness.spec(SCRIPT)

    result = harness.run(harness.write_config(spec, image=GPU_IMAGE))

    assert result.outcome == "succeeded", result.message
    assert result.gpu == {
        "driver_version": "570.86.15",
        "cuda_version": "12.8",
        "gpus": ["NVIDIA A10G"],
    }
    assert result.environment is not None and result.environment["action"] == "none"
    setup = harness.run_item()["setup"]["M"]["1"]["M"]
    assert setup["gpu"]["M"]["gpus"] == {"L": [{"S": "NVIDIA A10G"}]}
    assert setup["environment"]["M"]["action"] == {"S": "none"}
    assert _script_ran(harness)


def test_given_a_requirement_that_does_not_exist_then_environment_failed_with_the_installer_line(
    harness, monkeypatch
):
    monkeypatch.setenv("RUNCTL_UV", UV)
    uri, digest = harness.upload_code(
        {"train.py": SCRIPT, "requirements.txt": "no-such-package-runctl-test==0.0.1\n"}
    )
    spec = {**harness.spec(SCRIPT), "code": {"s3_uri": uri, "sha256": digest}}

    result = harness.run(harness.write_config(spec, image=PLAIN_IMAGE))

    assert result.outcome == "environment-failed"
    assert result.message.startswith("uv: error: No solution found")
    assert "no-such-package-runctl-test" in result.message
    assert harness.sfn.named("failure")[0]["error"] == "Runctl.EnvironmentFailed"
    log = harness.get_text(f"runs/{harness.run_id}/attempts/1/logs/environment.log")
    assert "no-such-package-runctl-test" in log
    assert not _script_ran(harness)


def test_a_notice_during_the_install_kills_the_installer_and_hands_off(
    harness, monkeypatch, tmp_path
):
    # Given an installer that is still busy when the spot warning comes (it writes the notice the
    # way OnInstanceEvent would, then blocks until it is killed)
    notice = {
        "kind": "spot-interrupted",
        "notice_time": "2026-12-03T10:00:00+00:00",
        "termination_time": "2099-01-01T00:00:00+00:00",
        "source": "eventbridge",
    }
    pid_file = tmp_path / "installer.pid"
    busy = tmp_path / "busy-uv"
    busy.write_text(
        "#!/bin/sh\n"
        f"echo $$ > {pid_file}\n"
        f"echo '{json.dumps(notice)}' > {harness.home / 'notice.json'}\n"
        "exec sleep 600\n"
    )
    busy.chmod(0o755)
    monkeypatch.setenv("RUNCTL_UV", str(busy))
    uri, digest = harness.upload_code({"train.py": SCRIPT, "requirements.txt": "anything==1.0\n"})
    spec = {**harness.spec(SCRIPT), "code": {"s3_uri": uri, "sha256": digest}}

    # When the attempt runs
    result = harness.run(harness.write_config(spec, image=PLAIN_IMAGE))

    # Then it ends interrupted and hands off, the task failed once with Runctl.Interrupted, the
    # script never ran, the installer is gone and no half-built environment is left
    assert result.outcome == "interrupted", result.message
    run = f"runs/{harness.run_id}/attempts/1/"
    assert harness.get_json(run + "handoff.json")["reason"] == "spot-interrupted"
    assert [f["error"] for f in harness.sfn.named("failure")] == ["Runctl.Interrupted"]
    assert not _script_ran(harness)
    installer = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(installer, 0)
    assert not any((harness.home / "envs").glob("*/bin"))


@pytest.mark.parametrize("ami_id", ["ami-0123456789abcdef0", None], ids=["imds-says", "no-imds"])
def test_the_environment_is_keyed_by_the_ami_imds_gives_and_built_without_one(
    harness, monkeypatch, ami_id
):
    # Given local mode's IMDS with the instance's AMI id (or no IMDS at all: port 9 refuses),
    # and requirements that name nothing to fetch
    imds = LocalImds({"ami-id": ami_id} if ami_id else {}).start()
    if ami_id:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
    monkeypatch.setenv("RUNCTL_UV", UV)
    requirements = "# nothing to install\n"
    uri, digest = harness.upload_code({"train.py": SCRIPT, "requirements.txt": requirements})
    spec = {**harness.spec(SCRIPT), "code": {"s3_uri": uri, "sha256": digest}}

    # When the attempt runs
    try:
        result = harness.run(harness.write_config(spec, image=PLAIN_IMAGE))
    finally:
        imds.stop()

    # Then it succeeds either way, its environment's key carrying the AMI id when IMDS gave one
    assert result.outcome == "succeeded", result.message
    image = ImagePython("al2023", sys.executable, "x86_64", layered=False, ami_id=ami_id)
    assert result.environment is not None
    assert result.environment["action"] == "installed"
    assert result.environment["cache_key"] == cache_key(
        requirements.encode(), image, sys.version, "uv"
    )
    assert _script_ran(harness)

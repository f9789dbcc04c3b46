"""`runctl local run SCRIPT --build DOCKERFILE` as README documents it (issue #12): the example
script in the example's local image (the interruption inside a container: test_containers.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lambdas.models.run_record import RunStatus
from runctl.local.container_engine import engine_problem
from runctl.local.history import LocalHistory
from tests.e2e_local.conftest import EXAMPLES, QUICK, invoke_cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_cli_containers")]


def test_local_run_with_build_builds_the_image_and_runs_the_example_in_it(project: Path):
    assert engine_problem() is None, "this test needs the Docker engine: make container-engine"
    # Given the documented local command: the example script and the example's local Dockerfile
    (project / "env").mkdir()
    dockerfile = (EXAMPLES / "container" / "Dockerfile.local").read_text()
    (project / "env" / "Dockerfile").write_text(dockerfile)
    work_dir = project / ".runctl-local"

    # When it runs
    output = invoke_cli(
        "local",
        "--work-dir",
        str(work_dir),
        "run",
        "train_tiny.py",
        "--build",
        "env/Dockerfile",
        "--build-arg",
        "GREETING=hello from a build arg",
        *QUICK,
    )

    # Then the image was built (its lines followed before the run's) and the run succeeded in it
    assert "Successfully tagged" in output
    assert output.index("Successfully tagged") < output.index("status LAUNCHING")
    run_id = re.search(r"started run (run-\S+)", output).group(1)  # type: ignore[union-attr]
    record = LocalHistory(work_dir).get(run_id)
    assert record is not None and record.status is RunStatus.SUCCEEDED
    phase = record.setup["1"]["environment"]
    assert phase["action"] == "container"
    assert record.image is not None and phase["image"] == record.image.uri
    assert record.spec["container"]["build"]["args"] == {"GREETING": "hello from a build arg"}

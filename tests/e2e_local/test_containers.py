"""Container runs end to end in local mode (issue #12), with this machine's real Docker engine:
the image is built by the local stand-in for CodeBuild from an uploaded context and the local
instance runs the script in it exactly as the agent does on EC2."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lambdas.constants import log_stream_name, outputs_prefix
from lambdas.models.run_record import EndReason, RunStatus
from lambdas.models.run_spec import RunSpec
from runctl.client.follow import build_stream_name
from runctl.local.container_engine import engine_problem
from runctl.local.faults import Fault
from runctl.local.session import LocalSession
from runctl.packaging import package_build_context
from tests.e2e_local.conftest import EXAMPLES, ScriptRunner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_containers")]

BASE_IMAGE = "runctl-local/python:bookworm"
HOSTILE_ARGS = ["a b", "$(id)", "'; rm -rf / #", "--rm", "ünï"]

CONTRACT_SCRIPT = """
    import json, os, pathlib, sys
    out = pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"])
    seen = {
        "argv": sys.argv[1:],
        "marker": pathlib.Path("/etc/runctl-marker").read_text().strip(),
        "in_container": pathlib.Path("/.dockerenv").exists(),
        "cwd": os.getcwd(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("RUNCTL_") or k == "WHO"},
        "dirs_exist": all(
            pathlib.Path(os.environ[name]).is_dir()
            for name in ("RUNCTL_CHECKPOINT_DIR", "RUNCTL_DATA_DIR", "RUNCTL_OUTPUT_DIR")
        ),
        "host_path_leaked": "/.venv/" in os.environ.get("PATH", ""),
    }
    import runctl_helper  # the helper is on PYTHONPATH inside the container too
    (out / "seen.json").write_text(json.dumps(seen))
    for step in (1, 2):
        print("RUNCTL_METRIC " + json.dumps({"step": step, "loss": 1.0 / step}), flush=True)
"""

DOCKERFILE = f"""
FROM {BASE_IMAGE}
ARG MARKER
RUN printf '%s\\n' "$MARKER" > /etc/runctl-marker
"""


@pytest.fixture(scope="module")
def engine() -> None:
    problem = engine_problem()
    assert problem is None, f"these tests need the Docker engine (make container-engine): {problem}"


class ContainerRunner(ScriptRunner):
    def log_text(self, run_id: str, attempt: int) -> str:
        """The attempt's log stream: the script's output and the agent's own records."""
        events = self.session.logs.get_log_events(
            logGroupName=self.session.stack.log_group,
            logStreamName=log_stream_name(run_id, attempt),
            startFromHead=True,
        )["events"]
        return "\n".join(event["message"] for event in events)

    def context(self, dockerfile: str, name: str = "env") -> dict[str, Any]:
        """A build context with this Dockerfile, uploaded; the RunSpec's context."""
        folder = self.tmp_path / name
        folder.mkdir(exist_ok=True)
        (folder / "Dockerfile").write_text(dockerfile)
        package = package_build_context(folder, "Dockerfile")
        uri, _ = self.session.upload_code(package)
        return {"s3_uri": uri, "sha256": package.sha256}


@pytest.fixture
def containers(local_session: LocalSession, tmp_path: Path, engine: None) -> ContainerRunner:
    return ContainerRunner(local_session, tmp_path)


def _build_lines(runner: ContainerRunner, image_uri: str, build_id: str) -> list[str]:
    session = runner.session
    stream = build_stream_name(image_uri, build_id)
    events = session.logs.get_log_events(
        logGroupName=session.stack.log_group, logStreamName=stream, startFromHead=True
    )["events"]
    return [event["message"] for event in events]


def test_a_built_image_runs_the_script_with_the_contract_intact_and_is_not_built_twice(
    containers: ContainerRunner,
):
    # Given a Dockerfile whose build argument ends up in the image, and a script that reports
    # what it sees from inside the container
    marker = "made by the build: $(id) 'quoted'"
    build = {
        "context": containers.context(DOCKERFILE),
        "args": {"MARKER": marker},
    }
    spec = containers.spec(
        CONTRACT_SCRIPT,
        args=HOSTILE_ARGS,
        environment={"WHO": "user value; $(not run)"},
        hyperparameters={"lr": 0.1},
        container={"build": build},
    )
    builds_before = containers.session.emulator.image_builds.docker_builds_started()

    # When it runs
    outcome = containers.run_spec(spec)

    # Then it succeeded in the image the build made, with the contract as outside a container
    record = outcome.record
    assert outcome.execution_status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert record.status is RunStatus.SUCCEEDED
    seen = json.loads(containers.s3_text(outputs_prefix(outcome.run_id) + "seen.json"))
    assert seen["argv"] == HOSTILE_ARGS
    assert seen["marker"] == marker
    assert seen["in_container"] is True
    assert seen["dirs_exist"] is True
    assert seen["host_path_leaked"] is False
    assert seen["env"]["WHO"] == "user value; $(not run)"
    assert seen["env"]["RUNCTL_RUN_ID"] == outcome.run_id
    assert json.loads(seen["env"]["RUNCTL_HPARAMS"]) == {"lr": 0.1}
    assert seen["cwd"].endswith("/code")
    assert record.final_metrics == {"step": 2, "loss": 0.5}
    # And one image was built, tagged with the hash of its inputs, and recorded with its digest
    assert containers.session.emulator.image_builds.docker_builds_started() == builds_before + 1
    image = record.image
    assert image is not None and image.build_id is not None
    tag = RunSpec.model_validate(record.spec).container.build.tag  # type: ignore[union-attr]
    assert image.uri == f"{containers.session.stack.image_repository_uri}:{tag}"
    phase = record.setup["1"]["environment"]
    assert phase["action"] == "container"
    assert phase["image"] == image.uri
    assert phase["digest"].startswith("sha256:")
    # And the build's output is in its log stream, which the run's follower showed first
    assert any(
        "Step 3/3" in line or "RUN printf" in line
        for line in _build_lines(containers, image.uri, image.build_id)
    )
    logs = [e.text for e in containers.events if e.kind == "log"]
    assert any("RUN printf" in line for line in logs)
    # And no container is left
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=runctl-{outcome.run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == ""

    # When the same context runs again (another run, other args)
    again = containers.run_spec({**spec, "args": ["again"]})

    # Then nothing is built: the image is found under its tag, and the same image runs
    assert again.record.status is RunStatus.SUCCEEDED
    assert containers.session.emulator.image_builds.docker_builds_started() == builds_before + 1
    assert again.record.image.build_id is None
    assert again.record.image.uri == image.uri
    assert again.record.setup["1"]["environment"]["digest"] == phase["digest"]


def test_a_failing_build_ends_the_run_environment_failed_before_any_instance(
    containers: ContainerRunner,
):
    context = containers.context(
        f"FROM {BASE_IMAGE}\nRUN echo 'no such package: torch-nope' >&2 && false\n", "bad"
    )
    spec = containers.spec("print('never')\n", container={"build": {"context": context}})

    outcome = containers.run_spec(spec)

    record = outcome.record
    assert outcome.execution_status == "FAILED"
    assert record.status is RunStatus.FAILED
    assert record.end_reason is EndReason.ENVIRONMENT_FAILED
    assert "no such package: torch-nope" in (record.error or "")
    assert "returned a non-zero code" in (record.error or "")
    assert record.attempts == {}  # nothing was launched
    assert containers.session.run_instance_ids(outcome.run_id) == set()


def test_an_interruption_reaches_the_script_in_its_container_and_the_run_resumes_in_the_same_image(
    containers: ContainerRunner,
):
    # Given the example script in the example's local image (Debian's Python and NumPy)
    dockerfile = (EXAMPLES / "container" / "Dockerfile.local").read_text()
    project = containers.tmp_path / "project"
    project.mkdir(exist_ok=True)
    source = (EXAMPLES / "train_tiny.py").read_text()
    spec = containers.spec(
        source,
        hyperparameters={"steps": 400, "step_seconds": 0.02, "checkpoint_every": 50},
        container={"build": {"context": containers.context(dockerfile)}},
    )

    # When a spot warning comes two seconds into training
    run_id = containers.session.start(spec, faults=[Fault("interrupt", 2, when_status="RUNNING")])
    outcome = containers.session.wait(run_id, timeout_seconds=240)

    # Then the script got SIGTERM inside the container and checkpointed, and attempt 2 resumed
    # from that checkpoint, in the same image
    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, (outcome.error, outcome.cause)
    assert record.attempts["1"].end_reason is EndReason.SPOT_INTERRUPTED
    said = re.findall(r"SIGTERM: checkpointed step (\d+)", containers.log_text(run_id, 1))
    resumed = re.search(
        r"resuming from checkpoint \S+ \(step (\d+)", containers.log_text(run_id, 2)
    )
    assert said and int(said[-1]) > 0
    assert resumed is not None and resumed.group(1) == said[-1]
    first, second = (record.setup[n]["environment"] for n in ("1", "2"))
    assert first["action"] == second["action"] == "container"
    assert (first["image"], first["digest"]) == (second["image"], second["digest"])
    assert second["pulled"] is False  # the content-tagged image was there: nothing pulled


def test_a_given_image_runs_the_script_and_one_without_its_interpreter_ends_environment_failed(
    containers: ContainerRunner,
):
    # Given an image named by the RunSpec (not built): the engine has it, no registry answers
    script = "import numpy\nprint('RUNCTL_METRIC {\"numpy\": 1}')\n"
    ran = containers.run_spec(containers.spec(script, container={"image": BASE_IMAGE}))

    # Then it ran in that image (its pull failed, so the copy on the instance was used)
    assert ran.record.status is RunStatus.SUCCEEDED, (ran.error, ran.cause)
    assert ran.record.final_metrics == {"numpy": 1}
    phase = ran.record.setup["1"]["environment"]
    assert (phase["image"], phase["pulled"]) == (BASE_IMAGE, False)
    assert ran.record.image is None  # nothing was built

    # When the RunSpec names an interpreter the image does not have
    failed = containers.run_spec(
        containers.spec(script, container={"image": BASE_IMAGE}, interpreter="python9")
    )

    # Then docker's failure is told apart from the script's: environment-failed, not retried
    assert failed.record.status is RunStatus.FAILED
    assert failed.record.end_reason is EndReason.ENVIRONMENT_FAILED
    assert "docker could not run the script in its image (exit code 127)" in (
        failed.record.error or ""
    )
    assert "python9" in (failed.record.stderr_tail or "")
    assert list(failed.record.attempts) == ["1"]


def _containers_of(run_id: str) -> list[str]:
    """Every container (running or not) of the run, by the agent's label."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=runctl.run-id={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


# Attempt 1 runs long and touches no file (so losing the run directory does not end it too);
# attempt 2 ends at once.
LONG_FIRST_ATTEMPT = """
    import os, time
    print("started", flush=True)
    if os.environ["RUNCTL_ATTEMPT"] == "1":
        time.sleep(120)
"""


def test_a_lost_instance_takes_its_container_with_it_and_the_run_resumes(
    containers: ContainerRunner, wait_for_record
):
    # Given a container run whose first attempt would go on for two minutes
    spec = containers.spec(LONG_FIRST_ATTEMPT, container={"image": BASE_IMAGE})

    # When its instance is lost without a warning a second into the script
    run_id = containers.session.start(spec, faults=[Fault("kill", 1, when_status="RUNNING")])
    wait_for_record(containers.session, run_id, lambda record: record.attempt == 2)

    # Then attempt 1's container went with its instance (as on EC2), and attempt 2 ran
    labels = [
        subprocess.run(
            ["docker", "inspect", "-f", '{{index .Config.Labels "runctl.attempt"}}', cid],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        for cid in _containers_of(run_id)
    ]
    assert "1" not in labels
    outcome = containers.session.wait(run_id, timeout_seconds=240)
    assert outcome.record.status is RunStatus.SUCCEEDED, (outcome.error, outcome.cause)
    assert outcome.record.attempts["1"].end_reason is EndReason.INSTANCE_LOST
    assert _containers_of(run_id) == []

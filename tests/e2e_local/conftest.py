"""Whole runs in local mode: one emulated deployment per test module, real agent processes."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lambdas.constants import attempt_prefix, checkpoint_manifest_key
from lambdas.models.run_record import RunRecord
from runctl.cli import app
from runctl.local.deploy import LocalSettings
from runctl.local.session import LocalSession, RunEvent, RunOutcome
from runctl.packaging import package_directory
from tests.conftest import wide_console
from tests.e2e_local.fault_matrix import FAULT_SETTINGS, FaultRun

# Quick polls; lost instances are noticed by their state-change event, so the heartbeat (the
# backstop) can allow for an agent slowed by a loaded machine.
E2E_SETTINGS = LocalSettings(poll_seconds=1, heartbeat_seconds=60)
# Each module is an xdist group of its own (`pytestmark`): a group runs whole on one worker, so a
# module's LocalSession never shares a process with another's (moto's backends are
# process-wide), and the two workers share the modules between them.
# Whole runs and sweeps, with their module's session set up first: the hang guard for e2e tests
# (pyproject's 300 s) must exceed the longest wait a test allows itself (280 s) plus that setup.
E2E_TIMEOUT_SECONDS = 600
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The stack name the CLI looks for by default (cdk.json's runctl:stackName).
STACK = "Runctl"
# Few, quick steps of examples/train_tiny.py: each run takes a few seconds.
QUICK = ["--hp", "steps=15", "--hp", "step_seconds=0"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_SECONDS))


@pytest.fixture(scope="module")
def local_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSession]:
    with LocalSession(tmp_path_factory.mktemp("runctl-local"), E2E_SETTINGS) as session:
        yield session


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSession]:
    """A local deployment registered as the stack STACK: the CLI's cloud commands find it
    through DescribeStacks (the emulator's AWS_ENDPOINT_URL is in the environment)."""
    with LocalSession(tmp_path_factory.mktemp("runctl-cloud"), E2E_SETTINGS) as session:
        session.publish_stack_outputs(STACK)
        yield session


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """examples/train_tiny.py in a project folder of its own, the working directory."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(EXAMPLES / "train_tiny.py", root / "train_tiny.py")
    monkeypatch.chdir(root)
    return root


class ScriptRunner:
    """Given a script's source, package it, run it through TrainRun and return the outcome."""

    def __init__(self, session: LocalSession, tmp_path: Path) -> None:
        self.session = session
        self.tmp_path = tmp_path
        self.events: list[RunEvent] = []

    def spec(
        self, source: str, files: dict[str, str] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """`files`: more of the project's files (requirements.txt, ...) by name."""
        project = self.tmp_path / "project"
        project.mkdir(exist_ok=True)
        (project / "train.py").write_text(textwrap.dedent(source))
        for name, text in (files or {}).items():
            (project / name).write_text(text)
        package = package_directory(project)
        code_uri, _ = self.session.upload_code(package)
        return {
            "code": {"s3_uri": code_uri, "sha256": package.sha256},
            "entry_point": "train.py",
            **fields,
        }

    def run(self, source: str, **fields: Any) -> RunOutcome:
        return self.run_spec(self.spec(source, **fields))

    def run_spec(self, spec: dict[str, Any]) -> RunOutcome:
        run_id = self.session.start(spec)
        return self.session.wait(run_id, on_event=self.events.append, timeout_seconds=240)

    def s3_text(self, key: str) -> str:
        body = self.session.s3.get_object(Bucket=self.session.stack.bucket, Key=key)["Body"]
        return body.read().decode()

    def s3_keys(self, prefix: str) -> list[str]:
        listed = self.session.s3.list_objects_v2(Bucket=self.session.stack.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))


@pytest.fixture
def runner(local_session: LocalSession, tmp_path: Path) -> ScriptRunner:
    return ScriptRunner(local_session, tmp_path)


RecordWaiter = Callable[[LocalSession, str, Callable[[RunRecord], bool]], RunRecord]


@pytest.fixture
def wait_for_record() -> RecordWaiter:
    """Polls a run's record until `condition` holds (a deadline, not a sleep, synchronises)."""

    def wait(
        session: LocalSession, run_id: str, condition: Callable[[RunRecord], bool]
    ) -> RunRecord:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            record = session.table.get(run_id)
            if record is not None and condition(record):
                return record
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} never reached the expected state")

    return wait


def invoke_cli(*args: str, exit_code: int = 0) -> str:
    """`runctl ARGS` as a user types it, on a wide terminal; its output, or the failure with its
    traceback when it did not exit with `exit_code`."""
    with wide_console():
        result = CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args))
    assert result.exit_code == exit_code, (
        result.output,
        "".join(traceback.format_exception(result.exception)) if result.exception else "",
    )
    return result.output


def assert_checkpointed_on_sigterm(session: LocalSession, run_id: str) -> None:
    """The run was stopped gracefully: the checkpoint train_tiny.py writes on SIGTERM (at any
    step, not only every checkpoint_every) is the newest one in S3."""
    bucket = session.stack.bucket
    log = session.s3.get_object(Bucket=bucket, Key=attempt_prefix(run_id, 1) + "logs/stdout.log")
    said = re.findall(r"SIGTERM: checkpointed step (\d+)", log["Body"].read().decode())
    manifest = session.s3.get_object(Bucket=bucket, Key=checkpoint_manifest_key(run_id))
    assert said, "the script never got SIGTERM"
    assert json.loads(manifest["Body"].read())["checkpoints"][0]["step"] == int(said[-1]) > 0


@pytest.fixture(scope="module")
def fault_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSession]:
    """The fault matrix's session (a shorter spot notice: fault_matrix.FAULT_SETTINGS)."""
    with LocalSession(tmp_path_factory.mktemp("runctl-faults"), FAULT_SETTINGS) as session:
        yield session


@pytest.fixture
def faults(fault_session: LocalSession, tmp_path: Path) -> FaultRun:
    return FaultRun(fault_session, tmp_path)

"""The script's environment in whole local runs: built from requirements.txt over the image's
Python (uv over AL2023's stand-in, pip over the DLAMI's), isolated from runctl's own packages,
cached for the next attempt, and named failures (environment-failed) for what cannot work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdas.models.run_record import EndReason, RunStatus
from runctl.local.faults import Fault
from runctl.local.session import LocalSession
from tests.e2e_local.conftest import E2E_SETTINGS, ScriptRunner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_environments")]

# A small pure-Python package from PyPI that runctl itself does not depend on.
PACKAGE = "humanize"
USES_PACKAGE = f"""
import os, pathlib
import {PACKAGE}
pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"], "said.txt").write_text({PACKAGE}.intcomma(1234567))
"""
# Attempt 1 trains until it is interrupted; attempt 2 finishes at once.
INTERRUPTIBLE = f"""
import os, signal, sys, threading
import {PACKAGE}
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
if os.environ["RUNCTL_ATTEMPT"] == "1":
    threading.Event().wait()
"""
CPU_TYPE = ["m5.large"]  # AL2023: the environment is built with uv


@pytest.fixture(scope="module")
def env_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSession]:
    with LocalSession(tmp_path_factory.mktemp("runctl-env"), E2E_SETTINGS) as session:
        yield session


@pytest.fixture
def runner(env_session: LocalSession, tmp_path: Path) -> ScriptRunner:
    return ScriptRunner(env_session, tmp_path)


def _gone(runner: ScriptRunner, instance_id: str | None) -> bool:
    instance = runner.session.emulator.fleet.get(instance_id or "")
    return instance is not None and instance.processes() == []


def test_given_requirements_then_the_script_imports_them_from_its_own_environment(runner):
    outcome = runner.run(
        USES_PACKAGE, files={"requirements.txt": f"{PACKAGE}\n"}, instance_types=CPU_TYPE
    )

    assert outcome.record.status is RunStatus.SUCCEEDED, outcome.record.error
    assert (outcome.outputs_dir / "said.txt").read_text() == "1,234,567"
    environment = outcome.record.setup["1"]["environment"]
    assert (environment["action"], environment["installer"]) == ("installed", "uv")
    assert outcome.record.setup["1"]["gpu"] is None  # a CPU instance type: no GPU check


def test_given_no_requirements_then_a_package_only_runctl_could_lend_is_missing(runner):
    outcome = runner.run(USES_PACKAGE, instance_types=CPU_TYPE)

    record = outcome.record
    assert (record.status, record.end_reason) == (RunStatus.FAILED, EndReason.SCRIPT_FAILED)
    assert f"ModuleNotFoundError: No module named '{PACKAGE}'" in (record.stderr_tail or "")
    assert record.setup["1"]["environment"]["action"] == "none"


def test_an_interrupted_runs_next_attempt_restores_the_cached_environment(runner):
    spec = runner.spec(INTERRUPTIBLE, files={"requirements.txt": f"{PACKAGE}\n"})
    run_id = runner.session.start(spec, faults=[Fault("interrupt", 0, when_status="RUNNING")])
    outcome = runner.session.wait(run_id, timeout_seconds=240)

    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.attempts["1"].end_reason is EndReason.SPOT_INTERRUPTED
    first, second = record.setup["1"]["environment"], record.setup["2"]["environment"]
    assert (first["action"], first["installer"]) == ("installed", "pip")  # over the DLAMI
    assert second["action"] == "restored"
    assert second["cache_key"] == first["cache_key"]
    assert runner.s3_keys(f"envs/{first['cache_key']}") == [f"envs/{first['cache_key']}.tar.gz"]
    assert record.setup["2"]["gpu"]["gpus"] == ["runctl local stand-in GPU"]


def test_a_requirement_that_does_not_exist_ends_environment_failed_with_no_instance_left(runner):
    outcome = runner.run(
        USES_PACKAGE,
        files={"requirements.txt": "no-such-package-runctl-test==0.0.1\n"},
        instance_types=CPU_TYPE,
        retries={"max_retries": 3, "on_exit_codes": [1]},
    )

    record = outcome.record
    assert (record.status, record.end_reason) == (RunStatus.FAILED, EndReason.ENVIRONMENT_FAILED)
    assert record.error is not None
    assert record.error.startswith("environment failed: uv: error: No solution found")
    assert "no-such-package-runctl-test" in record.error
    assert list(record.attempts) == ["1"]  # not retried: the same file fails again
    assert _gone(runner, record.attempts["1"].instance_id)
    assert record.attempts["1"].instance_id not in runner.session.live_instances()


def test_a_gpu_whose_driver_fails_is_retried_once_on_another_instance(runner):
    runner.session.emulator.fleet.broken_gpu_instances = 1

    outcome = runner.run("print('trained')\n")

    record = outcome.record
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.attempts["1"].end_reason is EndReason.ENVIRONMENT_FAILED
    assert record.attempts["1"].instance_id != record.attempts["2"].instance_id
    assert _gone(runner, record.attempts["1"].instance_id)
    assert "1" not in record.setup  # the failed check recorded nothing as done
    assert record.setup["2"]["gpu"]["gpus"] == ["runctl local stand-in GPU"]


def test_a_gpu_that_fails_twice_ends_the_run_environment_failed(runner):
    runner.session.emulator.fleet.broken_gpu_instances = 2

    outcome = runner.run("print('never')\n")

    record = outcome.record
    assert (record.status, record.end_reason) == (RunStatus.FAILED, EndReason.ENVIRONMENT_FAILED)
    assert record.error is not None and "NVIDIA-SMI has failed" in record.error
    assert "no working GPU on 2 instances" in record.error
    assert [a.end_reason for a in record.attempts.values()] == [EndReason.ENVIRONMENT_FAILED] * 2
    assert runner.session.live_instances() == []

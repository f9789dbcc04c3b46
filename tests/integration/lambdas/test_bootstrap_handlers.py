"""BootstrapInstance and CheckBootstrap handlers: the install command and its bounded poll."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from lambdas.errors import BootstrapFailed
from lambdas.handlers import bootstrap_instance, check_bootstrap
from lambdas.logic.agent_commands import install_agent_script

INSTANCE = {
    "instance_id": "i-0123456789abcdef0",
    "instance_type": "g5.xlarge",
    "availability_zone": "us-east-1a",
    "market": "spot",
    "ready_deadline": 0,
}


@pytest.fixture
def step(run_context) -> dict:
    # Launched just now: a fresh boot is polled at the base rate.
    instance = {**INSTANCE, "launched_at": datetime.now(UTC).isoformat()}
    return {"run": run_context, "instance": instance}


@pytest.fixture
def check(invoke, step, fake_ssm, lambda_environment):
    """One CheckBootstrap call for command cmd-1, with its deadline moved if asked (the runs
    table is there, without the run: no stop asked)."""

    def call(deadline_in: float = 300.0):
        bootstrap = {"command_id": "cmd-1", "deadline": time.time() + deadline_in}
        return invoke(check_bootstrap, {**step, "bootstrap": bootstrap})

    return call


def test_given_ready_instance_when_bootstrapped_then_install_script_is_sent_to_it(
    invoke, step, fake_ssm, lambda_environment
):
    before = time.time()

    result = invoke(bootstrap_instance, step)

    assert result["command_id"] == "cmd-1"
    assert before + 900 <= result["deadline"] <= time.time() + 900
    (sent,) = fake_ssm.sent
    assert sent["InstanceIds"] == [INSTANCE["instance_id"]]
    assert sent["DocumentName"] == "AWS-RunShellScript"
    assert sent["Parameters"]["commands"] == install_agent_script(
        lambda_environment["AGENT_S3_URI"], "us-east-1"
    )
    assert sent["Parameters"]["executionTimeout"] == ["900"]
    assert sent["Comment"] == "runctl install agent run-1"


def test_given_install_succeeded_when_checked_then_ready(check, fake_ssm):
    fake_ssm.invocation = {"Status": "Success", "StandardOutputContent": "agent import ok\n"}

    assert check() == {"ready": True, "detail": "agent installed", "wait_seconds": 1}


@pytest.mark.parametrize("status", ["Pending", "InProgress", "Delayed"])
def test_given_install_running_before_deadline_when_checked_then_not_ready(check, fake_ssm, status):
    fake_ssm.invocation = {"Status": status}

    assert check() == {"ready": False, "detail": status, "wait_seconds": 10}


def test_given_invocation_not_visible_yet_when_checked_then_pending(check, fake_ssm):
    fake_ssm.invocation = None  # GetCommandInvocation says InvocationDoesNotExist

    assert check() == {"ready": False, "detail": "Pending", "wait_seconds": 10}


def test_given_install_failed_when_checked_then_bootstrap_failed_with_stderr_tail(check, fake_ssm):
    stderr = "x" * 5000 + "\nModuleNotFoundError: No module named 'boto3'\n"
    fake_ssm.invocation = {
        "Status": "Failed",
        "StandardOutputContent": "downloading\n",
        "StandardErrorContent": stderr,
    }

    with pytest.raises(BootstrapFailed) as caught:
        check()

    message = str(caught.value)
    assert message.startswith(
        f"installing the agent on {INSTANCE['instance_id']} ended Failed: "
        "ModuleNotFoundError: No module named 'boto3'; output: "
    )
    assert message.endswith(stderr.strip()[-2000:])
    assert "x" * 2001 not in message  # only the tail


def test_given_install_failed_without_stderr_when_checked_then_stdout_tail_is_shown(
    check, fake_ssm
):
    fake_ssm.invocation = {"Status": "TimedOut", "StandardOutputContent": "dnf: no network"}

    with pytest.raises(BootstrapFailed, match=r"ended TimedOut: dnf: no network$"):
        check()


def test_given_install_still_running_after_deadline_when_checked_then_bootstrap_failed(
    check, fake_ssm
):
    fake_ssm.invocation = {"Status": "InProgress"}

    with pytest.raises(BootstrapFailed, match=r"did not finish in time \(last status InProgress\)"):
        check(deadline_in=-1)


def test_given_install_succeeded_after_deadline_when_checked_then_still_ready(check, fake_ssm):
    fake_ssm.invocation = {"Status": "Success"}

    assert check(deadline_in=-1)["ready"] is True

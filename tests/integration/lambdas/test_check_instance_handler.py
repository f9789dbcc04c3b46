"""CheckInstance handler: one poll for "running and online in SSM", bounded by a deadline."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from lambdas.errors import InstanceLost, InstanceStartTimeout
from lambdas.handlers import check_instance


@pytest.fixture
def poll(invoke, launched, recorded_run, fake_ssm, ec2_spy):
    """One CheckInstance call for the launched instance, with its deadline moved if asked."""

    def call(deadline_in: float = 300.0):
        instance = {**launched, "ready_deadline": time.time() + deadline_in}
        return invoke(check_instance, {"run": recorded_run, "instance": instance})

    return call


def test_given_pending_instance_when_polled_then_not_ready(poll, ec2_spy, fake_ssm, launched):
    ec2_spy.reported_state = "pending"
    fake_ssm.online.add(launched["instance_id"])  # pending beats a stale Online

    assert poll() == {
        "ready": False,
        "detail": "state pending, SSM not registered yet",
        "wait_seconds": 10,
    }


def test_given_running_instance_not_in_ssm_when_polled_then_not_ready(poll):
    assert poll() == {
        "ready": False,
        "detail": "state running, SSM not registered yet",
        "wait_seconds": 10,
    }


def test_given_running_instance_online_in_ssm_when_polled_then_ready(poll, fake_ssm, launched):
    fake_ssm.online.add(launched["instance_id"])

    assert poll() == {"ready": True, "detail": "running and online in SSM", "wait_seconds": 1}


def test_given_other_instance_online_when_polled_then_still_not_ready(poll, fake_ssm):
    fake_ssm.online.add("i-0someoneelse000000")

    assert poll()["ready"] is False


def test_given_deadline_passed_and_not_online_when_polled_then_instance_start_timeout(
    poll, launched
):
    with pytest.raises(InstanceStartTimeout, match=launched["instance_id"]) as caught:
        poll(deadline_in=-1)

    assert "state running, SSM not registered yet" in str(caught.value)


def test_given_deadline_passed_but_online_when_polled_then_ready(poll, fake_ssm, launched):
    fake_ssm.online.add(launched["instance_id"])

    assert poll(deadline_in=-1)["ready"] is True


@pytest.mark.parametrize("action", ["terminate_instances", "stop_instances"])
def test_given_instance_gone_when_polled_then_instance_lost(poll, launched, aws, action):
    getattr(aws.ec2, action)(InstanceIds=[launched["instance_id"]])

    with pytest.raises(InstanceLost, match=r"is (terminated|stopped) before the run started"):
        poll()


def test_given_instance_ec2_does_not_know_yet_when_polled_then_not_ready(
    invoke, recorded_run, launched, fake_ssm
):
    # Right after RunInstances, DescribeInstances may answer InvalidInstanceID.NotFound.
    instance = {
        **launched,
        "instance_id": "i-0000000000000dead",
        "ready_deadline": time.time() + 60,
    }

    probe = invoke(check_instance, {"run": recorded_run, "instance": instance})

    assert probe == {
        "ready": False,
        "detail": "state unknown, SSM not registered yet",
        "wait_seconds": 10,
    }


def test_given_a_slow_boot_when_polled_then_the_next_poll_waits_longer(
    invoke, recorded_run, launched, fake_ssm
):
    # Launched four minutes ago and still not online: poll less often than the base interval
    four_minutes_ago = datetime.now(UTC) - timedelta(minutes=4)
    instance = {
        **launched,
        "launched_at": four_minutes_ago.isoformat(),
        "ready_deadline": time.time() + 300,
    }

    probe = invoke(check_instance, {"run": recorded_run, "instance": instance, "poll_seconds": 10})

    assert probe["ready"] is False
    assert 60 >= probe["wait_seconds"] > 10

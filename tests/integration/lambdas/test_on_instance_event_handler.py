"""OnInstanceEvent handler: EC2's EventBridge events for runctl instances. A spot warning or a
rebalance recommendation reaches the agent as notice.json over SSM; a lost instance fails the
stored task token; everything late, foreign or finished is dropped."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdas.handlers import on_instance_event

SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
STATE_CHANGE = "EC2 Instance State-change Notification"
EVENT_TIME = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TOKEN = "AQCEAAAAKgAAAA-task-token-" + "t" * 40


def _event(detail_type: str, instance_id: str, **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"instance-id": instance_id, **detail},
    }


def _spot_warning(instance_id: str) -> dict[str, Any]:
    return _event(SPOT_WARNING, instance_id, **{"instance-action": "terminate"})


class FakeStepFunctions:
    """send_task_failure recorded; `error_code` makes it raise that ClientError instead."""

    def __init__(self) -> None:
        self.failures: list[dict[str, Any]] = []
        self.error_code: str | None = None

    def send_task_failure(self, **kwargs: Any) -> dict[str, Any]:
        if self.error_code:
            error = {"Error": {"Code": self.error_code, "Message": "injected"}}
            raise ClientError(error, "SendTaskFailure")
        self.failures.append(kwargs)
        return {}


@pytest.fixture
def sfn(client_overrides, monkeypatch) -> FakeStepFunctions:
    fake = FakeStepFunctions()
    client_overrides.by_service["stepfunctions"] = fake
    # The handler takes its clients from aws_client directly, not through wiring.
    monkeypatch.setattr(on_instance_event, "aws_client", client_overrides)
    return fake


@pytest.fixture
def on_event(invoke, lambda_environment, fake_ssm, sfn):
    def call(event: dict[str, Any]) -> str:
        return str(invoke(on_instance_event, event)["action"])

    return call


@pytest.fixture
def running(recorded_run, launched, set_record_fields) -> dict[str, Any]:
    """Attempt 1's agent is running the script and has stored its task token: `$.instance`."""
    set_record_fields("run-1", status="RUNNING", task_token=TOKEN)
    return launched


def _notice_written(sent: dict[str, Any], home) -> dict[str, Any]:
    """Run the command's script as the instance would, in a scratch RUNCTL_HOME."""
    script = "\n".join(sent["Parameters"]["commands"])
    subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "RUNCTL_HOME": str(home)},
        check=True,
        capture_output=True,
    )
    assert sorted(path.name for path in home.iterdir()) == ["notice.json"]
    return dict(json.loads((home / "notice.json").read_text()))


# ---------------------------------------------------------------- notices to the agent


def test_given_running_attempt_when_spot_warning_then_agent_gets_a_spot_notice_over_ssm(
    on_event, running, fake_ssm, sfn, tmp_path
):
    action = on_event(_spot_warning(running["instance_id"]))

    assert action == "notice spot-interrupted sent to the agent"
    (sent,) = fake_ssm.sent
    assert sent["InstanceIds"] == [running["instance_id"]]
    assert sent["DocumentName"] == "AWS-RunShellScript"
    notice = _notice_written(sent, tmp_path)
    assert notice["kind"] == "spot-interrupted"
    assert notice["source"] == "eventbridge"
    assert datetime.fromisoformat(notice["notice_time"]) == EVENT_TIME
    assert datetime.fromisoformat(notice["termination_time"]) == EVENT_TIME.replace(minute=2)
    assert sfn.failures == []


def test_given_running_attempt_when_rebalance_recommended_then_agent_gets_a_rebalance_notice(
    on_event, running, fake_ssm, tmp_path
):
    action = on_event(_event(REBALANCE, running["instance_id"]))

    assert action == "notice rebalance sent to the agent"
    (sent,) = fake_ssm.sent
    notice = _notice_written(sent, tmp_path)
    assert notice["kind"] == "rebalance"
    assert notice["termination_time"] is None
    assert datetime.fromisoformat(notice["notice_time"]) == EVENT_TIME


def test_given_staging_attempt_when_spot_warning_then_agent_gets_the_notice(
    on_event, recorded_run, launched, set_record_fields, fake_ssm
):
    set_record_fields("run-1", status="STAGING")

    assert on_event(_spot_warning(launched["instance_id"])).startswith("notice spot-interrupted")
    assert len(fake_ssm.sent) == 1


def test_given_duplicate_spot_warning_when_delivered_twice_then_each_sends_the_notice(
    on_event, running, fake_ssm
):
    # The agent acts on the first notice of each kind once; a second send is harmless.
    event = _spot_warning(running["instance_id"])

    actions = [on_event(event), on_event(event)]

    assert actions == ["notice spot-interrupted sent to the agent"] * 2
    assert len(fake_ssm.sent) == 2


# ---------------------------------------------------------------- warnings that are dropped


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "CHECKPOINTING", "RESUMING"])
def test_given_run_not_working_when_spot_warning_then_ignored(
    on_event, running, set_record_fields, fake_ssm, status
):
    set_record_fields("run-1", status=status)

    action = on_event(_spot_warning(running["instance_id"]))

    assert action.startswith("ignored")
    assert fake_ssm.sent == []


def test_given_warning_for_an_older_attempt_when_delivered_then_ignored(
    on_event, recorded_run, launched, interrupt_and_relaunch, set_record_fields, fake_ssm
):
    _, second = interrupt_and_relaunch(recorded_run, launched)
    set_record_fields("run-1", status="RUNNING", task_token=TOKEN)

    action = on_event(_spot_warning(launched["instance_id"]))

    assert action.startswith("ignored")
    assert fake_ssm.sent == []
    # The current attempt's own warning still goes through.
    assert on_event(_spot_warning(second["instance_id"])).startswith("notice")


def test_given_untagged_instance_when_spot_warning_then_ignored(
    on_event, running, image_id, aws, fake_ssm
):
    other = aws.ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]

    action = on_event(_spot_warning(other["InstanceId"]))

    assert action == "ignored: not a runctl instance"
    assert fake_ssm.sent == []


def test_given_instance_with_run_tags_but_not_managed_when_spot_warning_then_ignored(
    on_event, running, image_id, aws, fake_ssm
):
    # Someone else's instance that copied the run tags; only runctl sets runctl:managed.
    tags = [{"Key": "runctl:run-id", "Value": "run-1"}, {"Key": "runctl:attempt", "Value": "1"}]
    other = aws.ec2.run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]

    action = on_event(_spot_warning(other["InstanceId"]))

    assert action == "ignored: not a runctl instance"
    assert fake_ssm.sent == []


def test_given_unknown_instance_when_spot_warning_then_ignored(on_event, running, fake_ssm):
    action = on_event(_spot_warning("i-0000000000000dead"))

    assert action == "ignored: not a runctl instance"
    assert fake_ssm.sent == []


# ---------------------------------------------------------------- lost instances


@pytest.mark.parametrize("state", ["shutting-down", "terminated", "stopping", "stopped"])
def test_given_running_attempt_when_its_instance_goes_then_task_fails_instance_lost_once(
    on_event, running, sfn, fake_ssm, state
):
    action = on_event(_event(STATE_CHANGE, running["instance_id"], state=state))

    assert action == "task failed: instance lost"
    (failure,) = sfn.failures
    assert failure["taskToken"] == TOKEN
    assert failure["error"] == "Runctl.InstanceLost"
    assert running["instance_id"] in failure["cause"]
    assert fake_ssm.sent == []


def test_given_token_already_ended_when_instance_terminated_then_ignored_without_error(
    on_event, running, sfn
):
    sfn.error_code = "TaskTimedOut"

    action = on_event(_event(STATE_CHANGE, running["instance_id"], state="terminated"))

    assert action == "ignored: the task had already ended"


def test_given_step_functions_throttled_when_instance_terminated_then_the_error_is_raised(
    on_event, running, sfn
):
    # Not a gone token: Lambda's retry of the event must get another chance.
    sfn.error_code = "ThrottlingException"

    with pytest.raises(ClientError, match="ThrottlingException"):
        on_event(_event(STATE_CHANGE, running["instance_id"], state="terminated"))


def test_given_checkpointing_attempt_when_its_instance_terminates_then_task_left_alone(
    on_event, running, set_record_fields, sfn
):
    # The agent ended the token itself with Runctl.Interrupted when it got the notice.
    set_record_fields("run-1", status="CHECKPOINTING")

    action = on_event(_event(STATE_CHANGE, running["instance_id"], state="terminated"))

    assert action.startswith("ignored")
    assert sfn.failures == []


def test_given_older_attempt_when_its_instance_terminates_then_task_left_alone(
    on_event, recorded_run, launched, interrupt_and_relaunch, set_record_fields, sfn
):
    interrupt_and_relaunch(recorded_run, launched)
    set_record_fields("run-1", status="RUNNING", task_token=TOKEN)

    action = on_event(_event(STATE_CHANGE, launched["instance_id"], state="terminated"))

    assert action.startswith("ignored")
    assert sfn.failures == []


@pytest.mark.parametrize("state", ["pending", "running"])
def test_given_running_attempt_when_its_instance_is_up_then_nothing_done(
    on_event, running, sfn, fake_ssm, state
):
    action = on_event(_event(STATE_CHANGE, running["instance_id"], state=state))

    assert action == "ignored: nothing to do"
    assert (sfn.failures, fake_ssm.sent) == ([], [])


def test_given_no_stored_token_when_instance_terminated_then_nothing_to_fail(
    on_event, recorded_run, launched, set_record_fields, sfn
):
    # Before StartAgent stored its token, the heartbeat and CheckBootstrap notice a lost instance.
    set_record_fields("run-1", status="STAGING")

    action = on_event(_event(STATE_CHANGE, launched["instance_id"], state="terminated"))

    assert action == "ignored: nothing to do"
    assert sfn.failures == []

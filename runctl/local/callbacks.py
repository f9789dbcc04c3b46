"""Task-token callbacks that arrive while the task's Lambda is still running, accepted as on AWS.

On AWS a `.waitForTaskToken` task's token is valid from the moment the task is scheduled: the
Lambda that receives it (StartAgent) may hand it to the agent, and the agent may call
SendTaskHeartbeat or SendTaskSuccess before that Lambda invocation has returned (a short script
on a warm instance does). moto 5.2.5 registers the token before the invocation but sets up the
heartbeat clock only after it, and then:
- waits for a heartbeat without first looking at an outcome already delivered, so a success sent
  during the invocation is lost and the task ends in `States.HeartbeatTimeout`;
- answers a SendTaskHeartbeat sent during the invocation with InvalidToken (no heartbeat clock
  yet), which the agent would take for a dead execution;
- reports a missed heartbeat as `States.Timeout`, where AWS reports `States.HeartbeatTimeout`.

The replacements look at the delivered outcome before (and after) each heartbeat wait, and accept
an early heartbeat (the clock starts when the invocation returns, so it has nothing to reset).
Each replacement takes moto's `self` first and is listed in `PATCHES` for the Emulator.
"""

from __future__ import annotations

from typing import Any, cast

from moto.stepfunctions.parser.api import HistoryEventType, TaskTimedOutEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackEndpoint,
    CallbackOutcome,
    HeartbeatEndpoint,
    HeartbeatTimedOut,
    HeartbeatTimeoutError,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

_ORIGINAL_FROM_ERROR = StateTaskServiceCallback._from_error


def wait_for_task_token_heartbeat(
    task: StateTaskServiceCallback,
    env: Any,
    callback_endpoint: CallbackEndpoint,
    heartbeat_endpoint: HeartbeatEndpoint,
) -> CallbackOutcome | HeartbeatTimedOut | None:
    """Until an outcome arrives or a heartbeat interval passes without one (moto's loop, plus a
    look at the outcome before every wait: it may have come during the Lambda invocation)."""
    outcome: CallbackOutcome | HeartbeatTimedOut | None = callback_endpoint.get_outcome()
    while env.is_running() and outcome is None:
        received = heartbeat_endpoint.clear_and_wait()
        outcome = callback_endpoint.get_outcome()
        if outcome is None and not received and env.is_running():
            outcome = HeartbeatTimedOut()
    return outcome


def notify_heartbeat(endpoint: CallbackEndpoint) -> bool:
    """A heartbeat before the heartbeat clock exists (during the invocation) is accepted."""
    heartbeat_endpoint = endpoint._heartbeat_endpoint
    if heartbeat_endpoint is not None:
        heartbeat_endpoint.notify()
    return True


def from_error(task: StateTaskServiceCallback, env: Any, ex: Exception) -> FailureEvent:
    """A missed heartbeat is `States.HeartbeatTimeout`; everything else as moto has it."""
    # moto passes `ex` by keyword.
    if not isinstance(ex, HeartbeatTimeoutError):
        return _ORIGINAL_FROM_ERROR(task, env, ex)
    name = StatesErrorNameType.StatesHeartbeatTimeout
    return FailureEvent(
        env=env,
        error_name=StatesErrorName(typ=name),
        event_type=HistoryEventType.TaskTimedOut,
        # moto's EventDetails is a total TypedDict; one key is what moto itself passes.
        event_details=cast(
            EventDetails,
            {
                "taskTimedOutEventDetails": TaskTimedOutEventDetails(
                    resourceType=task._get_sfn_resource_type(),
                    resource=task._get_sfn_resource(),
                    error=name.to_name(),
                )
            },
        ),
    )


PATCHES = (
    (StateTaskServiceCallback, "_wait_for_task_token_heartbeat", wait_for_task_token_heartbeat),
    (CallbackEndpoint, "notify_heartbeat", notify_heartbeat),
    (StateTaskServiceCallback, "_from_error", from_error),
)

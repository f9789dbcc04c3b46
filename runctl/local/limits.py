"""Step Functions' payload limit in local mode, enforced where and how AWS enforces it.

AWS ("Handling errors in Step Functions workflows", "Step Functions service quotas"): 256 KiB
(262,144 bytes of UTF-8) per state input or output, task result and execution input/output.
`States.DataLimitExceeded` is reported when the output of a connector (a task's result) is larger,
when the output of a state is larger, and when, after Parameters processing, the input of a state
is larger; it is a terminal error that `States.ALL` does not catch. SendTaskSuccess's `output` has
the same maximum as an API constraint, so an oversized one is refused to its caller
(ValidationException) and never reaches the execution.

moto 5.2.5 (pinned in pyproject) already checks state outputs and task results, but:
- counts `json.dumps` with its default `", "`/`": "` separators and ASCII escapes, and fails at
  exactly 262,144 bytes (`<`), where AWS counts the UTF-8 bytes of compact JSON up to and including
  262,144: the replacement `_verify_size_quota`s below measure with `payload_size`;
- lets `States.ALL` (Retry and Catch) match `States.DataLimitExceeded`: `ErrorEqualsDecl` is
  replaced so that only a Retrier/Catcher naming it matches it;
- checks no state input after Parameters/ItemSelector: both get the check;
- turns a Map iteration or Parallel branch that failed with a `States.*` error into `States.Runtime`
  (its `CustomErrorName` refuses the prefix), which hides the real error: a known `States.*` name
  coming up from a child is accepted;
- accepts any SendTaskSuccess output.

Each replacement is a function taking moto's `self` first, listed in `PATCHES` for the Emulator.
"""

from __future__ import annotations

import json
from typing import Any, Final, cast

from moto.stepfunctions.exceptions import ValidationException
from moto.stepfunctions.parser.api import HistoryEventType
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import (
    ErrorEqualsDecl,
)
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.parargs import Parargs
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_selector import (
    ItemSelector,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (  # noqa: E501
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (
    StateTaskLambda,
)
from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

MAX_PAYLOAD_BYTES: Final = 262_144
DATA_LIMIT_EXCEEDED: Final = StatesErrorNameType.StatesStatesDataLimitExceeded
_KNOWN_STATES_ERRORS: Final = frozenset(name.to_name() for name in StatesErrorNameType)
_ORIGINAL_ERROR_EQUALS = ErrorEqualsDecl._eval_body
_ORIGINAL_CUSTOM_ERROR_NAME_INIT = CustomErrorName.__init__
_ORIGINAL_PARARGS = Parargs._eval_body
_ORIGINAL_ITEM_SELECTOR = ItemSelector._eval_body
_ORIGINAL_SEND_TASK_SUCCESS = StepFunctionsParserBackend.send_task_success


def payload_size(value: Any) -> int:
    """UTF-8 bytes of `value` as compact JSON: how the quota is counted."""
    return len(
        json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    )


def _data_limit_exceeded(env: Environment, cause: str) -> FailureEventException:
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=DATA_LIMIT_EXCEEDED),
            event_type=HistoryEventType.TaskFailed,
            # moto's EventDetails is a total TypedDict; moto itself builds it with one key.
            event_details=cast(
                EventDetails,
                {
                    "taskFailedEventDetails": {
                        "error": DATA_LIMIT_EXCEEDED.to_name(),
                        "cause": cause,
                    }
                },
            ),
        )
    )


def _result_too_large(env: Environment, what: str) -> FailureEventException:
    # AWS's own wording for an oversized state output or task result.
    return _data_limit_exceeded(
        env,
        f"The state/task '{what}' returned a result with a size exceeding the maximum number"
        " of bytes service limit.",
    )


def verify_state_output(state: CommonStateField, env: Environment, value: Any) -> None:
    if payload_size(value) > MAX_PAYLOAD_BYTES:
        raise _result_too_large(env, state.name)


def verify_lambda_result(task: StateTaskLambda, env: Environment, value: Any) -> None:
    # moto hands over the whole Invoke response; the task's result is its Payload.
    result = value.get("Payload") if isinstance(value, dict) and "Payload" in value else value
    if payload_size(result) > MAX_PAYLOAD_BYTES:
        raise _result_too_large(env, task.resource.resource_arn)


def verify_service_result(task: StateTaskService, env: Environment, value: Any) -> None:
    if payload_size(value) > MAX_PAYLOAD_BYTES:
        raise _result_too_large(env, task._get_sfn_resource_type())


def _verify_state_input(env: Environment) -> None:
    state: dict[str, Any] = dict(env.states.context_object.context_object_data.get("State") or {})
    if payload_size(env.stack[-1]) > MAX_PAYLOAD_BYTES:
        raise _data_limit_exceeded(
            env,
            f"The state '{state.get('Name', '')}' has an input, after Parameters processing,"
            " with a size exceeding the maximum number of bytes service limit.",
        )


def parameters_then_check(parargs: Parargs, env: Environment) -> None:
    _ORIGINAL_PARARGS(parargs, env)
    _verify_state_input(env)


def item_selector_then_check(selector: ItemSelector, env: Environment) -> None:
    _ORIGINAL_ITEM_SELECTOR(selector, env)
    _verify_state_input(env)


def error_equals(decl: ErrorEqualsDecl, env: Environment) -> None:
    """As moto's, except that only naming States.DataLimitExceeded matches it (not States.ALL)."""
    error_name: ErrorName | None = env.stack[-1]
    if error_name is not None and error_name.error_name == DATA_LIMIT_EXCEEDED.to_name():
        env.stack.pop()
        env.stack.append(any(name.error_name == error_name.error_name for name in decl.error_names))
        return
    _ORIGINAL_ERROR_EQUALS(decl, env)


def custom_error_name_init(name: CustomErrorName, error_name: str | None) -> None:
    # Map iterations and Parallel branches wrap their child's error name in a CustomErrorName,
    # which refuses the States. prefix: a child's real States.* error must come up unchanged.
    if error_name in _KNOWN_STATES_ERRORS:
        ErrorName.__init__(name, error_name=error_name)
        return
    _ORIGINAL_CUSTOM_ERROR_NAME_INIT(name, error_name)


def send_task_success(backend: StepFunctionsParserBackend, task_token: str, outcome: str) -> Any:
    if len(outcome.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        # The API's own constraint message (the request never reaches the execution).
        raise ValidationException(
            "1 validation error detected: Value at 'output' failed to satisfy constraint:"
            f" Member must have length less than or equal to {MAX_PAYLOAD_BYTES}"
        )
    return _ORIGINAL_SEND_TASK_SUCCESS(backend, task_token, outcome)


# (class, attribute, replacement) for the Emulator to patch while it runs.
PATCHES = (
    (CommonStateField, "_verify_size_quota", verify_state_output),
    (StateTaskLambda, "_verify_size_quota", verify_lambda_result),
    (StateTaskService, "_verify_size_quota", verify_service_result),
    (Parargs, "_eval_body", parameters_then_check),
    (ItemSelector, "_eval_body", item_selector_then_check),
    (ErrorEqualsDecl, "_eval_body", error_equals),
    (CustomErrorName, "__init__", custom_error_name_init),
    (StepFunctionsParserBackend, "send_task_success", send_task_success),
)

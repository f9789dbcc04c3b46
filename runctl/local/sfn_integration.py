"""Makes moto's `states:startExecution(.sync|.sync:2)` task speak the Step Functions API casing.

moto 5.2.5 passes the ASL's PascalCase parameters (`StateMachineArn`, `Name`, `Input`) straight
to boto3, whose members are lowerCamel, so the task fails with `States.Runtime` / KeyError, and
returns boto3's lowerCamel output where AWS returns PascalCase (`ExecutionArn`, `Status`,
`Output`). Its LocalStack origin converted both ways with the operation's botocore shapes; moto
kept the converters but not the calls (getmoto/moto#10076). These replacements restore the calls
for the Step Functions integration only, so the Sweep state machine runs locally as on AWS.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.model import OperationModel
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (  # noqa: E501
    StateTaskServiceSfn,
)

from runctl.local import callbacks, limits

_ORIGINAL_NORMALISE_PARAMETERS = StateTaskServiceSfn._normalise_parameters


@cache
def _operation(snake_name: str) -> OperationModel:
    model = botocore.session.get_session().get_service_model("stepfunctions")
    by_snake_name = {xform_name(name): name for name in model.operation_names}
    return model.operation_model(by_snake_name[snake_name])


def normalise_parameters(
    task: StateTaskServiceSfn,
    parameters: dict[str, Any],
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    """Pascal -> boto casing of the request, after moto's own (JSON-encodes a non-string Input)."""
    _ORIGINAL_NORMALISE_PARAMETERS(task, parameters, boto_service_name, service_action_name)
    action = task._get_boto_service_action(service_action_name)
    task._to_boto_request(parameters, _operation(action).input_shape)


def normalise_response(
    task: StateTaskServiceSfn,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    """boto -> Pascal casing of the response (StartExecution, and DescribeExecution for .sync)."""
    action = task._get_boto_service_action(service_action_name)
    task._from_boto_response(response, _operation(action).output_shape)


# (class, attribute, replacement) for the Emulator to patch while it runs; the payload limits
# (runctl/local/limits.py) and early task-token callbacks (runctl/local/callbacks.py) ride
# along, so every local execution is held to them.
PATCHES = (
    (StateTaskServiceSfn, "_normalise_parameters", normalise_parameters),
    (StateTaskServiceSfn, "_normalise_response", normalise_response),
    *limits.PATCHES,
    *callbacks.PATCHES,
)

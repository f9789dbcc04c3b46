"""A local deployment registered as a CloudFormation stack that carries the real stack's outputs,
so a client pointed at the emulator finds it the way it finds a deployed stack (DescribeStacks)."""

from __future__ import annotations

import json
from typing import Any

from lambdas.functions import STOP_SWEEP
from runctl.client.stack import (
    OUTPUT_BUCKET,
    OUTPUT_LOG_GROUP,
    OUTPUT_RUNS_TABLE,
    OUTPUT_STATE_MACHINE,
    OUTPUT_STOP_FUNCTION,
    OUTPUT_STOP_SWEEP_FUNCTION,
    OUTPUT_SWEEP_STATE_MACHINE,
)
from runctl.local.deploy import LocalStack

# The Lambda that `runctl stop` invokes (lambdas/functions.py CLIENT_FUNCTIONS).
STOP_FUNCTION_STEP = "StopRun"


def outputs_template(stack: LocalStack, stack_name: str) -> dict[str, Any]:
    outputs = {
        OUTPUT_STATE_MACHINE: stack.state_machine_arn,
        OUTPUT_BUCKET: stack.bucket,
        OUTPUT_RUNS_TABLE: stack.table,
        OUTPUT_LOG_GROUP: stack.log_group,
    }
    if stack.sweep_state_machine_arn:
        outputs[OUTPUT_SWEEP_STATE_MACHINE] = stack.sweep_state_machine_arn
    for output, step in (
        (OUTPUT_STOP_FUNCTION, STOP_FUNCTION_STEP),
        (OUTPUT_STOP_SWEEP_FUNCTION, STOP_SWEEP.name),
    ):
        arn = stack.function_arns.get(step)
        if arn is not None:
            outputs[output] = arn.rsplit(":", 1)[-1]
    return {
        # CloudFormation wants at least one resource: a parameter naming the stack will do.
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Name": f"/runctl/{stack_name}/local",
                    "Type": "String",
                    "Value": "runctl local mode",
                },
            }
        },
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }


def publish_stack_outputs(stack: LocalStack, stack_name: str, cloudformation: Any) -> None:
    cloudformation.create_stack(
        StackName=stack_name, TemplateBody=json.dumps(outputs_template(stack, stack_name))
    )

"""Finds the deployed runctl stack by name and reads the outputs the client needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from runctl.errors import StackNotFound

# cdk.json's runctl:stackName (a test keeps the two equal).
DEFAULT_STACK_NAME = "Runctl"

# CfnOutput ids of stacks/runctl_stack.py.
OUTPUT_STATE_MACHINE = "StateMachineArn"
OUTPUT_BUCKET = "BucketName"
OUTPUT_RUNS_TABLE = "RunsTableName"
OUTPUT_LOG_GROUP = "LogGroupName"
OUTPUT_STOP_FUNCTION = "StopRunFunctionName"
OUTPUT_SWEEP_STATE_MACHINE = "SweepStateMachineArn"
OUTPUT_STOP_SWEEP_FUNCTION = "StopSweepFunctionName"
REQUIRED_OUTPUTS = (OUTPUT_STATE_MACHINE, OUTPUT_BUCKET, OUTPUT_RUNS_TABLE, OUTPUT_LOG_GROUP)

# A stack in one of these states has its resources (an update in flight keeps the old ones).
_USABLE_STATUSES = {
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    "IMPORT_COMPLETE",
}


@dataclass(frozen=True)
class StackOutputs:
    stack_name: str
    region: str
    state_machine_arn: str
    bucket: str
    runs_table: str
    log_group: str
    stop_function_name: str | None
    # None on a stack deployed before sweeps (issue #5).
    sweep_state_machine_arn: str | None = None
    stop_sweep_function_name: str | None = None

    def execution_arn(self, run_id: str) -> str:
        """TrainRun executions are named by run id."""
        prefix = self.state_machine_arn.replace(":stateMachine:", ":execution:", 1)
        return f"{prefix}:{run_id}"


def describe_stack_outputs(cloudformation: Any, stack_name: str, region: str) -> StackOutputs:
    """DescribeStacks(stack_name) -> its outputs; StackNotFound says how to deploy it."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ValidationError":
            raise
        stacks = []
    if not stacks:
        raise StackNotFound(
            f"no runctl stack named {stack_name!r} in {region}: deploy it with "
            "`npx cdk deploy`, or point at yours with stack_name/region in .runctl.toml"
        )
    stack = stacks[0]
    status = stack.get("StackStatus", "")
    if status not in _USABLE_STATUSES:
        raise StackNotFound(
            f"stack {stack_name!r} in {region} is {status}: wait for it or deploy it again "
            "with `npx cdk deploy`"
        )
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing:
        raise StackNotFound(
            f"stack {stack_name!r} in {region} has no output {', '.join(missing)}: it is not a "
            "runctl stack, or an old one (deploy this version with `npx cdk deploy`)"
        )
    return StackOutputs(
        stack_name=stack_name,
        region=region,
        state_machine_arn=outputs[OUTPUT_STATE_MACHINE],
        bucket=outputs[OUTPUT_BUCKET],
        runs_table=outputs[OUTPUT_RUNS_TABLE],
        log_group=outputs[OUTPUT_LOG_GROUP],
        stop_function_name=outputs.get(OUTPUT_STOP_FUNCTION),
        sweep_state_machine_arn=outputs.get(OUTPUT_SWEEP_STATE_MACHINE),
        stop_sweep_function_name=outputs.get(OUTPUT_STOP_SWEEP_FUNCTION),
    )

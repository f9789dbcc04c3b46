"""The TrainRun executions a sweep started, looked up by run id (the execution's name)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


class TrainRunExecutions:
    def __init__(self, sfn: Any, state_machine_arn: str) -> None:
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn

    def arn(self, run_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{run_id}"

    def describe(self, run_id: str) -> dict[str, Any] | None:
        """DescribeExecution's answer; None when no execution has that name (never started)."""
        try:
            return dict(self.sfn.describe_execution(executionArn=self.arn(run_id)))
        except ClientError as error:
            if error.response["Error"]["Code"] == "ExecutionDoesNotExist":
                return None
            raise

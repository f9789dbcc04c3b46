"""SSM Run Command: send a fixed shell script to an instance and read how it went."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

SHELL_DOCUMENT = "AWS-RunShellScript"


@dataclass(frozen=True)
class CommandStatus:
    status: str  # Pending | InProgress | Delayed | Success | Failed | Cancelled | TimedOut | ...
    stdout: str
    stderr: str

    @property
    def finished(self) -> bool:
        return self.status not in {"Pending", "InProgress", "Delayed", "Cancelling"}


class SsmCommands:
    def __init__(self, ssm: Any) -> None:
        self.ssm = ssm

    def run_shell(
        self, instance_id: str, commands: list[str], comment: str, timeout_seconds: int
    ) -> str:
        """Send the script and return the command id."""
        response = self.ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName=SHELL_DOCUMENT,
            Comment=comment[:100],
            TimeoutSeconds=min(max(timeout_seconds, 30), 2_592_000),
            Parameters={
                "commands": commands,
                "executionTimeout": [str(min(max(timeout_seconds, 30), 172_800))],
            },
        )
        return str(response["Command"]["CommandId"])

    def status(self, command_id: str, instance_id: str) -> CommandStatus:
        try:
            response = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as error:
            # Right after SendCommand the invocation may not exist yet.
            if error.response["Error"]["Code"] == "InvocationDoesNotExist":
                return CommandStatus("Pending", "", "")
            raise
        return CommandStatus(
            status=response["Status"],
            stdout=response.get("StandardOutputContent", ""),
            stderr=response.get("StandardErrorContent", ""),
        )

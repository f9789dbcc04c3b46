"""SSM for local instances: commands really run, and instances report online once booted."""

from __future__ import annotations

import threading
from typing import Any

from moto.core.responses import ActionResult
from moto.ssm.models import SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from runctl.local.instances import CommandResult, LocalFleet, LocalInstance


class SsmBridge:
    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self._original_send = SimpleSystemManagerBackend.send_command

    def send_command(self, backend: SimpleSystemManagerBackend, **kwargs: Any) -> Any:
        command = self._original_send(backend, **kwargs)
        lines = list(kwargs.get("parameters", {}).get("commands", []))
        timeout = float(kwargs.get("parameters", {}).get("executionTimeout", ["3600"])[0])
        for invocation in command.invocations:
            instance = self.fleet.get(invocation["InstanceId"])
            if instance is None:
                _record(invocation, CommandResult("Failed", stderr="no such local instance"))
                continue
            _record(invocation, CommandResult("InProgress"))
            threading.Thread(
                target=self._run, args=(instance, lines, timeout, invocation), daemon=True
            ).start()
        return command

    @staticmethod
    def _run(
        instance: LocalInstance, lines: list[str], timeout: float, invocation: dict[str, Any]
    ) -> None:
        _record(invocation, instance.run_shell(lines, timeout))

    def describe_instances(self, response: SimpleSystemManagerResponse) -> Any:
        wanted: set[str] | None = None
        for item in response._get_param("Filters", []) or []:
            if item.get("Key") == "InstanceIds":
                wanted = set(item.get("Values", []))
        online = [
            {"InstanceId": item.instance_id, "PingStatus": "Online", "PlatformType": "Linux"}
            for item in self.fleet.running()
            if item.online and (wanted is None or item.instance_id in wanted)
        ]
        return ActionResult({"InstanceInformationList": online})


def _record(invocation: dict[str, Any], result: CommandResult) -> None:
    invocation.update(
        Status=result.status,
        StatusDetails=result.status,
        ResponseCode=result.exit_code,
        StandardOutputContent=result.stdout,
        StandardErrorContent=result.stderr,
    )

"""Sweeps in local mode: start the Sweep state machine, wait for it, cancel it, read its summary.

with LocalSession(root) as session:
    sweeps = LocalSweeps(session)
    sweep_id = sweeps.start(spec)              # SweepSpec or its JSON; checked first
    outcome = sweeps.wait(sweep_id)            # SweepOutcome: status, error, summary
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from lambdas.functions import STOP_SWEEP
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.models.sweep_spec import SweepSpec
from lambdas.models.sweep_summary import StopSweepOutput, SweepSummary
from runctl.errors import AwsRequestFailed
from runctl.local.session import LocalSession
from runctl.sweeps import checked_sweep, new_sweep_id


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    execution_status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    error: str | None  # Runctl.SweepFailed, Runctl.SweepCancelled, SweepSpecInvalid, ...
    cause: str | None
    summary: SweepSummary | None  # None when the sweep failed before it had runs


class LocalSweeps:
    def __init__(self, session: LocalSession) -> None:
        self.session = session
        self.files = SweepFiles(session.s3, session.stack.bucket)

    @property
    def state_machine_arn(self) -> str:
        return self.session.stack.sweep_state_machine_arn

    def start(self, spec: SweepSpec | dict[str, Any], sweep_id: str | None = None) -> str:
        """Check the sweep as ExpandSweep will (SpecError if wrong), then start it."""
        sweep_id = sweep_id or new_sweep_id()
        checked = checked_sweep(spec, sweep_id)
        self.session.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=sweep_id,
            input=checked.model_dump_json(exclude_unset=True),
        )
        return sweep_id

    def execution_arn(self, sweep_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{sweep_id}"

    def wait(
        self, sweep_id: str, timeout_seconds: float = 900, poll_seconds: float = 0.5
    ) -> SweepOutcome:
        """Until the Sweep execution ends; TimeoutError if it does not within the time."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            described = self.session.sfn.describe_execution(
                executionArn=self.execution_arn(sweep_id)
            )
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} still running after {timeout_seconds} s")
            time.sleep(poll_seconds)
        return SweepOutcome(
            sweep_id=sweep_id,
            execution_status=described["status"],
            error=described.get("error"),
            cause=described.get("cause"),
            summary=self.files.summary(sweep_id),
        )

    def cancel(self, sweep_id: str) -> StopSweepOutput:
        """Invoke StopSweep, as `runctl sweep cancel` does against a stack."""
        response = self.session.lambda_client.invoke(
            FunctionName=self.session.stack.function_arns[STOP_SWEEP.name],
            Payload=json.dumps({"sweep_id": sweep_id}).encode(),
        )
        payload = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise AwsRequestFailed(f"cannot cancel sweep {sweep_id}: {payload.get('errorMessage')}")
        return StopSweepOutput.model_validate(payload)


__all__ = ["LocalSweeps", "SweepOutcome"]

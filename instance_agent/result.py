"""The attempt's result: result.json in S3 and the task token's output (AgentResult in
lambdas/models/steps.py; the error names mirror lambdas/constants.py)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .layout import attempt_result_key, handoff_key
from .s3io import put_json

SUCCEEDED = "succeeded"
SCRIPT_FAILED = "script-failed"
AGENT_FAILED = "agent-failed"
# An interruption notice ended the attempt; the run goes on in the next one.
INTERRUPTED = "interrupted"
# The user's stop request ended the attempt, and with it the run.
CANCELLED = "cancelled"
# The script's environment could not be installed; or no working GPU (another instance may have).
ENVIRONMENT_FAILED = "environment-failed"
GPU_UNAVAILABLE = "gpu-unavailable"

ERROR_SCRIPT_FAILED = "Runctl.ScriptFailed"
ERROR_AGENT_FAILED = "Runctl.AgentFailed"
ERROR_INTERRUPTED = "Runctl.Interrupted"
ERROR_CANCELLED = "Runctl.Cancelled"
ERROR_ENVIRONMENT_FAILED = "Runctl.EnvironmentFailed"
ERROR_GPU_UNAVAILABLE = "Runctl.GpuUnavailable"


@dataclass
class AgentResult:
    outcome: str
    exit_code: int | None = None
    stderr_tail: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    outputs_uri: str | None = None
    metrics_uri: str | None = None
    logs_uri: str | None = None
    final_metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    # Set-up phases of the attempt: the script's environment (installed, restored or none, and
    # how long it took) and, on a GPU instance type, what nvidia-smi reported.
    environment: dict[str, Any] | None = None
    gpu: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def error_name(self) -> str | None:
        """The task failure's error name; None for a success."""
        if self.outcome == SUCCEEDED:
            return None
        return {
            SCRIPT_FAILED: ERROR_SCRIPT_FAILED,
            INTERRUPTED: ERROR_INTERRUPTED,
            CANCELLED: ERROR_CANCELLED,
            ENVIRONMENT_FAILED: ERROR_ENVIRONMENT_FAILED,
            GPU_UNAVAILABLE: ERROR_GPU_UNAVAILABLE,
        }.get(self.outcome, ERROR_AGENT_FAILED)


def write_result(s3: Any, bucket: str, run_id: str, attempt: int, result: AgentResult) -> None:
    put_json(s3, bucket, attempt_result_key(run_id, attempt), result.to_dict())


def write_handoff(
    s3: Any,
    bucket: str,
    run_id: str,
    attempt: int,
    reason: str,
    checkpoint: dict[str, Any] | None,
    completed_at: str,
) -> None:
    """handoff.json: the interrupted attempt is done with S3 (ReleasePreviousAttempt waits)."""
    put_json(
        s3,
        bucket,
        handoff_key(run_id, attempt),
        {
            "attempt": attempt,
            "reason": reason,
            "checkpoint": checkpoint,
            "completed_at": completed_at,
        },
    )

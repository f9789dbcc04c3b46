"""The attempt's result: result.json in S3 and the task token's output (AgentResult in
lambdas/models/steps.py; the error names mirror lambdas/constants.py)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .bounds import fit_head, fit_json, fit_metrics, fit_tail
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

# The result is SendTaskSuccess's output (256 KiB at most) or SendTaskFailure's cause (32,768
# characters), and sits in the TrainRun state beside the RunSpec (64 KiB), doubled at worst
# when escaped into a caught error's cause. Each part that can grow is capped, so the whole is
# under MAX_RESULT_JSON_BYTES of JSON (ASCII: bytes = characters). lambdas/models/steps.py
# (AgentResult) applies the same caps.
STDERR_TAIL_JSON_BYTES = 8 * 1024
MESSAGE_JSON_BYTES = 4 * 1024
FINAL_METRICS_JSON_BYTES = 12 * 1024
MAX_FINAL_METRICS = 256  # as the run's metrics summary (lambdas/logic/metrics_summary.py)
MAX_METRIC_NAME_CHARS = 255
SETUP_REPORT_JSON_BYTES = 1024
MAX_RESULT_JSON_BYTES = 30 * 1024


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
    # Metric names final_metrics leaves out (every value stays in metrics.jsonl).
    final_metrics_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The result as sent and written, each part within its cap: stderr's last bytes, the
        message's first, the first metric names that fit."""
        metrics, dropped = fit_metrics(
            self.final_metrics, MAX_FINAL_METRICS, MAX_METRIC_NAME_CHARS, FINAL_METRICS_JSON_BYTES
        )
        fields = asdict(self)
        fields.update(
            stderr_tail=fit_tail(self.stderr_tail, STDERR_TAIL_JSON_BYTES),
            message=fit_head(self.message, MESSAGE_JSON_BYTES),
            final_metrics=metrics,
            final_metrics_dropped=self.final_metrics_dropped + dropped,
            environment=fit_json(self.environment, SETUP_REPORT_JSON_BYTES),
            gpu=fit_json(self.gpu, SETUP_REPORT_JSON_BYTES),
        )
        return fields

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

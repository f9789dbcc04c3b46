"""The run record kept in the runs table, and the vocabulary of run states and stop reasons."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RunStatus(StrEnum):
    PENDING = "PENDING"
    LAUNCHING = "LAUNCHING"
    STAGING = "STAGING"
    RUNNING = "RUNNING"
    CHECKPOINTING = "CHECKPOINTING"
    INTERRUPTED = "INTERRUPTED"
    RESUMING = "RESUMING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
LIVE_STATUSES = frozenset(set(RunStatus) - FINAL_STATUSES)


class EndReason(StrEnum):
    """Why an attempt (and so possibly the run) stopped."""

    COMPLETED = "completed"
    SCRIPT_FAILED = "script-failed"
    SPOT_INTERRUPTED = "spot-interrupted"
    REBALANCE = "rebalance"
    CAPACITY = "capacity"
    INSTANCE_LOST = "instance-lost"
    CANCELLED = "cancelled"
    LIMIT_EXCEEDED = "limit-exceeded"
    # Set-up failures that are neither the script's nor AWS capacity's fault.
    START_TIMEOUT = "start-timeout"
    BOOTSTRAP_FAILED = "bootstrap-failed"
    AGENT_FAILED = "agent-failed"
    INTERNAL_ERROR = "internal-error"


class Attempt(BaseModel):
    model_config = ConfigDict(extra="ignore")

    number: int
    status: str | None = None
    instance_id: str | None = None
    instance_type: str | None = None
    availability_zone: str | None = None
    market: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    end_reason: EndReason | None = None


class RunRecord(BaseModel):
    """One item of the runs table, keyed by run_id."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    status: RunStatus
    execution_arn: str
    spec: dict[str, Any]
    experiment: str | None = None
    created_at: str
    updated_at: str
    attempt: int = 1
    attempts: dict[str, Attempt] = Field(
        default_factory=dict, description="by attempt number (a map, so a retried write is a no-op)"
    )
    instance_id: str | None = None
    task_token: str | None = None
    end_reason: EndReason | None = None
    exit_code: int | None = None
    stderr_tail: str | None = None
    error: str | None = None
    ended_at: str | None = None
    duration_seconds: float | None = None
    outputs_uri: str | None = None
    final_metrics: dict[str, Any] = Field(default_factory=dict)
    latest_metrics: dict[str, Any] = Field(default_factory=dict)
    interrupted_by: str | None = Field(
        default=None, description="set by the agent with CHECKPOINTING: what notice it got"
    )

"""The run record kept in the runs table, and the vocabulary of run states and stop reasons."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

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
    # The script's Python environment could not be made, or the GPU does not work.
    ENVIRONMENT_FAILED = "environment-failed"
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
    refused: list[str] | None = Field(
        default=None,
        description="options EC2 refused (or the time budget skipped) before this instance, "
        "e.g. 'spot g5.xlarge in us-east-1a, us-east-1b: InsufficientInstanceCapacity'",
    )


# Where an attempt's hourly price came from (lambdas/logic/pricing.py): EC2's spot price history,
# the static on-demand list price, the static spot estimate (a fixed fraction of on-demand, used
# when the history was unreachable), or no price at all (an instance type the table lacks).
PriceSource = Literal[
    "spot-price-history", "on-demand-list-price", "static-spot-estimate", "unpriced"
]
STATIC_PRICE_SOURCES = frozenset({"on-demand-list-price", "static-spot-estimate"})


class AttemptCost(BaseModel):
    """What one attempt's instance cost: its hourly price times how long it ran."""

    model_config = ConfigDict(extra="ignore")

    number: int
    instance_type: str | None = None
    market: str | None = None
    seconds: float
    usd_per_hour: float | None = Field(
        default=None, description="None when price_source is unpriced"
    )
    usd: float | None = Field(default=None, description="None when price_source is unpriced")
    price_source: PriceSource


class RunCost(BaseModel):
    """The run's instance cost, attempt by attempt (EC2 instance time only: no EBS, S3, Lambda)."""

    model_config = ConfigDict(extra="ignore")

    total_usd: float = Field(description="the sum of the priced attempts")
    currency: Literal["USD"] = "USD"
    attempts: list[AttemptCost] = Field(default_factory=list)
    static_prices_as_of: str | None = Field(
        default=None, description="when the static table's prices were taken, if any was used"
    )

    @property
    def uses_static_fallback(self) -> bool:
        """True when some attempt was priced from the static table rather than from AWS."""
        return any(attempt.price_source in STATIC_PRICE_SOURCES for attempt in self.attempts)

    @property
    def is_complete(self) -> bool:
        """False when some attempt has no price, so total_usd is a lower bound."""
        return all(attempt.usd is not None for attempt in self.attempts)


class MetricSummary(BaseModel):
    """One metric over every attempt's metrics.jsonl. Whether lower or higher is better is the
    reader's call (min and max are both kept)."""

    model_config = ConfigDict(extra="ignore")

    last: int | float
    min: int | float
    max: int | float
    count: int = Field(description="how many finite values were summarised")
    last_step: int | float | None = Field(
        default=None, description='the "step" on the line of the last value, when it had one'
    )


# The run item holds the set-up reports of this many attempts, the newest (each attempt's
# result.json keeps its own): each takes up to ~2 KB of DynamoDB's 400 KB, and a run can have
# ~90 attempts (docs/architecture.md, "Payload limits"). RunsTable.advance_attempt drops the
# oldest as it starts the next attempt.
SETUP_ATTEMPTS_KEPT = 10


class ImageRecord(BaseModel):
    """A container run's image (BuildImage writes it; the agent's digest is per attempt)."""

    model_config = ConfigDict(extra="ignore")

    uri: str
    digest: str | None = None
    build_id: str | None = Field(default=None, description="the CodeBuild build that made it")


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
    stop_requested_at: str | None = Field(
        default=None, description="set by StopRun: the run ends CANCELLED, it is not resumed"
    )
    interrupted_by: str | None = Field(
        default=None, description="set by the agent with CHECKPOINTING: what notice it got"
    )
    image: ImageRecord | None = None
    setup: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "by attempt number, written by the agent: the script's environment (installed, "
            "restored or none, seconds) and the GPU nvidia-smi showed; the newest "
            f"{SETUP_ATTEMPTS_KEPT} attempts' only"
        ),
    )
    checkpoints: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "by attempt number, written by the agent: the checkpoint it resumed from, the newest "
            "durable one, and any that were never durable (instance_agent/checkpoints.py); the "
            f"newest {SETUP_ATTEMPTS_KEPT} attempts' only, like setup"
        ),
    )
    cost: RunCost | None = Field(default=None, description="set by FinalizeRun")
    metrics_summary: dict[str, MetricSummary] = Field(
        default_factory=dict, description="set by FinalizeRun, by metric name"
    )

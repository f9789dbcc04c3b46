"""What a sweep ended with (sweeps/<id>/summary.json), the stop mark, and the Sweep's step
payloads."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lambdas.models.run_spec import HyperparameterValue
from lambdas.models.sweep_spec import SweepHeader, SweepPlan


class SweepRunStatus(StrEnum):
    """A run as the sweep sees it: its record's final status, or why it has none."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"  # never started: the sweep was stopped first
    RUNNING = "RUNNING"  # still going when the sweep ended (only after the Map state failed)


class SweepVerdict(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SweepStop(BaseModel):
    """sweeps/<id>/stop.json: the sweep starts no more runs and its running ones were asked
    to stop. The first mark wins (a conditional write)."""

    model_config = ConfigDict(extra="ignore")

    reason: Literal["failures", "cancelled"]
    requested_at: str
    detail: str = ""


class SweepRunResult(BaseModel):
    """One run's line of the summary."""

    model_config = ConfigDict(extra="ignore")

    index: int
    run_id: str
    swept: dict[str, HyperparameterValue]
    status: SweepRunStatus
    end_reason: str | None = None
    error: str | None = Field(default=None, description="why it failed, one line")
    objective_value: float | None = None
    final_metrics: dict[str, Any] = Field(default_factory=dict)
    cost_usd: float | None = None
    duration_seconds: float | None = None


class SweepCounts(BaseModel):
    model_config = ConfigDict(extra="ignore")

    total: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    running: int = 0


class SweepSummary(BaseModel):
    """sweeps/<id>/summary.json, written by SummarizeSweep however the sweep ended."""

    model_config = ConfigDict(extra="ignore")

    sweep_id: str
    execution_arn: str
    verdict: SweepVerdict
    error: str | None = Field(default=None, description="Runctl.SweepFailed or SweepCancelled")
    message: str
    objective: str | None = None
    best: SweepRunResult | None = None
    counts: SweepCounts
    tolerated_failure_percentage: float
    stop_on_failure: bool
    stop: SweepStop | None = None
    total_cost_usd: float | None = Field(
        default=None, description="sum of the priced runs' costs (None when none was priced)"
    )
    runs: list[SweepRunResult]
    written_at: str


class SweepDigest(BaseModel):
    """SummarizeSweep's output (the sweep execution's output when it succeeds): what fits in a
    state; the whole summary is at summary_uri."""

    model_config = ConfigDict(extra="ignore")

    sweep_id: str
    verdict: SweepVerdict
    error: str | None = None
    message: str
    summary_uri: str
    counts: SweepCounts
    best_run_id: str | None = None
    best_objective_value: float | None = None


# --- step payloads -------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CaughtError(_Payload):
    """What a Catch puts at its ResultPath."""

    Error: str = ""
    Cause: str | None = None


class ExpandSweepInput(_Payload):
    spec: Any
    sweep_id: str
    execution_arn: str


class SweepStart(SweepHeader):
    """ExpandSweep's output, the Sweep's state: what the Map needs, and the run indices. The runs
    themselves (swept values, base spec) stay in plan.json, so the state does not grow with the
    runs' inputs: 1,000 indices are under 4 KiB."""

    indices: list[int]

    @classmethod
    def of(cls, plan: SweepPlan) -> SweepStart:
        fields = plan.model_dump(exclude={"runs", "base_spec"})
        return cls(**fields, indices=[run.index for run in plan.runs])


class PrepareSweepRunInput(_Payload):
    sweep_id: str
    index: int


class PreparedRun(_Payload):
    """PrepareSweepRun's answer: start the run `run_id` with `spec`, or skip it (the sweep
    stopped)."""

    start: bool
    run_id: str
    spec: dict[str, Any] | None = None


class SweepRunFailedInput(_Payload):
    sweep_id: str
    run_id: str
    total_runs: int
    tolerated_failure_percentage: float
    stop_on_failure: bool = True
    error: CaughtError | None = Field(
        default=None, description="what the TrainRun task's Catch caught"
    )


class SweepRunFailedOutput(_Payload):
    stopping: bool = Field(description="the sweep is stopped (now, or it already was)")
    failed_runs: int | None = Field(default=None, description="counted when it was not yet")


class RunStartFailure(_Payload):
    """sweeps/<id>/failures/<run_id>.json, written by OnSweepRunFailed: the error a run's
    TrainRun task was caught with. SummarizeSweep reads it only for a run with neither a final
    record nor an execution (its start failed); no such file and no execution: skipped."""

    run_id: str
    error: str | None = None


class SweepState(_Payload):
    """The Sweep's state object when it reaches SummarizeSweep (ExpandSweep's SweepStart; the
    Map adds nothing), and what the Map state's Catch caught when the Map itself failed."""

    sweep_id: str
    map_error: CaughtError | None = None


class SummarizeSweepInput(_Payload):
    state: SweepState
    train_run_state_machine_arn: str


class StopSweepInput(_Payload):
    sweep_id: str


class StopSweepOutput(_Payload):
    sweep_id: str
    stop: SweepStop | None = Field(description="the stop mark that stands; None: had finished")
    runs_asked_to_stop: list[str] = Field(default_factory=list)
    message: str

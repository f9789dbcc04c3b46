"""Payloads passed between the TrainRun states (the JSONPath state object's parts)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lambdas.models.bounds import fit_head, fit_json, fit_metrics, fit_tail
from lambdas.models.run_spec import RunSpec

# The agent's caps on its result (instance_agent/result.py has the same numbers; a test holds
# them together): the result is the Train task's output, or its failure's cause, in the state
# beside the RunSpec, and its metrics go into the run item. docs/architecture.md, "Payload limits".
STDERR_TAIL_JSON_BYTES = 8 * 1024
MESSAGE_JSON_BYTES = 4 * 1024
FINAL_METRICS_JSON_BYTES = 12 * 1024
MAX_FINAL_METRICS = 256
MAX_METRIC_NAME_CHARS = 255
SETUP_REPORT_JSON_BYTES = 1024
MAX_RESULT_JSON_BYTES = 30 * 1024
# FinalizeRun's cause is the failed TrainRun's cause, which a Sweep item catches inside the run's
# description and escapes twice (up to 4x): a few KiB keep its one readable sentence.
FINAL_CAUSE_JSON_BYTES = 4 * 1024


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ValidateInput(_Payload):
    spec: Any
    run_id: str
    execution_arn: str
    started_at: str | None = None


class RunContext(_Payload):
    """`$.run`: who the run is and what it runs (the spec normalized, defaults filled in)."""

    run_id: str
    execution_arn: str
    attempt: int = 1
    spec: RunSpec
    train_timeout_seconds: int
    avoid_placements: list[str] = Field(
        default_factory=list,
        description="'type@zone' pairs that were just preempted: tried after the others",
    )


class ImageInfo(_Payload):
    """The image an attempt boots (lambdas/logic/images.py: ImageChoice)."""

    name: str
    interpreter: str
    architecture: str
    layered: bool
    nvidia_gpus: int = 0  # to check with nvidia-smi before the script (0: no check)


class InstanceInfo(_Payload):
    """`$.instance`: the instance the current attempt runs on."""

    instance_id: str
    instance_type: str
    availability_zone: str
    market: str
    launched_at: str
    ready_deadline: float = Field(description="epoch seconds; CheckInstance gives up after it")
    image: ImageInfo | None = Field(
        default=None, description="what it boots and which Python runs the script"
    )


class ReadyProbe(_Payload):
    """`$.probe`: result of a bounded polling step."""

    ready: bool
    detail: str = ""
    wait_seconds: int = Field(default=1, ge=1, description="before the next poll (when not ready)")


class BootstrapInfo(_Payload):
    """`$.bootstrap`: the SSM command that installs the agent."""

    command_id: str
    deadline: float


class PreviousAttempt(_Payload):
    """`$.previous`: the attempt being replaced, released before the next one trains."""

    attempt: int
    reason: str
    instance_ids: list[str] = Field(default_factory=list)
    await_handoff: bool = Field(description="an interrupted agent is still checkpointing")
    release_deadline: float = Field(description="epoch seconds; terminate it by then anyway")


class StepInput(_Payload):
    """What the per-instance steps receive."""

    run: RunContext
    instance: InstanceInfo
    bootstrap: BootstrapInfo | None = None
    poll_seconds: int = Field(default=10, ge=1, description="the deployment's base poll interval")
    # The attempt this one replaces (a stop must not cut its handoff short).
    previous: PreviousAttempt | None = None


class StartAgentInput(StepInput):
    task_token: str
    heartbeat_seconds: int = Field(description="the Train state's heartbeat timeout")


class AgentResult(_Payload):
    """What the agent reports when the script ends (task success output, and result.json in S3)."""

    outcome: str
    exit_code: int | None = None
    stderr_tail: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    outputs_uri: str | None = None
    metrics_uri: str | None = None
    logs_uri: str | None = None
    final_metrics: dict[str, Any] = Field(default_factory=dict)
    message: str = ""
    environment: dict[str, Any] | None = Field(
        default=None, description="the script's environment: action, seconds, installer, key"
    )
    gpu: dict[str, Any] | None = Field(
        default=None, description="nvidia-smi on a GPU instance type: driver, CUDA, GPU names"
    )
    final_metrics_dropped: int = Field(
        default=0, description="metric names final_metrics leaves out (all are in metrics.jsonl)"
    )

    @model_validator(mode="after")
    def _within_caps(self) -> AgentResult:
        # The agent sends it capped; what FinalizeRun writes to the run item is capped anyway.
        metrics, dropped = fit_metrics(
            self.final_metrics, MAX_FINAL_METRICS, MAX_METRIC_NAME_CHARS, FINAL_METRICS_JSON_BYTES
        )
        self.final_metrics = dict(metrics)
        self.final_metrics_dropped += dropped
        self.stderr_tail = fit_tail(self.stderr_tail, STDERR_TAIL_JSON_BYTES)
        self.message = fit_head(self.message, MESSAGE_JSON_BYTES)
        self.environment = fit_json(self.environment, SETUP_REPORT_JSON_BYTES)
        self.gpu = fit_json(self.gpu, SETUP_REPORT_JSON_BYTES)
        return self


class StepError(_Payload):
    """`$.error`: what a Catch put there."""

    Error: str
    Cause: str | None = None


class NextAttemptPlan(_Payload):
    """`$.next`: PlanNextAttempt's decision."""

    resume: bool
    reason: str
    detail: str = ""
    run: RunContext | None = None
    previous: PreviousAttempt | None = None


class ReleaseInput(_Payload):
    run: RunContext
    previous: PreviousAttempt | None = None


class FinalizeInput(_Payload):
    run: RunContext
    instance: InstanceInfo | None = None
    result: AgentResult | None = None
    error: StepError | None = None
    next: NextAttemptPlan | None = None


class FinalizeOutput(_Payload):
    run_id: str
    status: str
    end_reason: str
    error: str = "None"
    cause: str = ""
    outputs_uri: str | None = None

    @field_validator("cause")
    @classmethod
    def _short_cause(cls, value: str) -> str:
        return fit_head(value, FINAL_CAUSE_JSON_BYTES)


class StopRunInput(_Payload):
    """What the client sends StopRun."""

    run_id: str = Field(min_length=1, max_length=80)


class StopRunOutput(_Payload):
    run_id: str
    action: Literal["agent-asked-to-stop", "stopping-before-training", "already-finished"]
    message: str


class ImageBuildProbe(_Payload):
    """`$.image_build`: the run's image, and the build that makes it while it is not there."""

    ready: bool
    image_uri: str
    digest: str | None = None
    build_id: str | None = None
    started_at: float | None = Field(default=None, description="when polling began (epoch s)")
    detail: str = ""
    wait_seconds: int = Field(default=1, ge=1, description="before the next poll (when not ready)")


class BuildImageInput(_Payload):
    """BuildImage's input: the run, and its previous poll's answer (None on the first)."""

    run: RunContext
    build: ImageBuildProbe | None = None
    poll_seconds: int = Field(default=10, ge=1)

"""Names shared by the stack, the Lambdas, the agent contract and local mode."""

from typing import Final

# Tags on every instance runctl launches; the reaper and IAM conditions key on them.
TAG_MANAGED: Final = "runctl:managed"
TAG_RUN_ID: Final = "runctl:run-id"
TAG_ATTEMPT: Final = "runctl:attempt"

# S3 layout inside the runctl bucket.
CODE_PREFIX: Final = "code/"
# Docker build contexts (issue #12): contexts/<sha256>.tar.gz, content-addressed by the client.
CONTEXTS_PREFIX: Final = "contexts/"
# An image build's variables (the CodeBuild project's buildspec, stacks/images.py, and local
# mode's stand-in read them): what BuildImage passes per build ...
BUILD_ENV_CONTEXT_URI: Final = "RUNCTL_CONTEXT_URI"  # s3://<bucket>/contexts/<sha256>.tar.gz
BUILD_ENV_DOCKERFILE: Final = "RUNCTL_DOCKERFILE"  # relative to the context root (a user string)
BUILD_ENV_BUILD_ARGS: Final = "RUNCTL_BUILD_ARGS"  # a JSON object of build args (user strings)
BUILD_ENV_IMAGE_URI: Final = "RUNCTL_IMAGE_URI"  # <repository uri>:<tag>
# ... and what the project sets itself: where the build may log in and push.
BUILD_ENV_REGISTRY: Final = "RUNCTL_REGISTRY"
BUILD_ENV_REPOSITORY_URI: Final = "RUNCTL_REPOSITORY_URI"
DATA_PREFIX: Final = "data/"  # datasets users upload to the runctl bucket
AGENT_PREFIX: Final = "agent/"
RUNS_PREFIX: Final = "runs/"
SWEEPS_PREFIX: Final = "sweeps/"
# Built script environments, envs/<sha256>.tar.gz (instance_agent/environment.py).
ENVS_PREFIX: Final = "envs/"


def run_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/"


def attempt_prefix(run_id: str, attempt: int) -> str:
    return f"{run_prefix(run_id)}attempts/{attempt}/"


def agent_config_key(run_id: str, attempt: int) -> str:
    return f"{attempt_prefix(run_id, attempt)}agent-config.json"


def attempt_result_key(run_id: str, attempt: int) -> str:
    return f"{attempt_prefix(run_id, attempt)}result.json"


def handoff_key(run_id: str, attempt: int) -> str:
    """Written by an interrupted attempt's agent once its last checkpoint is durable in S3."""
    return f"{attempt_prefix(run_id, attempt)}handoff.json"


def checkpoint_manifest_key(run_id: str) -> str:
    return f"{checkpoints_prefix(run_id)}latest.json"


def checkpoints_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}checkpoints/"


def checkpoint_version_prefix(run_id: str, version: str) -> str:
    """One upload of one checkpoint: its objects are never overwritten (checkpoint_manifest.py)."""
    return f"{checkpoints_prefix(run_id)}v/{version}/"


def outputs_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}outputs/"


def log_stream_name(run_id: str, attempt: int) -> str:
    return f"{run_id}/{attempt}"


# Error names the agent ends its task token with (the Lambdas' own are their exception class
# names, see lambdas/errors.py). Matched by name, never by message text.
ERROR_SCRIPT_FAILED: Final = "Runctl.ScriptFailed"
ERROR_AGENT_FAILED: Final = "Runctl.AgentFailed"
# The agent got an interruption notice: the state machine starts the next attempt at once while
# the agent checkpoints. The cause is JSON: {"reason": "spot-interrupted"|"rebalance",
# "notice_time": ISO-8601, "termination_time": ISO-8601 or null}.
ERROR_INTERRUPTED: Final = "Runctl.Interrupted"
# OnInstanceEvent fails the stored task token with this when the instance dies without warning.
ERROR_INSTANCE_LOST: Final = "Runctl.InstanceLost"
# The script's environment could not be made: a requirement the installer cannot install (not
# retried: the same file fails again) or, as GpuUnavailable, no working NVIDIA driver on a GPU
# instance type (worth one more attempt on another instance).
ERROR_ENVIRONMENT_FAILED: Final = "Runctl.EnvironmentFailed"
ERROR_GPU_UNAVAILABLE: Final = "Runctl.GpuUnavailable"
# The agent stopped the script on the user's request (StopRun), after its uploads.
ERROR_CANCELLED: Final = "Runctl.Cancelled"
# The notice StopRun sends the agent (as the spot and rebalance notices, in notice.json).
NOTICE_STOP_REQUESTED: Final = "stop-requested"


def sweep_prefix(sweep_id: str) -> str:
    return f"{SWEEPS_PREFIX}{sweep_id}/"


def sweep_plan_key(sweep_id: str) -> str:
    """The sweep's runs and their hyperparameters, written by ExpandSweep."""
    return f"{sweep_prefix(sweep_id)}plan.json"


def sweep_stop_key(sweep_id: str) -> str:
    """Present once the sweep was stopped (too many failures, or cancelled): no more runs."""
    return f"{sweep_prefix(sweep_id)}stop.json"


def sweep_failure_key(sweep_id: str, run_id: str) -> str:
    """Why a run's TrainRun task failed, as the Sweep caught it (OnSweepRunFailed)."""
    return f"{sweep_prefix(sweep_id)}failures/{run_id}.json"


def sweep_summary_key(sweep_id: str) -> str:
    return f"{sweep_prefix(sweep_id)}summary.json"


# A sweep fails with one of these (its Fail state may not use States.* names).
ERROR_SWEEP_FAILED: Final = "Runctl.SweepFailed"
ERROR_SWEEP_CANCELLED: Final = "Runctl.SweepCancelled"

"""The Lambda steps of the state machines: one registry used by the CDK stack and by local mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class LambdaStep:
    name: str  # construct id and ASL placeholder stem
    handler: str  # dotted path, importable from the project root

    @property
    def placeholder(self) -> str:
        """The `${...}` name in the ASL files that is replaced by this function's ARN."""
        return f"{self.name}FunctionArn"


TRAIN_RUN_STEPS: Final = (
    LambdaStep("ValidateRun", "lambdas.handlers.validate_run.lambda_handler"),
    LambdaStep("RecordRun", "lambdas.handlers.record_run.lambda_handler"),
    # Container runs (issue #12): starts and follows the CodeBuild build of a `build` image.
    LambdaStep("BuildImage", "lambdas.handlers.build_image.lambda_handler"),
    LambdaStep("LaunchInstance", "lambdas.handlers.launch_instance.lambda_handler"),
    LambdaStep("CheckInstance", "lambdas.handlers.check_instance.lambda_handler"),
    LambdaStep("BootstrapInstance", "lambdas.handlers.bootstrap_instance.lambda_handler"),
    LambdaStep("CheckBootstrap", "lambdas.handlers.check_bootstrap.lambda_handler"),
    LambdaStep("StartAgent", "lambdas.handlers.start_agent.lambda_handler"),
    LambdaStep("FinalizeRun", "lambdas.handlers.finalize_run.lambda_handler"),
    LambdaStep("PlanNextAttempt", "lambdas.handlers.plan_next_attempt.lambda_handler"),
    LambdaStep(
        "ReleasePreviousAttempt", "lambdas.handlers.release_previous_attempt.lambda_handler"
    ),
)

# Functions started by EventBridge rules, not by the state machine.
EVENT_HANDLERS: Final = (
    # EC2 Spot Instance Interruption Warning, Instance Rebalance Recommendation, and
    # Instance State-change Notification, for instances tagged runctl:managed.
    LambdaStep("OnInstanceEvent", "lambdas.handlers.on_instance_event.lambda_handler"),
    # Every few minutes: terminate instances no live run owns; stop runs over max runtime.
    LambdaStep("ReapOrphans", "lambdas.handlers.reap_orphans.lambda_handler"),
)

# Functions the client invokes.
CLIENT_FUNCTIONS: Final = (
    # `runctl stop RUN`: a graceful stop (checkpoint, upload, finalize as CANCELLED).
    LambdaStep("StopRun", "lambdas.handlers.stop_run.lambda_handler"),
)

# Started by a pipeline's S3 marker rule or its schedule (issue #5); built only when
# runctl:pipelines has entries.
START_PIPELINE_RUN: Final = LambdaStep(
    "StartPipelineRun", "lambdas.handlers.start_pipeline_run.lambda_handler"
)

# The steps of the Sweep state machine (statemachines/sweep.asl.json, issue #5).
SWEEP_STEPS: Final = (
    LambdaStep("ExpandSweep", "lambdas.handlers.expand_sweep.lambda_handler"),
    LambdaStep("PrepareSweepRun", "lambdas.handlers.prepare_sweep_run.lambda_handler"),
    LambdaStep("OnSweepRunFailed", "lambdas.handlers.on_sweep_run_failed.lambda_handler"),
    LambdaStep("SummarizeSweep", "lambdas.handlers.summarize_sweep.lambda_handler"),
)
# `runctl sweeps cancel`: stop a sweep's runs gracefully and start no more.
STOP_SWEEP: Final = LambdaStep("StopSweep", "lambdas.handlers.stop_sweep.lambda_handler")
# sweep.asl.json's placeholder for the TrainRun state machine each run is an execution of.
TRAIN_RUN_ARN_PLACEHOLDER: Final = "TrainRunStateMachineArn"

# Non-ARN placeholders of train_run.asl.json, with the value `cdk deploy` uses.
TRAIN_RUN_SETTINGS: Final = {
    # An EC2 instance is never running and online in SSM in under a minute: the first check
    # waits that long, so a boot costs a few polls (each ~9 history events), not a dozen.
    "FirstPollSeconds": "45",
    "PollIntervalSeconds": "10",
    "HeartbeatSeconds": "300",
}

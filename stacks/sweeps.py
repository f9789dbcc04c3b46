"""Hyperparameter sweeps (issue #5): the Sweep state machine, its step Lambdas (SWEEP_STEPS) and
StopSweep, the function `runctl sweeps cancel` invokes.

The Sweep runs each combination as a nested TrainRun execution (`startExecution.sync:2`), so its
role may start TrainRun, follow and stop TrainRun's executions, and manage the EventBridge rule
Step Functions uses to learn that a nested execution ended (the documented needs of `.sync`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.constants import SWEEPS_PREFIX
from lambdas.functions import STOP_SWEEP, SWEEP_STEPS, TRAIN_RUN_ARN_PLACEHOLDER
from stacks.compute import Compute
from stacks.nag_acknowledgements import acknowledge_resource_wildcard
from stacks.orchestration import (
    DEFAULT_TIMEOUT,
    Orchestration,
    logged_state_machine,
    state_machine_role,
)
from stacks.step_permissions import FunctionPermissions, StepPermissions

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
SWEEP_ASL: Final = REPO_ROOT / "statemachines" / "sweep.asl.json"
# The managed rule Step Functions creates in the account for `.sync` on a nested execution.
SYNC_EVENTS_RULE: Final = "StepFunctionsGetEventsForStepFunctionsExecutionRule"
# OnSweepRunFailed, SummarizeSweep and StopSweep read every run's record (up to 500 of them).
WHOLE_SWEEP_TIMEOUT: Final = Duration.minutes(2)
WHOLE_SWEEP_STEPS: Final = frozenset({"OnSweepRunFailed", "SummarizeSweep", STOP_SWEEP.name})


class SweepPermissions(FunctionPermissions):
    """Grants each sweep function (by registry name) the calls its handler makes."""

    def __init__(
        self,
        *,
        bucket: s3.IBucket,
        runs_table: dynamodb.ITable,
        compute: Compute,
        train_run: sfn.StateMachine,
        run_validation: StepPermissions,
    ) -> None:
        super().__init__(bucket=bucket, runs_table=runs_table, compute=compute)
        self._train_run = train_run
        self._run_validation = run_validation
        self._by_step = {
            "ExpandSweep": self._grant_expand_sweep,
            "PrepareSweepRun": self._read_sweep_files,
            "OnSweepRunFailed": self._grant_stop_runs,
            "SummarizeSweep": self._grant_summarize_sweep,
            STOP_SWEEP.name: self._grant_stop_runs,
        }

    def train_run_executions_arn(self) -> str:
        return self._stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self._train_run.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _grant_expand_sweep(self, function: lambda_.Function) -> None:
        # ExpandSweep runs ValidateRun's checks on the first run: the same grants.
        self._run_validation.grant("ValidateRun", function)
        self._write_sweep_files(function, "plan.json")

    def _grant_summarize_sweep(self, function: lambda_.Function) -> None:
        self._read_sweep_files(function)
        self._write_sweep_files(function, "summary.json")
        self._read_run_records(function)
        # A run without a final record is told by its execution (never started, or failed early).
        self._allow(
            function,
            "DescribeTrainRuns",
            ["states:DescribeExecution"],
            [self.train_run_executions_arn()],
            wildcard_reason="executions of the TrainRun state machine only; the runs' execution "
            "names are chosen per sweep",
        )

    def _grant_stop_runs(self, function: lambda_.Function) -> None:
        self._read_sweep_files(function)
        self._write_sweep_files(function, "stop.json")
        # Reads every run of the sweep; marks the live ones stop-requested, as StopRun does.
        self._update_run_record(function)
        self._send_command(function)

    def _read_sweep_files(self, function: lambda_.Function) -> None:
        # A missing stop.json must read as 404 (not stopped).
        self._read_files(
            function,
            "ReadSweepFiles",
            SWEEPS_PREFIX,
            "reads sweeps/<sweep_id>/{plan,stop}.json, keys made per sweep",
        )

    def _write_sweep_files(self, function: lambda_.Function, name: str) -> None:
        self._allow(
            function,
            "WriteSweepFiles",
            ["s3:PutObject"],
            [self._bucket.arn_for_objects(f"{SWEEPS_PREFIX}*")],
            wildcard_reason=f"writes sweeps/<sweep_id>/{name}, a key made per sweep",
        )


class Sweeps(Construct):
    """One Lambda per SWEEP_STEPS entry, StopSweep, and the Sweep state machine."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        orchestration: Orchestration,
        permissions: SweepPermissions,
        train_run: sfn.StateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = Stack.of(self)
        self.functions: dict[str, lambda_.Function] = {}
        for entry in (*SWEEP_STEPS, STOP_SWEEP):
            function = orchestration.build_function(
                self,
                entry,
                description=f"runctl Sweep step {entry.name}",
                timeout=WHOLE_SWEEP_TIMEOUT if entry.name in WHOLE_SWEEP_STEPS else DEFAULT_TIMEOUT,
            )
            permissions.grant(entry.name, function)
            self.functions[entry.name] = function

        self.definition_substitutions: dict[str, str] = {
            TRAIN_RUN_ARN_PLACEHOLDER: train_run.state_machine_arn,
            **{step.placeholder: self.functions[step.name].function_arn for step in SWEEP_STEPS},
        }
        self.state_machine = self._sweep_state_machine(permissions)

    def _sweep_state_machine(self, permissions: SweepPermissions) -> sfn.StateMachine:
        stack = self._stack
        role = state_machine_role(
            self, "Sweep", [self.functions[step.name] for step in SWEEP_STEPS]
        )
        train_run_arn = self.definition_substitutions[TRAIN_RUN_ARN_PLACEHOLDER]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="StartTrainRuns", actions=["states:StartExecution"], resources=[train_run_arn]
            )
        )
        executions = permissions.train_run_executions_arn()
        role.add_to_policy(
            iam.PolicyStatement(
                sid="FollowAndStopTrainRuns",
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[executions],
            )
        )
        acknowledge_resource_wildcard(
            role,
            executions,
            "executions of the TrainRun state machine only (a run's execution is named at start "
            "time); .sync follows and, when the task is stopped, stops it",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="SyncEventsRule",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    stack.format_arn(
                        service="events", resource="rule", resource_name=SYNC_EVENTS_RULE
                    )
                ],
            )
        )
        return logged_state_machine(self, "Sweep", SWEEP_ASL, self.definition_substitutions, role)

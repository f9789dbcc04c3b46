"""The Sweep state machine, its Lambdas and their permissions (issue #5)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lambdas.functions import STOP_SWEEP, SWEEP_STEPS, TRAIN_RUN_ARN_PLACEHOLDER

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

ASL_FILE = Path(__file__).resolve().parents[2] / "statemachines" / "sweep.asl.json"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
SWEEP_FUNCTIONS = (*SWEEP_STEPS, STOP_SWEEP)


def _sweep_machine(synthesized):
    return synthesized.resource(synthesized.stack.sweeps.state_machine)["Properties"]


def _actions(synthesized, name):
    """{action: [resources]} over the role of one sweep function."""
    role = synthesized.stack.sweeps.functions[name].role
    granted: dict[str, list] = {}
    for statement in synthesized.role_statements(role):
        for action in synthesized.listed(statement["Action"]):
            granted.setdefault(action, []).extend(synthesized.listed(statement["Resource"]))
    return granted


def _train_run_id(synthesized):
    return synthesized.logical_id(synthesized.stack.orchestration.state_machine)


def _names_train_run_executions(resource, train_run_id) -> bool:
    parts = json.dumps(resource)
    return ":execution:" in parts and train_run_id in parts and parts.endswith(':*"]]}')


# --- the definition -----------------------------------------------------------------------------


def test_every_placeholder_of_the_sweep_is_substituted_and_every_substitution_used(synthesized):
    used = set(PLACEHOLDER.findall(ASL_FILE.read_text()))
    passed = set(_sweep_machine(synthesized)["DefinitionSubstitutions"])

    assert used == passed
    assert passed == {TRAIN_RUN_ARN_PLACEHOLDER} | {step.placeholder for step in SWEEP_STEPS}


def test_deployed_sweep_definition_runs_train_run_at_the_requested_parallelism(synthesized):
    # Given the staged definition with each substitution applied as CloudFormation does
    props = _sweep_machine(synthesized)
    text = (synthesized.outdir / f"asset.{props['DefinitionS3Location']['Key']}").read_text()
    for name in props["DefinitionSubstitutions"]:
        text = text.replace("${" + name + "}", f"arn:{name}")

    # Then nothing is left unsubstituted, and the Map takes its concurrency from the input
    assert "${" not in text
    states = json.loads(text)["States"]
    run_all = states["RunAll"]
    assert run_all["MaxConcurrencyPath"] == "$.max_parallel"
    train = run_all["ItemProcessor"]["States"]["TrainRun"]
    assert train["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert train["Parameters"]["StateMachineArn"] == f"arn:{TRAIN_RUN_ARN_PLACEHOLDER}"
    assert train["Parameters"]["Name.$"] == "$.prepared.run_id"
    # and the summary is written however the Map ends
    assert run_all["Catch"][0]["Next"] == "SummarizeSweep"


def test_the_train_run_substitution_is_the_train_run_state_machine(synthesized):
    substitutions = _sweep_machine(synthesized)["DefinitionSubstitutions"]

    assert substitutions[TRAIN_RUN_ARN_PLACEHOLDER] == {"Ref": _train_run_id(synthesized)}
    for step in SWEEP_STEPS:
        function_id = synthesized.logical_id(synthesized.stack.sweeps.functions[step.name])
        assert substitutions[step.placeholder] == {"Fn::GetAtt": [function_id, "Arn"]}


def test_sweep_state_machine_logs_everything_and_traces(synthesized):
    props = _sweep_machine(synthesized)

    assert props["StateMachineType"] == "STANDARD"
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["TracingConfiguration"] == {"Enabled": True}


# --- the state machine's role -------------------------------------------------------------------


def test_sweep_role_starts_follows_and_stops_only_train_run(synthesized):
    role = synthesized.stack.sweeps.state_machine.role
    by_action: dict[str, list] = {}
    for statement in synthesized.role_statements(role):
        for action in synthesized.listed(statement["Action"]):
            by_action.setdefault(action, []).extend(synthesized.listed(statement["Resource"]))
    train_run = _train_run_id(synthesized)

    assert by_action["states:StartExecution"] == [{"Ref": train_run}]
    for action in ("states:DescribeExecution", "states:StopExecution"):
        (resource,) = by_action[action]
        assert _names_train_run_executions(resource, train_run)
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        (rule,) = by_action[action]
        assert json.dumps(rule).endswith(
            ':rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"]]}'
        )
    invoked = {
        resource["Fn::GetAtt"][0] if "Fn::GetAtt" in resource else None
        for resource in by_action["lambda:InvokeFunction"]
    } - {None}
    sweeps = synthesized.stack.sweeps.functions
    assert invoked == {synthesized.logical_id(sweeps[step.name]) for step in SWEEP_STEPS}


# --- the functions ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", SWEEP_FUNCTIONS, ids=[entry.name for entry in SWEEP_FUNCTIONS])
def test_each_sweep_function_runs_its_registry_handler(synthesized, entry):
    function = synthesized.stack.sweeps.functions[entry.name]
    props = synthesized.resource(function)["Properties"]

    assert props["Handler"] == entry.handler
    assert props["TracingConfig"] == {"Mode": "Active"}


def test_sweep_functions_get_only_what_they_call(synthesized):
    expand = _actions(synthesized, "ExpandSweep")
    prepare = _actions(synthesized, "PrepareSweepRun")
    summarize = _actions(synthesized, "SummarizeSweep")

    # ExpandSweep checks the code like ValidateRun and writes the plan; it never touches runs
    assert {"s3:GetObject", "s3:ListBucket", "s3:PutObject"} <= set(expand)
    assert not any(action.startswith(("dynamodb:", "states:", "ssm:")) for action in expand)
    # PrepareSweepRun only reads the stop mark
    assert {action for action in prepare if not action.startswith(("logs:", "xray:"))} == {
        "s3:GetObject",
        "s3:ListBucket",
    }
    # SummarizeSweep reads records (never writes them) and describes TrainRun executions
    assert "dynamodb:GetItem" in summarize
    assert "dynamodb:UpdateItem" not in summarize
    (executions,) = summarize["states:DescribeExecution"]
    assert _names_train_run_executions(executions, _train_run_id(synthesized))
    assert "states:StopExecution" not in summarize


@pytest.mark.parametrize("name", ["OnSweepRunFailed", "StopSweep"])
def test_functions_that_stop_a_sweep_stop_runs_as_stop_run_does(synthesized, name):
    granted = _actions(synthesized, name)

    assert {"dynamodb:GetItem", "dynamodb:UpdateItem", "ssm:SendCommand"} <= set(granted)
    assert not any(action.startswith("states:") for action in granted)
    assert "ec2:TerminateInstances" not in granted


def test_sweep_writes_stay_under_the_sweeps_prefix(synthesized):
    for entry in SWEEP_FUNCTIONS:
        for resource in _actions(synthesized, entry.name).get("s3:PutObject", []):
            assert json.dumps(resource).endswith('/sweeps/*"]]}'), (entry.name, resource)


def test_the_client_finds_the_sweep_machine_and_stop_function_by_output(synthesized):
    outputs = synthesized.template_json["Outputs"]
    sweeps = synthesized.stack.sweeps

    assert outputs["SweepStateMachineArn"]["Value"] == {
        "Ref": synthesized.logical_id(sweeps.state_machine)
    }
    assert outputs["StopSweepFunctionName"]["Value"] == {
        "Ref": synthesized.logical_id(sweeps.functions["StopSweep"])
    }

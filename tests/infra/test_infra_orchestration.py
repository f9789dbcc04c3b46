"""The step Lambdas, their permissions, and the TrainRun state machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lambdas.env import LambdaEnv
from lambdas.functions import EVENT_HANDLERS, TRAIN_RUN_SETTINGS, TRAIN_RUN_STEPS

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

REPO_ROOT = Path(__file__).resolve().parents[2]
ASL_FILE = REPO_ROOT / "statemachines" / "train_run.asl.json"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
STEP_NAMES = [step.name for step in TRAIN_RUN_STEPS]


def _function(synthesized, name):
    return synthesized.resource(synthesized.stack.orchestration.functions[name])


def _all_functions(synthesized):
    """Every runctl Lambda by registry name: the TrainRun steps and the event handlers."""
    return {
        **synthesized.stack.orchestration.functions,
        **synthesized.stack.instance_events.functions,
    }


def _actions_by_step(synthesized):
    """{function name: {action: [statements granting it]}} over each Lambda's role (the steps
    and the event handlers: an action must not leak to either)."""
    by_step = {}
    for name, function in _all_functions(synthesized).items():
        granted = {}
        for statement in synthesized.role_statements(function.role):
            for action in synthesized.listed(statement["Action"]):
                granted.setdefault(action, []).append(statement)
        by_step[name] = granted
    return by_step


# --- the functions ------------------------------------------------------------------------------


@pytest.mark.parametrize("step", TRAIN_RUN_STEPS, ids=STEP_NAMES)
def test_each_step_runs_its_registry_handler_from_the_lambdas_package(synthesized, step):
    props = _function(synthesized, step.name)["Properties"]

    assert props["Handler"] == step.handler
    assert props["Handler"].startswith("lambdas.handlers.")
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == 256
    assert props["Timeout"] == 60
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert "LoggingConfig" in props  # its own log group, with retention


@pytest.mark.parametrize("step", TRAIN_RUN_STEPS, ids=STEP_NAMES)
def test_each_step_gets_every_lambda_env_variable(synthesized, step):
    variables = _function(synthesized, step.name)["Properties"]["Environment"]["Variables"]

    assert set(LambdaEnv.model_fields) <= set(variables)
    assert variables["POWERTOOLS_SERVICE_NAME"] == "runctl"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "runctl"
    assert variables["DEFAULT_INSTANCE_TYPES"] == "g5.xlarge,g4dn.xlarge,g6.xlarge"
    assert variables["SUBNET_IDS"] == ""  # the default VPC's subnets, found at run time


def test_steps_depend_on_the_powertools_v3_layer_only(synthesized):
    # Which layer (the pinned release's): test_infra_powertools_layer.py
    layer_arn = synthesized.stack.orchestration.powertools_layer.layer_version_arn
    expected = synthesized.stack.resolve(layer_arn)
    for name in STEP_NAMES:
        [layer] = _function(synthesized, name)["Properties"]["Layers"]
        assert layer == expected


def test_agent_location_handed_to_the_lambdas_is_the_agent_asset(synthesized):
    asset = synthesized.stack.compute.agent_asset
    variables = _function(synthesized, "BootstrapInstance")["Properties"]["Environment"]

    uri = json.dumps(variables["Variables"]["AGENT_S3_URI"])
    assert '"s3://cdk-' in uri
    assert uri.endswith("/" + asset.s3_object_key + '"}')


def test_lambda_code_asset_holds_only_the_lambdas_package(synthesized):
    # Given the directory CDK staged (and will zip) for the step functions' code
    code = _function(synthesized, "ValidateRun")["Properties"]["Code"]
    asset_hash = code["S3Key"].removesuffix(".zip")
    staged = synthesized.outdir / f"asset.{asset_hash}"
    files = {path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()}

    # Then every file is a source file of the lambdas/ package (importable as lambdas.*)
    assert files, "the code asset is empty"
    assert {name.split("/")[0] for name in files} == {"lambdas"}
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    assert "lambdas/functions.py" in files
    # And each handler module is in it (all functions share the one asset)
    for step in (*TRAIN_RUN_STEPS, *EVENT_HANDLERS):
        module = step.handler.rsplit(".", 1)[0].replace(".", "/") + ".py"
        if (REPO_ROOT / module).exists():
            assert module in files
    # And every function, step or event handler, runs from that same asset
    assert {
        synthesized.resource(function)["Properties"]["Code"]["S3Key"]
        for function in _all_functions(synthesized).values()
    } == {code["S3Key"]}


def _staged_asset(outdir, s3_key):
    """The folder CDK staged for a zip asset, as the assets manifest names it (what `cdk deploy`
    zips), and the asset's hash."""
    asset_hash = s3_key.removesuffix(".zip")
    [manifest] = outdir.glob("*.assets.json")
    source = json.loads(manifest.read_text())["files"][asset_hash]["source"]
    assert source["packaging"] == "zip"
    return outdir / source["path"], asset_hash


def _file_contents(folder):
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


def _belongs_in_code_asset(name):
    """A file of the lambdas/ package the Lambdas need: no caches, compiled or tool files."""
    parts = name.split("/")
    return not (
        any(part.startswith(".") or part == "__pycache__" for part in parts)
        or name.endswith((".pyc", ".pyo"))
        or parts[-1] == "ruff.toml"
    )


# What app.py reads to synthesize; runs app.py as `cdk synth` does and says where it imported
# the stack code from.
APP_PARTS = ("app.py", "cdk.json", "stacks", "lambdas", "instance_agent", "statemachines")
SYNTH_AND_SAY_WHERE = """
import runpy, sys
sys.argv = ["app.py"]
runpy.run_path("app.py", run_name="__main__")
print(sys.modules["stacks.orchestration"].__file__)
"""


@pytest.fixture(scope="module")
def dotted_checkout(tmp_path_factory):
    """The app synthesized from a copy of the project in a folder whose name has a dot, as an
    unpacked release has (runctl-0.1.0), with the strays a working copy collects."""
    project = tmp_path_factory.mktemp("release") / "runctl-0.1.0"
    for part in APP_PARTS:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, project / part)
        else:
            project.mkdir(exist_ok=True)
            shutil.copy(source, project / part)
    strays = project / "lambdas" / "__pycache__", project / "lambdas" / ".ruff_cache"
    for stray in strays:
        stray.mkdir(exist_ok=True)
        (stray / "stray.cpython-311.pyc").write_bytes(b"\x00")
    (project / "lambdas" / "handlers" / "ruff.toml").write_text("line-length = 100\n")
    (project / "notes.txt").write_text("not code\n")

    outdir = project / "cdk.out"
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"CDK_DEFAULT_ACCOUNT", "PYTHONPATH"}
    }
    env.update(CDK_OUTDIR=str(outdir), JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    done = subprocess.run(
        [sys.executable, "-c", SYNTH_AND_SAY_WHERE],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported_from = Path(done.stdout.strip().splitlines()[-1])
    assert imported_from.is_relative_to(project), imported_from
    return project, outdir


def test_code_asset_from_a_checkout_with_a_dot_in_its_name(synthesized, dotted_checkout):
    # Given the app synthesized from a folder named runctl-0.1.0
    project, outdir = dotted_checkout
    [template_file] = outdir.glob("*.template.json")
    resources = json.loads(template_file.read_text())["Resources"]
    keys = {
        body["Properties"]["Code"]["S3Key"]
        for body in resources.values()
        if body["Type"] == "AWS::Lambda::Function"
    }

    # When we read the folder CDK staged for the functions' code (one asset for all)
    [key] = keys
    staged, asset_hash = _staged_asset(outdir, key)
    files = _file_contents(staged)

    # Then it holds exactly the lambdas/ package's source files, byte for byte: no stray cache,
    # compiled file or ruff.toml, nothing from outside lambdas/
    package = project / "lambdas"
    expected = {
        f"lambdas/{name}": content
        for name, content in _file_contents(package).items()
        if _belongs_in_code_asset(name)
    }
    assert "lambdas/handlers/validate_run.py" in files
    assert files == expected
    # And its staged folder is named by the hash alone, not after the checkout's "extension"
    assert staged.name == f"asset.{asset_hash}"
    # And the hash depends on the files only: the same files give the same hash as the
    # repo's own synth, wherever the checkout is (different files, if lambdas/ was edited
    # meanwhile, a different one)
    code = _function(synthesized, "ValidateRun")["Properties"]["Code"]
    repo_staged, repo_hash = _staged_asset(synthesized.outdir, code["S3Key"])
    assert (repo_hash == asset_hash) == (_file_contents(repo_staged) == files)


# --- least privilege ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "steps"),
    [
        ("ec2:RunInstances", {"LaunchInstance"}),
        ("iam:PassRole", {"LaunchInstance"}),
        ("ec2:CreateTags", {"LaunchInstance"}),
        (
            "ec2:TerminateInstances",
            {"FinalizeRun", "ReleasePreviousAttempt", "ReapOrphans"},
        ),
        ("ssm:SendCommand", {"BootstrapInstance", "StartAgent", "OnInstanceEvent"}),
        ("ssm:GetCommandInvocation", {"CheckBootstrap", "StartAgent"}),
        ("s3:PutObject", {"StartAgent"}),
        (
            "s3:ListBucket",
            {
                "ValidateRun",
                "PlanNextAttempt",
                "ReleasePreviousAttempt",
                "FinalizeRun",
                "ReapOrphans",
            },
        ),
        ("dynamodb:PutItem", {"RecordRun", "FinalizeRun"}),
        ("dynamodb:Scan", {"RecordRun", "FinalizeRun", "ReapOrphans"}),
        (
            "dynamodb:UpdateItem",
            {
                "RecordRun",
                "BuildImage",
                "LaunchInstance",
                "StartAgent",
                "FinalizeRun",
                "PlanNextAttempt",
                "OnInstanceEvent",
                "ReapOrphans",
            },
        ),
        ("states:SendTaskFailure", {"OnInstanceEvent"}),
        ("states:StopExecution", {"ReapOrphans"}),
        ("states:DescribeExecution", {"ReapOrphans"}),
    ],
)
def test_sensitive_actions_are_granted_only_to_the_steps_that_use_them(synthesized, action, steps):
    by_step = _actions_by_step(synthesized)

    assert {name for name, granted in by_step.items() if action in granted} == steps


@pytest.mark.parametrize("step", ["CheckInstance", "CheckBootstrap"])
def test_the_boot_polls_may_only_read_the_run_record_to_see_a_stop(synthesized, step):
    granted = _actions_by_step(synthesized)[step]

    assert {action for action in granted if action.startswith("dynamodb:")} == {"dynamodb:GetItem"}


def test_no_function_role_grants_a_service_wide_action(synthesized):
    for name, granted in _actions_by_step(synthesized).items():
        assert not [action for action in granted if action == "*" or action.endswith(":*")], name


def test_pass_role_is_only_the_instance_role_and_only_to_ec2(synthesized):
    # Given every statement in the stack that allows iam:PassRole
    instance_role_id = synthesized.logical_id(synthesized.stack.compute.instance_role)
    passing = [
        statement
        for found in synthesized.policy_statements().values()
        for statement in found
        if "iam:PassRole" in synthesized.listed(statement["Action"])
    ]

    # Then there is one, for the instance role, conditioned on EC2 as the receiving service
    [statement] = passing
    assert statement["Resource"] == {"Fn::GetAtt": [instance_role_id, "Arn"]}
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


@pytest.mark.parametrize(
    ("step", "action", "condition"),
    [
        (
            "LaunchInstance",
            "ec2:CreateTags",
            {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
        ),
        *(
            (
                step,
                "ec2:TerminateInstances",
                {"StringEquals": {"aws:ResourceTag/runctl:managed": "true"}},
            )
            for step in ("FinalizeRun", "ReleasePreviousAttempt", "ReapOrphans")
        ),
    ],
)
def test_instance_changes_are_limited_by_condition(synthesized, step, action, condition):
    [statement] = _actions_by_step(synthesized)[step][action]

    assert statement["Condition"] == condition


def test_instances_can_only_be_launched_with_imdsv2_required(synthesized):
    # Given the statements that let LaunchInstance call RunInstances
    found = _actions_by_step(synthesized)["LaunchInstance"]["ec2:RunInstances"]

    # Then the instance resource is allowed only when the request requires IMDSv2 tokens
    on_instances = [item for item in found if ":instance/*" in json.dumps(item["Resource"])]
    assert [item["Condition"] for item in on_instances] == [
        {"StringEquals": {"ec2:MetadataHttpTokens": "required"}}
    ]
    assert json.dumps(on_instances[0]["Resource"]).endswith(':instance/*"]]}')


@pytest.mark.parametrize("step", ["BootstrapInstance", "StartAgent", "OnInstanceEvent"])
def test_commands_go_only_to_runctl_instances_and_only_as_shell_scripts(synthesized, step):
    # Given the statements allowing ssm:SendCommand
    found = _actions_by_step(synthesized)[step]["ssm:SendCommand"]

    # Then instances need the managed tag, and the only document is AWS-RunShellScript
    by_resource = {json.dumps(item["Resource"]): item.get("Condition") for item in found}
    assert len(by_resource) == 2
    for resource, condition in by_resource.items():
        if ":instance/*" in resource:
            assert condition == {"StringEquals": {"ssm:resourceTag/runctl:managed": "true"}}
        else:
            assert resource.endswith('::document/AWS-RunShellScript"'), resource
            assert condition is None


# --- the state machine --------------------------------------------------------------------------


def _state_machine(synthesized):
    return synthesized.resource(synthesized.stack.orchestration.state_machine)["Properties"]


def test_state_machine_logs_everything_and_traces(synthesized):
    props = _state_machine(synthesized)

    assert props["StateMachineType"] == "STANDARD"
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert props["TracingConfiguration"] == {"Enabled": True}


def test_every_asl_placeholder_gets_a_substitution(synthesized):
    # Given the placeholders in the ASL file and the substitutions the template passes
    used = set(PLACEHOLDER.findall(ASL_FILE.read_text()))
    passed = set(_state_machine(synthesized)["DefinitionSubstitutions"])

    # Then each placeholder is substituted, and each step and setting is used by the ASL
    assert used <= passed, f"no substitution for {sorted(used - passed)}"
    assert {step.placeholder for step in TRAIN_RUN_STEPS} | set(TRAIN_RUN_SETTINGS) == passed
    assert passed <= used, f"substituted but never used in the ASL: {sorted(passed - used)}"


def test_deployed_definition_has_no_unresolved_placeholder(synthesized):
    # Given the definition file CDK staged for upload (DefinitionS3Location), which
    # CloudFormation fills in with DefinitionSubstitutions at deploy time
    props = _state_machine(synthesized)
    staged = synthesized.outdir / f"asset.{props['DefinitionS3Location']['Key']}"
    text = staged.read_text()

    # When each substitution is applied as CloudFormation does (plain text replacement)
    for name in props["DefinitionSubstitutions"]:
        text = text.replace("${" + name + "}", "1" if name in TRAIN_RUN_SETTINGS else "arn")

    # Then no ${...} is left and the result is JSON
    assert "${" not in text
    assert json.loads(text)["StartAt"]
    assert staged.read_text() == ASL_FILE.read_text()


def test_substitutions_carry_the_function_arns_and_settings(synthesized):
    substitutions = _state_machine(synthesized)["DefinitionSubstitutions"]

    for name, function in synthesized.stack.orchestration.functions.items():
        step_id = synthesized.logical_id(function)
        assert substitutions[f"{name}FunctionArn"] == {"Fn::GetAtt": [step_id, "Arn"]}
    assert substitutions["PollIntervalSeconds"] == TRAIN_RUN_SETTINGS["PollIntervalSeconds"]
    assert substitutions["HeartbeatSeconds"] == TRAIN_RUN_SETTINGS["HeartbeatSeconds"]


def test_state_machine_role_invokes_exactly_the_step_functions(synthesized):
    # Given the explicit role of the state machine
    orchestration = synthesized.stack.orchestration
    role_id = synthesized.logical_id(orchestration.state_machine.role)
    assert _state_machine(synthesized)["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    granted = synthesized.role_statements(orchestration.state_machine.role)

    # When we collect the functions it may invoke (ARN, or ARN:* for versions and aliases)
    invoked = set()
    for statement in granted:
        actions = synthesized.listed(statement["Action"])
        if not any(action.startswith("lambda:") for action in actions):
            continue
        assert actions == ["lambda:InvokeFunction"]
        for resource in synthesized.listed(statement["Resource"]):
            attribute = resource.get("Fn::GetAtt") or resource["Fn::Join"][1][0]["Fn::GetAtt"]
            invoked.add(attribute[0])

    # Then they are exactly the step functions
    assert invoked == {synthesized.logical_id(fn) for fn in orchestration.functions.values()}

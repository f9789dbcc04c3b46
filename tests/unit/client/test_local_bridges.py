"""Local-mode adapters: ASL substitution, the agent zip, Lambda error mapping, instance commands."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.ec2.models.instances import InstanceBackend

from instance_agent import imds
from lambdas.functions import TRAIN_RUN_SETTINGS, TRAIN_RUN_STEPS
from runctl.local.deploy import STATEMACHINES_DIR, agent_zip, substitute
from runctl.local.ec2_bridge import Ec2Bridge
from runctl.local.instances import LocalInstance
from runctl.local.lambda_bridge import patched_invoke


def test_every_placeholder_of_train_run_is_substituted():
    # Given the substitutions local mode builds from the same registry as the stack
    substitutions = {**TRAIN_RUN_SETTINGS}
    substitutions |= {
        step.placeholder: f"arn:aws:lambda:::function:{step.name}" for step in TRAIN_RUN_STEPS
    }

    # Then the definition has no placeholder left and is valid JSON
    definition = substitute((STATEMACHINES_DIR / "train_run.asl.json").read_text(), substitutions)
    assert "${" not in definition
    assert json.loads(definition)["StartAt"] == "Init"


def test_an_unknown_placeholder_is_an_error():
    with pytest.raises(ValueError, match="Missing"):
        substitute('{"a": "${Missing}"}', {})


def test_agent_zip_holds_the_package_files_at_its_root_without_caches():
    names = zipfile.ZipFile(io.BytesIO(agent_zip())).namelist()
    assert "__main__.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def _function(handler: str) -> SimpleNamespace:
    return SimpleNamespace(
        handler=handler,
        environment_vars={},
        function_name="fn",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
    )


def test_handler_exception_becomes_a_function_error_named_by_its_class():
    # Given a handler that raises RunSpecInvalid
    headers: dict[str, str] = {}
    body = patched_invoke(
        _function("tests.unit.client.handlers_for_tests.raises_runspec_invalid"), "{}", {}, headers
    )

    # Then moto sees a function error whose errorType Step Functions' Catch can match
    assert headers["x-amz-function-error"] == "Unhandled"
    payload = json.loads(body)
    assert payload["errorType"] == "RunSpecInvalid"
    assert payload["errorMessage"] == "entry_point: bad"


def test_disabled_metrics_never_reach_stdout_however_many_invocations(capsys, monkeypatch):
    # Given local mode's switch, and more invocations than Powertools' 100-value auto-flush
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    function = _function("tests.unit.client.handlers_for_tests.counts_a_metric")
    for _ in range(150):
        patched_invoke(function, "{}", {}, {})

    # Then no EMF JSON was printed on the user's terminal
    assert "CloudWatchMetrics" not in capsys.readouterr().out


def test_handler_result_is_returned_as_json():
    headers: dict[str, str] = {}
    body = patched_invoke(
        _function("tests.unit.client.handlers_for_tests.echo"), '{"x": 1}', {}, headers
    )
    assert headers == {}
    assert json.loads(body) == {"echo": {"x": 1}}


def test_instance_runs_shell_commands_in_its_home_with_its_imds(tmp_path):
    instance = LocalInstance(
        "i-1", "g5.xlarge", "us-east-1a", tmp_path / "i-1", {"PATH": "/usr/bin:/bin"}, 0
    )
    try:
        result = instance.run_shell(
            ['echo "$RUNCTL_HOME"', 'echo "$AWS_EC2_METADATA_SERVICE_ENDPOINT"', "exit 3"], 30
        )
        assert result.status == "Failed"
        assert result.exit_code == 3
        home, endpoint = result.stdout.split()
        assert home == str(tmp_path / "i-1")
        assert endpoint == instance.imds.endpoint
    finally:
        instance.terminate()


@pytest.mark.parametrize("image_id", ["ami-0123456789abcdef0", None])
def test_an_instance_imds_serves_the_ami_it_was_launched_with(tmp_path, image_id):
    # Given a local instance launched with an AMI (or none known); an id of its own, as
    # terminating it kills the processes marked with it
    instance_id = f"i-{uuid.uuid4().hex[:17]}"
    instance = LocalInstance(
        instance_id, "g5.xlarge", "us-east-1a", tmp_path / "i", {}, 0, image_id=image_id
    )
    try:
        # When the agent asks its IMDS (IMDSv2, as on EC2), then it answers with that id
        assert imds.ami_id(imds.ImdsClient(instance.imds.endpoint)) == image_id
    finally:
        instance.terminate()


def test_the_ec2_bridge_launches_each_instance_with_its_image_id():
    # Given the bridge in place of moto's RunInstances, and a fleet that records launches
    fleet = SimpleNamespace(launched=[])
    fleet.launch = lambda *args: fleet.launched.append(args)
    bridge = Ec2Bridge(fleet)

    def run_instances(backend: InstanceBackend, *args: Any, **kwargs: Any) -> Any:
        return bridge.run_instances(backend, *args, **kwargs)  # as the emulator patches it in

    with mock_aws(), mock.patch.object(InstanceBackend, "run_instances", run_instances):
        # When an instance is launched
        [launched] = boto3.client("ec2", region_name="us-east-1").run_instances(
            ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, InstanceType="g5.xlarge"
        )["Instances"]

    # Then the local instance is started with the AMI id, for its IMDS to serve
    zone = launched["Placement"]["AvailabilityZone"]
    assert fleet.launched == [(launched["InstanceId"], "g5.xlarge", zone, "ami-0123456789abcdef0")]


def test_terminating_an_instance_kills_its_detached_processes(tmp_path):
    # Given a process started detached (setsid, like the agent) on a local instance
    # (an id of its own: processes are found by it, and a leftover of another run must not count)
    instance_id = f"i-{uuid.uuid4().hex[:17]}"
    instance = LocalInstance(
        instance_id, "g5.xlarge", "us-east-1a", tmp_path / "i", {"PATH": "/usr/bin:/bin"}, 0
    )
    try:
        instance.run_shell(["setsid nohup sleep 300 >/dev/null 2>&1 </dev/null &"], 30)
        assert len(instance.processes()) == 1
    finally:
        # When the instance is terminated (also when the check above failed: nothing leaks)
        instance.terminate()

    # Then nothing of it is left running, and further commands fail
    assert instance.processes() == []
    assert instance.run_shell(["true"], 5).status == "Failed"


def test_terminating_an_instance_also_kills_what_its_processes_start_meanwhile(tmp_path):
    # Given a detached process that keeps starting others (as an install starts the agent)
    instance_id = f"i-{uuid.uuid4().hex[:17]}"
    instance = LocalInstance(
        instance_id, "g5.xlarge", "us-east-1a", tmp_path / "i", {"PATH": "/usr/bin:/bin"}, 0
    )
    spawner = "while true; do setsid sleep 300 & sleep 0.001; done"
    try:
        instance.run_shell([f"setsid nohup bash -c '{spawner}' >/dev/null 2>&1 </dev/null &"], 30)
    finally:
        # When the instance is terminated while it does
        instance.terminate()

    # Then nothing of it is left running, not even what started after the first look
    assert instance.processes() == []

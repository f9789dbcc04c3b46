"""app.py and its context: checked before synth, defaults in cdk.json, no AWS call at synth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import build_app, cdk_json_context
from lambdas.functions import TRAIN_RUN_SETTINGS
from stacks.config import ConfigError, RunctlConfig, setting_context_key

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bad_instance_type_fails_synth_naming_the_key():
    with pytest.raises(ConfigError) as raised:
        build_app({"runctl:defaultInstanceTypes": ["g5.xlarge", "a big GPU"]})

    assert "runctl:defaultInstanceTypes" in str(raised.value)
    assert "'a big GPU'" in str(raised.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"runctl:defaultInstanceTypes": []}, "runctl:defaultInstanceTypes"),
        ({"runctl:defaultInstanceTypes": "G5.XLARGE"}, "runctl:defaultInstanceTypes"),
        ({"runctl:defaultInstanceTypes": "[not json"}, "runctl:defaultInstanceTypes"),
        ({"runctl:region": "Europe"}, "runctl:region"),
        ({"runctl:stackName": "has space"}, "runctl:stackName"),
        ({"runctl:subnetIds": ["subnet-0123abcd"]}, "runctl:vpcId"),
        ({"runctl:vpcId": "vpc-0123456789abcdef0"}, "runctl:subnetIds"),
        ({"runctl:vpcId": "my-vpc", "runctl:subnetIds": ["subnet-0123abcd"]}, "runctl:vpcId"),
        ({"runctl:dataBuckets": ["s3://my-data"]}, "runctl:dataBuckets"),
        ({"runctl:heartbeatSeconds": 0}, "runctl:heartbeatSeconds"),
        ({"runctl:pollIntervalSeconds": "ten"}, "runctl:pollIntervalSeconds"),
        ({"runctl:rootVolumeGiB": 4}, "runctl:rootVolumeGiB"),
    ],
)
def test_malformed_context_is_rejected_with_its_key(override, key):
    context = {**cdk_json_context(), **override}

    with pytest.raises(ConfigError) as raised:
        RunctlConfig.from_context(context)

    assert raised.value.key == key
    assert key in str(raised.value)


def test_lists_and_numbers_from_the_command_line_are_parsed():
    # Given values as `cdk synth -c key=value` passes them: strings
    context = {
        **cdk_json_context(),
        "runctl:defaultInstanceTypes": "g6e.xlarge, g5.2xlarge",
        "runctl:dataBuckets": '["datasets-a", "datasets.b"]',
        "runctl:vpcId": "vpc-0123456789abcdef0",
        "runctl:subnetIds": "subnet-0123abcd,subnet-4567ef01",
        "runctl:heartbeatSeconds": "120",
    }

    config = RunctlConfig.from_context(context)

    assert config.default_instance_types == ("g6e.xlarge", "g5.2xlarge")
    assert config.data_buckets == ("datasets-a", "datasets.b")
    assert config.subnet_ids == ("subnet-0123abcd", "subnet-4567ef01")
    assert config.train_run_settings["HeartbeatSeconds"] == "120"


def test_cdk_json_defaults_match_what_local_mode_uses():
    context = cdk_json_context()

    assert context["runctl:stackName"] == "Runctl"
    assert context["runctl:defaultInstanceTypes"] == ["g5.xlarge", "g4dn.xlarge", "g6.xlarge"]
    for setting, value in TRAIN_RUN_SETTINGS.items():
        assert str(context[setting_context_key(setting)]) == value


def test_cdk_cli_is_pinned_to_a_version_that_reads_this_assembly():
    package = json.loads((REPO_ROOT / "package.json").read_text())

    assert package["devDependencies"]["aws-cdk"] == "2.1148.1"


def test_app_synthesizes_with_no_aws_credentials_or_network(offline_synth):
    # Given app.py run with no credentials, an unusable endpoint and no sockets (see conftest)
    returncode, stderr = offline_synth.result()

    # Then it wrote the template
    assert returncode == 0, stderr[-3000:]
    template = json.loads((offline_synth.outdir / "Runctl.template.json").read_text())
    assert "AWS::StepFunctions::StateMachine" in {
        body["Type"] for body in template["Resources"].values()
    }

"""The Powertools layer holds the release pyproject.toml pins (issue #10, part 7).

What these tests can verify offline: that the pinned release has a row in the table, that the
synthesized functions use exactly that row (a literal layer ARN, or the SSM parameter Powertools
publishes for exactly that release), and that the table is consistent. What they cannot: that a
layer number in the table really holds its release (that needs AWS: `aws lambda
get-layer-version-by-arn` or the SSM parameter); the table's docstring gives each row's source.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Stack

from stacks.powertools_layer import (
    LAYER_ACCOUNT,
    LAYER_NAME,
    POWERTOOLS_LAYERS,
    POWERTOOLS_RELEASE,
    SSM_PARAMETER_PREFIX,
    PowertoolsVersionError,
    layer_version_for,
    pinned_powertools_version,
    powertools_layer,
)

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


def test_the_layer_release_is_the_pinned_package_and_has_a_row_in_the_table():
    pinned = pinned_powertools_version()

    assert pinned == POWERTOOLS_RELEASE, (
        f"pyproject.toml pins aws-lambda-powertools=={pinned}, but the Lambdas get the layer of "
        f"{POWERTOOLS_RELEASE}: set stacks/powertools_layer.py POWERTOOLS_RELEASE = {pinned!r} "
        "and add its row to POWERTOOLS_LAYERS"
    )
    layer_version_for(pinned)  # raises, naming the fix, when the table has no row


def test_a_bumped_package_without_a_table_row_fails_naming_the_fix(tmp_path):
    # Given pyproject.toml pinning a release the table does not know
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["boto3==1.43.11", "aws-lambda-powertools[tracer]==3.99.0"]\n'
    )

    # Then looking its layer up fails, saying where and what to add
    with pytest.raises(PowertoolsVersionError) as raised:
        layer_version_for(pinned_powertools_version(pyproject))

    message = str(raised.value)
    assert "aws-lambda-powertools==3.99.0" in message
    assert "stacks/powertools_layer.py POWERTOOLS_LAYERS" in message
    assert f"{SSM_PARAMETER_PREFIX}3.99.0" in message


def test_an_unpinned_package_is_refused(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["aws-lambda-powertools>=3"]\n')

    with pytest.raises(PowertoolsVersionError, match="exactly once with =="):
        pinned_powertools_version(pyproject)


def test_the_functions_use_the_layer_of_exactly_the_pinned_release(synthesized):
    pinned = POWERTOOLS_RELEASE  # == the pyproject.toml pin (test above)
    version = POWERTOOLS_LAYERS[pinned]
    template = synthesized.template_json
    functions = synthesized.resources_of_type("AWS::Lambda::Function")

    layers = {json.dumps(body["Properties"]["Layers"]) for body in functions.values()}

    # Then every function has the one layer
    assert len(layers) == 1
    [layer] = json.loads(layers.pop())
    if version is None:
        # Not verified offline: the SSM parameter Powertools publishes for exactly this release,
        # resolved by CloudFormation at deploy time
        parameter = template["Parameters"][layer["Ref"]]
        assert parameter == {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": f"{SSM_PARAMETER_PREFIX}{pinned}",
        }
    else:
        assert json.dumps(layer).endswith(f':{LAYER_ACCOUNT}:layer:{LAYER_NAME}:{version}"]]}}')


def test_a_known_layer_number_is_pinned_as_a_literal_arn():
    stack = Stack(App(), "Probe", env={"region": "eu-west-1"})

    layer = powertools_layer(stack, "Layer", release="3.23.0")

    assert stack.resolve(layer.layer_version_arn) == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                f":lambda:eu-west-1:{LAYER_ACCOUNT}:layer:{LAYER_NAME}:27",
            ],
        ]
    }


def test_layer_numbers_grow_with_the_release():
    numbered = sorted(
        ((_release_key(release), version) for release, version in POWERTOOLS_LAYERS.items()),
    )
    versions = [version for _, version in numbered if version is not None]

    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


def test_the_table_cites_a_source_for_each_numbered_row():
    source = (Path(__file__).resolve().parents[2] / "stacks" / "powertools_layer.py").read_text()

    for release, version in POWERTOOLS_LAYERS.items():
        if version is not None:
            assert f"{release} -> {version}:" in source, f"no source line for {release}"

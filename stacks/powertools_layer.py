"""The public Powertools for AWS Lambda (Python) v3 layer, for the release pyproject.toml pins.

Our Lambdas ship no dependencies: they run on this layer, which is built with
`pip install aws-lambda-powertools[all]` (layer_v3/layer_constructors/helpers.py in
aws-powertools/powertools-lambda-python; [all] brings pydantic v2 and aws-xray-sdk). The tests run
against the pinned package, so the layer must hold that same release. A public layer's version is
a counter, not the release (layer :27 holds 3.23.0), hence this table.

POWERTOOLS_LAYERS maps a release to the arm64 python3.12 layer version that holds it, or to None
when we could not verify the number offline. None is not a guess: the function then takes the layer
from the public SSM parameter Powertools publishes for exactly that release,
/aws/service/powertools/python/arm64/python3.12/<release> (its value is the layer ARN in the stack's
region), which CloudFormation resolves at deploy time; a release without that parameter fails the
deploy naming it, instead of running other code than the tests did. No AWS call at synth.

Sources (looked up 2026-12, in the stored public docs and issue threads):
- 3.2.0 -> 3: aws-powertools/powertools-lambda-python PR #5426 "docs(layer): update layer version
  number - v3.2.0" (https://github.com/aws-powertools/powertools-lambda-python/pull/5426):
  "the version v3.2.0 ... creates the layer version 3 in x86_64 and arm64".
- 3.23.0 -> 27: issue #7689 (https://github.com/aws-powertools/powertools-lambda-python/issues/7689,
  2025-11): PyPI 3.23.0 is layer AWSLambdaPowertoolsPythonV3-python313-x86_64:27 (created
  2025-11-13), which SSM .../latest pointed to; PR #7757 moved the install docs' ARNs (all
  architectures) from :18 to :27 (https://github.com/aws-powertools/powertools-lambda-python/pull/7757).
- 3.37.0: no stored page lists its layer number (the Powertools install docs list only the newest
  release's layer, https://docs.aws.amazon.com/powertools/python/latest/getting-started/install/).
  Check with `aws ssm get-parameter --name /aws/service/powertools/python/arm64/python3.12/3.37.0`
  and, once known, replace None by the number.

To bump aws-lambda-powertools: change POWERTOOLS_RELEASE and add its row here
(tests/infra/test_infra_powertools_layer.py fails until both follow pyproject.toml).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Final

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

PYPROJECT: Final = Path(__file__).resolve().parent.parent / "pyproject.toml"
LAYER_ACCOUNT: Final = "017000801446"  # Powertools' publishing account (AWS's, not ours)
LAYER_NAME: Final = "AWSLambdaPowertoolsPythonV3-python312-arm64"
SSM_PARAMETER_PREFIX: Final = "/aws/service/powertools/python/arm64/python3.12/"

# The release the Lambdas run: pyproject.toml's aws-lambda-powertools pin, which the tests run
# against (tests/infra/test_infra_powertools_layer.py fails when the two differ). A constant, so
# synth reads no project metadata.
POWERTOOLS_RELEASE: Final = "3.37.0"

# release -> layer version of LAYER_NAME (None: resolved from SSM_PARAMETER_PREFIX + release)
POWERTOOLS_LAYERS: Final[dict[str, int | None]] = {
    "3.2.0": 3,
    "3.23.0": 27,
    "3.37.0": None,
}

_PIN = re.compile(r"^aws-lambda-powertools(\[[^\]]*\])?==(?P<version>[0-9][0-9a-z.]*)$")


class PowertoolsVersionError(ValueError):
    """The pinned release and the layer table disagree; the message says what to change."""


def pinned_powertools_version(pyproject: Path = PYPROJECT) -> str:
    """The `aws-lambda-powertools[...]==X.Y.Z` pin among pyproject.toml's dependencies."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = [found["version"] for item in dependencies if (found := _PIN.match(item.strip()))]
    if len(pins) != 1:
        raise PowertoolsVersionError(
            f"{pyproject.name} must pin aws-lambda-powertools exactly once with ==, found {pins}"
        )
    return pins[0]


def layer_version_for(release: str) -> int | None:
    """The table's entry for `release`; a release missing from it is an error naming the fix."""
    if release not in POWERTOOLS_LAYERS:
        raise PowertoolsVersionError(
            f"aws-lambda-powertools=={release} is pinned in pyproject.toml but has no row in "
            f"stacks/powertools_layer.py POWERTOOLS_LAYERS: add the {LAYER_NAME} layer version "
            f"that holds {release} (Powertools' install docs, or the SSM parameter "
            f"{SSM_PARAMETER_PREFIX}{release}), or None to resolve that parameter at deploy"
        )
    return POWERTOOLS_LAYERS[release]


def powertools_layer(
    scope: Construct, construct_id: str, release: str | None = None
) -> lambda_.ILayerVersion:
    """The layer holding `release` (default: POWERTOOLS_RELEASE), by ARN or SSM parameter."""
    release = release or POWERTOOLS_RELEASE
    version = layer_version_for(release)
    if version is None:
        arn = ssm.StringParameter.value_for_string_parameter(
            scope, f"{SSM_PARAMETER_PREFIX}{release}"
        )
    else:
        arn = Stack.of(scope).format_arn(
            service="lambda",
            account=LAYER_ACCOUNT,
            resource="layer",
            resource_name=f"{LAYER_NAME}:{version}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
    return lambda_.LayerVersion.from_layer_version_arn(scope, construct_id, arn)

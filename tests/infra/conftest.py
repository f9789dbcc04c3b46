"""Synthesizes the app once per session (with cdk-nag attached, as `cdk synth` does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, CfnElement  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from app import build_app  # noqa: E402
from stacks.runctl_stack import RunctlStack  # noqa: E402

# CDK adds DependsOn on a role its resource already references with GetAtt: harmless.
ALLOWED_CFN_LINT_WARNINGS = {"W3005"}


@dataclass(frozen=True)
class Synthesized:
    app: App
    stack: RunctlStack
    template: Template
    outdir: Path

    @cached_property
    def template_json(self) -> dict[str, Any]:
        return self.template.to_json()

    def cfn_lint_problems(self, region: str) -> list[str]:
        """cfn-lint's errors and warnings on the synthesized template file, but the allowed."""
        from cfnlint.api import ManualArgs, lint_file

        template_file = self.outdir / f"{self.stack.artifact_id}.template.json"
        matches = lint_file(template_file, config=ManualArgs(regions=[region]))
        return [
            f"{match.rule.id} {match.message} (line {match.linenumber})"
            for match in matches
            if match.rule.id.startswith("E")
            or (match.rule.id.startswith("W") and match.rule.id not in ALLOWED_CFN_LINT_WARNINGS)
        ]

    @property
    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())

    def logical_id(self, construct: Any) -> str:
        """Logical id of an L1 resource, or of an L2 construct's main resource."""
        element = construct if isinstance(construct, CfnElement) else construct.node.default_child
        return self.stack.get_logical_id(element)

    def resource(self, construct: Any) -> dict[str, Any]:
        return self.template_json["Resources"][self.logical_id(construct)]

    def resources_of_type(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: body
            for logical_id, body in self.template_json["Resources"].items()
            if body["Type"] == cfn_type
        }

    def policy_statements(self) -> dict[str, list[dict[str, Any]]]:
        """Statements of every inline policy, by the logical id of each role it is attached to."""
        by_role: dict[str, list[dict[str, Any]]] = {}
        for policy in self.resources_of_type("AWS::IAM::Policy").values():
            found = policy["Properties"]["PolicyDocument"]["Statement"]
            for role in policy["Properties"].get("Roles", []):
                by_role.setdefault(role["Ref"], []).extend(found)
        return by_role

    def role_statements(self, role: Any) -> list[dict[str, Any]]:
        return self.policy_statements().get(self.logical_id(role), [])

    @staticmethod
    def listed(value: Any) -> list[Any]:
        """An IAM Action/Resource value as a list (CloudFormation allows a bare string)."""
        return value if isinstance(value, list) else [value]


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    """The app with `context` over cdk.json's, synthesized into outdir with no account set;
    raises if any cdk-nag finding is left unacknowledged."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
        app, stack = build_app(context, outdir=str(outdir))
        app.synth()
    return Synthesized(app=app, stack=stack, template=Template.from_stack(stack), outdir=outdir)


# Runs app.py as `cdk synth` does, with every socket refused: any AWS call would fail it.
OFFLINE_APP = """
import runpy, socket, sys

def refuse(*args, **kwargs):
    raise OSError("app.py tried to use the network at synth time")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
sys.argv = ["app.py"]
runpy.run_path("app.py", run_name="__main__")
"""


@dataclass(frozen=True)
class OfflineSynth:
    process: subprocess.Popen[str]
    outdir: Path

    def result(self) -> tuple[int, str]:
        """(exit code, stderr) of `python app.py`, waiting for it if needed."""
        _, stderr = self.process.communicate(timeout=300)
        return self.process.returncode, stderr


@pytest.fixture(scope="session")
def offline_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineSynth]:
    """`python app.py` with no credentials, an unusable endpoint and no sockets.

    Started before the in-process synth (see `synthesized`) so the two run side by side: the
    suite has to stay well under a minute on two cores.
    """
    scratch = tmp_path_factory.mktemp("offline")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.pop("CDK_DEFAULT_ACCOUNT", None)
    env.update(
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_CONFIG_FILE=str(scratch / "missing-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(scratch / "missing-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        CDK_OUTDIR=str(scratch / "cdk.out"),
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    process = subprocess.Popen(
        [sys.executable, "-c", OFFLINE_APP],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield OfflineSynth(process=process, outdir=scratch / "cdk.out")
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="session")
def synthesized(
    tmp_path_factory: pytest.TempPathFactory, offline_synth: OfflineSynth
) -> Synthesized:
    """The default-context app, synthesized to a temp cloud assembly (cfn-lint reads it)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


PIPELINE_RUN_TEMPLATE = {"code": {"s3_uri": "s3://lab-datasets/code/a.tgz"}, "entry_point": "t.py"}

PULL_REPOSITORY_ARN = "arn:aws:ecr:us-west-2:210987654321:repository/shared/cuda"

# A deployment into its own network, with extra data buckets (every optional key set).
CONFIGURED_CONTEXT = {
    "runctl:stackName": "RunctlLab",
    "runctl:region": "eu-west-1",
    "runctl:vpcId": "vpc-0123456789abcdef0",
    "runctl:subnetIds": ["subnet-0123abcd", "subnet-4567ef01"],
    "runctl:dataBuckets": ["lab-datasets", "shared.corpora"],
    "runctl:rootVolumeGiB": 250,
    "runctl:heartbeatSeconds": 120,
    "runctl:imagesKeep": 12,
    # A repository of this account and region by name, and another account's by ARN.
    "runctl:pullRepositories": ["team/pytorch", PULL_REPOSITORY_ARN],
    # One pipeline on the runctl bucket with a schedule, one on a data bucket without.
    "runctl:pipelines": [
        {
            "name": "imagenet",
            "watch": {"prefix": "data/imagenet/"},
            "run": PIPELINE_RUN_TEMPLATE,
            "schedule": {"expression": "cron(0 3 * * ? *)", "timezone": "Europe/Berlin"},
        },
        {
            "name": "corpora",
            "watch": {"bucket": "lab-datasets", "prefix": "corpora/", "marker": "MANIFEST.json"},
            "data_name": "text",
            "run": PIPELINE_RUN_TEMPLATE,
        },
    ],
}


@pytest.fixture(scope="session")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app with CONFIGURED_CONTEXT, synthesized (and so cdk-nag checked) like the default."""
    return synthesize(tmp_path_factory.mktemp("cdk.out.configured"), CONFIGURED_CONTEXT)


@pytest.fixture(scope="session", autouse=True)
def _synthesize_first(synthesized: Synthesized) -> None:
    """Every infra test shares the one synth; doing it at the first test (whichever file runs
    first) also lets `offline_synth`'s subprocess run beside it."""

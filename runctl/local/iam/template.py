"""The stack's policies, from the template `cdk deploy` uses, with its references resolved to the
local deployment's names.

Synthesis (app.py's build_app, in a subprocess: ~10-15 s) happens once per source hash; the parts
of the template local mode needs are cached as JSON under ~/.cache/runctl/iam (or
$XDG_CACHE_HOME/runctl/iam, or $RUNCTL_IAM_CACHE).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[3]
FORMAT_VERSION = "3"
# Everything app.py's synthesis reads: the stack code and the lambdas modules it imports.
SOURCE_GLOBS = (
    "app.py",
    "cdk.json",
    "stacks/**/*.py",
    "lambdas/*.py",
    "lambdas/models/**/*.py",
    "lambdas/logic/pipelines.py",
)
_KEPT_TYPES = {
    "AWS::IAM::Policy",
    "AWS::IAM::Role",
    "AWS::Lambda::Function",
    "AWS::StepFunctions::StateMachine",
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::Logs::LogGroup",
    "AWS::EC2::LaunchTemplate",
    "AWS::ECR::Repository",
    "AWS::CodeBuild::Project",
}

_SYNTH = """
import json, sys
from app import build_app
# Path metadata, as the CDK CLI asks for it: local mode finds constructs by their path.
context = {"runctl:region": sys.argv[1], "aws:cdk:enable-path-metadata": True}
app, stack = build_app(context, outdir=sys.argv[2])
app.synth()
print(stack.artifact_id)
"""


class SynthesisFailed(RuntimeError):
    pass


def source_hash(region: str, root: Path = PROJECT_ROOT) -> str:
    digest = hashlib.sha256(f"{FORMAT_VERSION}\0{region}\0".encode())
    with contextlib.suppress(metadata.PackageNotFoundError):
        digest.update(metadata.version("aws-cdk-lib").encode())
    files = sorted({path for pattern in SOURCE_GLOBS for path in root.glob(pattern)})
    for path in files:
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def cache_dir() -> Path:
    if explicit := os.environ.get("RUNCTL_IAM_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runctl" / "iam"


def trimmed(template: Mapping[str, Any]) -> dict[str, Any]:
    """The resources local mode resolves or evaluates, with only the properties it reads."""
    kept: dict[str, Any] = {}
    for logical_id, body in template.get("Resources", {}).items():
        kind = body.get("Type")
        if kind not in _KEPT_TYPES:
            continue
        properties = body.get("Properties", {})
        if kind == "AWS::Lambda::Function":
            properties = {
                key: properties[key]
                for key in ("Handler", "Role", "Environment")
                if key in properties
            }
        elif kind not in {"AWS::IAM::Policy", "AWS::IAM::Role"}:
            properties = {}
        kept[logical_id] = {
            "Type": kind,
            "Path": body.get("Metadata", {}).get("aws:cdk:path", ""),
            "Properties": properties,
        }
    return {"Resources": kept}


def synthesize(region: str, root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """app.py's template (trimmed), as `cdk synth` makes it, for `region`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.pop("CDK_DEFAULT_ACCOUNT", None)
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    with tempfile.TemporaryDirectory(prefix="runctl-iam-synth-") as outdir:
        done = subprocess.run(
            [sys.executable, "-c", _SYNTH, region, outdir],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise SynthesisFailed(f"synthesizing app.py failed:\n{done.stderr[-3000:]}")
        artifact = done.stdout.strip().splitlines()[-1]
        template = json.loads((Path(outdir) / f"{artifact}.template.json").read_text())
    return trimmed(template)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_template(region: str, root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The trimmed template for the current sources: from the cache, or synthesized once (one
    process synthesizes while the others wait for its result)."""
    directory = cache_dir()
    path = directory / f"template-{source_hash(region, root)}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    with _locked(directory):
        if path.exists():
            return dict(json.loads(path.read_text()))
        template = synthesize(region, root)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(template))
        scratch.replace(path)
        _prune(directory, keep=path)
    return template


def _prune(directory: Path, keep: Path, newest: int = 8) -> None:
    """One extract per source hash accumulates while the stack is edited: keep the newest."""
    extracts = sorted(directory.glob("template-*.json"), key=lambda p: p.stat().st_mtime)
    for stale in extracts[:-newest]:
        if stale != keep:
            stale.unlink(missing_ok=True)


# --- resolving the template's references to local names --------------------------------------


@dataclass
class LocalNames:
    """What each logical id is called locally: Ref and GetAtt values, by logical id."""

    account: str
    region: str
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)

    def name(self, logical_id: str, kind: str, value: str, arn: str = "") -> None:
        """Record a resource's local Ref value; derive its Arn (and Name) by type."""
        account, region = self.account, self.region
        derived = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{value}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{region}:{account}:table/{value}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{value}:*",
            "AWS::ECR::Repository": f"arn:aws:ecr:{region}:{account}:repository/{value}",
            "AWS::CodeBuild::Project": f"arn:aws:codebuild:{region}:{account}:project/{value}",
        }
        self.refs[logical_id] = value
        if arn or kind in derived:
            self.attributes[(logical_id, "Arn")] = arn or derived[kind]
        if kind == "AWS::ECR::Repository":
            uri = f"{account}.dkr.ecr.{region}.amazonaws.com/{value}"
            self.attributes.setdefault((logical_id, "RepositoryUri"), uri)
        if kind == "AWS::StepFunctions::StateMachine":
            self.attributes[(logical_id, "Name")] = value.rsplit(":", 1)[-1]

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }.get(name)

    def ref(self, logical_id: str) -> str:
        found = self.pseudo(logical_id)
        if found is None:
            found = self.refs.get(logical_id)
        if found is None:
            self.unresolved.add(logical_id)
            return f"arn:aws:runctl-local-unresolved:::{logical_id}"
        return found

    def get_att(self, logical_id: str, attribute: str) -> str:
        found = self.attributes.get((logical_id, attribute))
        if found is None:
            self.unresolved.add(f"{logical_id}.{attribute}")
            return f"arn:aws:runctl-local-unresolved:::{logical_id}.{attribute}"
        return found


def resolve(value: Any, names: LocalNames) -> Any:
    """Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, evaluated with local names.
    A reference with no local counterpart becomes an ARN no policy pattern but "*" matches."""
    if isinstance(value, list):
        return [resolve(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {key: resolve(item, names) for key, item in value.items()}
    ((function, argument),) = value.items()
    if function == "Ref":
        return names.ref(str(argument))
    if function == "Fn::GetAtt":
        logical_id, attribute = (
            argument if isinstance(argument, list) else str(argument).split(".", 1)
        )
        return names.get_att(logical_id, attribute)
    if function == "Fn::Join":
        separator, items = argument
        return str(separator).join(str(resolve(item, names)) for item in resolve(items, names))
    if function == "Fn::Select":
        index, items = argument
        return resolve(items, names)[int(resolve(index, names))]
    if function == "Fn::Split":
        separator, text = argument
        return str(resolve(text, names)).split(separator)
    if function == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        return _substitute(text, {k: str(resolve(v, names)) for k, v in variables.items()}, names)
    if function.startswith("Fn::"):
        names.unresolved.add(function)
        return f"arn:aws:runctl-local-unresolved:::{function}"
    return {key: resolve(item, names) for key, item in value.items()}


def _substitute(text: str, variables: Mapping[str, str], names: LocalNames) -> str:
    out, rest = [], text
    while "${" in rest:
        before, _, after = rest.partition("${")
        reference, _, rest = after.partition("}")
        out.append(before)
        if reference.startswith("!"):
            out.append("${" + reference[1:] + "}")
        elif reference in variables:
            out.append(variables[reference])
        elif "." in reference and names.pseudo(reference) is None:
            logical_id, attribute = reference.split(".", 1)
            out.append(names.get_att(logical_id, attribute))
        else:
            out.append(names.ref(reference))
    return "".join(out) + rest

"""The agent config (docs/architecture.md, "Agent config"): read from S3, checked, typed."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import ConfigError
from .layout import split_s3_uri

# The agent builds local paths from these: re-checked here although ValidateRun checked the spec.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DATA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class DataItem:
    s3_uri: str
    name: str


REBALANCE_CHECKPOINT = "checkpoint"
REBALANCE_MIGRATE = "migrate"
DEFAULT_GRACE_SECONDS = 90.0
DEFAULT_CHECKPOINTS_KEEP = 3


@dataclass(frozen=True)
class InterruptionSettings:
    """The part of the RunSpec's `interruptions` the agent acts on; the budgets are the Lambdas'."""

    # "checkpoint": checkpoint now and carry on; "migrate": go, as on a spot warning.
    rebalance: str = REBALANCE_CHECKPOINT
    grace_seconds: float = DEFAULT_GRACE_SECONDS  # SIGTERM to SIGKILL
    # SIGUSR1 on a rebalance recommendation: the script said it handles it (checkpoint, go on).
    signal_checkpoint: bool = False


@dataclass(frozen=True)
class Spec:
    """The part of the RunSpec the agent acts on."""

    code_uri: str
    entry_point: str
    code_sha256: str | None = None
    args: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    hyperparameters_as_args: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    data: list[DataItem] = field(default_factory=list)
    interruptions: InterruptionSettings = field(default_factory=InterruptionSettings)
    checkpoints_keep: int = DEFAULT_CHECKPOINTS_KEEP  # RunSpec checkpoints.keep


@dataclass(frozen=True)
class ImageSettings:
    """The image the instance booted and the Python that runs the script (LaunchInstance's
    choice, lambdas/logic/images.py)."""

    name: str = "al2023"
    interpreter: str = "python3"
    architecture: str = "x86_64"
    layered: bool = False  # its Python ships packages to reuse: install with pip over them
    nvidia_gpus: int = 0  # check the driver with nvidia-smi before the script starts


PULL_ALWAYS = "always"
PULL_IF_MISSING = "if-missing"


@dataclass(frozen=True)
class ContainerSettings:
    """The image the script runs in (issue #12); absent when it runs on the instance itself."""

    image: str  # a URI docker pulls: ECR, public, or (local mode) a locally built tag
    pull: str = PULL_ALWAYS  # PULL_ALWAYS | PULL_IF_MISSING (a present image is used as it is)
    ecr_registry: str | None = None  # <account>.dkr.ecr.<region>.amazonaws.com: log in first
    interpreter: str = "python3"  # inside the image


# Local mode only: the image interpreter path -> the local Python that stands in for it
# (runctl/local/images.py). On AWS the variable is unset and paths are used as they are.
LOCAL_INTERPRETERS_ENV = "RUNCTL_LOCAL_INTERPRETERS"


@dataclass(frozen=True)
class AgentConfig:
    run_id: str
    attempt: int
    region: str
    bucket: str
    table_name: str
    log_group: str
    task_token: str
    heartbeat_seconds: int
    spec: Spec
    image: ImageSettings = field(default_factory=ImageSettings)
    container: ContainerSettings | None = None


def read_config_json(s3: Any, uri: str) -> dict[str, Any]:
    """Fetch and decode the config object; ConfigError when it cannot be read."""
    try:
        bucket, key = split_s3_uri(uri)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        raw = json.loads(body)
    except (ValueError, ClientError, BotoCoreError) as error:
        raise ConfigError(f"cannot read agent config {uri}: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"agent config {uri} is not a JSON object")
    return raw


def parse_config(raw: dict[str, Any]) -> AgentConfig:
    """Check the fields the agent needs; ConfigError names the first bad one."""
    spec = _require(raw, "spec", dict)
    code = _require(spec, "code", dict, "spec.")
    run_id = _require(raw, "run_id", str)
    if not _RUN_ID.match(run_id):
        raise ConfigError(f"run_id {run_id!r} has characters the agent cannot use in a path")
    attempt = _require(raw, "attempt", int)
    if attempt < 1:
        raise ConfigError("attempt must be at least 1")
    return AgentConfig(
        run_id=run_id,
        attempt=attempt,
        region=_require(raw, "region", str),
        bucket=_require(raw, "bucket", str),
        table_name=_require(raw, "table_name", str),
        log_group=_require(raw, "log_group", str),
        task_token=_require(raw, "task_token", str),
        heartbeat_seconds=_require(raw, "heartbeat_seconds", int),
        spec=_parse_spec(spec, code),
        image=_parse_image(raw.get("image"), spec.get("interpreter")),
        container=_parse_container(raw.get("container")),
    )


def _parse_image(raw: Any, interpreter: Any) -> ImageSettings:
    """The config's `image` (absent from configs written before images were chosen per type:
    then AL2023 and the spec's interpreter)."""
    if raw is None:
        return ImageSettings(interpreter=str(interpreter or "python3"))
    if not isinstance(raw, dict):
        raise ConfigError("agent config field image must be an object")
    gpus = raw.get("nvidia_gpus", 0)
    return ImageSettings(
        name=_require(raw, "name", str, "image."),
        interpreter=_require(raw, "interpreter", str, "image."),
        architecture=_require(raw, "architecture", str, "image."),
        layered=bool(raw.get("layered", False)),
        nvidia_gpus=gpus if isinstance(gpus, int) and not isinstance(gpus, bool) else 0,
    )


def _parse_container(raw: Any) -> ContainerSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("agent config field container must be an object")
    image = _require(raw, "image", str, "container.")
    # docker would read a leading "-" as an option, and an empty name is no image.
    if not image or image.startswith("-") or any(char.isspace() for char in image):
        raise ConfigError(f"agent config field container.image {image!r} is not an image name")
    pull = raw.get("pull", PULL_ALWAYS)
    if pull not in (PULL_ALWAYS, PULL_IF_MISSING):
        raise ConfigError(
            f"agent config field container.pull must be {PULL_ALWAYS!r} or {PULL_IF_MISSING!r}, "
            f"not {pull!r}"
        )
    registry = raw.get("ecr_registry")
    if registry is not None and (
        not isinstance(registry, str) or not registry or registry.startswith("-")
    ):
        raise ConfigError("agent config field container.ecr_registry must be a host name or null")
    interpreter = raw.get("interpreter", "python3")
    if not isinstance(interpreter, str) or not interpreter:
        raise ConfigError("agent config field container.interpreter must be a non-empty string")
    return ContainerSettings(image=image, pull=pull, ecr_registry=registry, interpreter=interpreter)


def local_interpreter(interpreter: str, environ: dict[str, str]) -> str:
    """The interpreter to run: itself on AWS, its stand-in in local mode."""
    raw = environ.get(LOCAL_INTERPRETERS_ENV)
    if not raw:
        return interpreter
    try:
        mapping = json.loads(raw)
    except ValueError as error:
        raise ConfigError(f"{LOCAL_INTERPRETERS_ENV} is not JSON: {error}") from error
    return str(mapping.get(interpreter, interpreter))


def _parse_spec(spec: dict[str, Any], code: dict[str, Any]) -> Spec:
    entry_point = _require(spec, "entry_point", str, "spec.")
    path = PurePosixPath(entry_point)
    if path.is_absolute() or ".." in path.parts:
        raise ConfigError("spec.entry_point must be a relative path inside the code archive")
    data = []
    for index, item in enumerate(spec.get("data") or []):
        where = f"spec.data.{index}."
        name = _require(item, "name", str, where)
        if not _DATA_NAME.match(name):
            raise ConfigError(f"{where}name {name!r} is not a plain directory name")
        data.append(DataItem(s3_uri=_require(item, "s3_uri", str, where), name=name))
    args = spec.get("args") or []
    if not all(isinstance(arg, str) for arg in args):
        raise ConfigError("spec.args must be strings")
    environment = spec.get("environment") or {}
    if not all(isinstance(value, str) for value in environment.values()):
        raise ConfigError("spec.environment values must be strings")
    return Spec(
        code_uri=_require(code, "s3_uri", str, "spec.code."),
        code_sha256=code.get("sha256"),
        entry_point=entry_point,
        args=list(args),
        hyperparameters=dict(spec.get("hyperparameters") or {}),
        hyperparameters_as_args=bool(spec.get("hyperparameters_as_args", False)),
        environment=dict(environment),
        data=data,
        interruptions=_parse_interruptions(spec.get("interruptions")),
        checkpoints_keep=_parse_checkpoints_keep(spec.get("checkpoints")),
    )


def _parse_interruptions(raw: Any) -> InterruptionSettings:
    if raw is None:
        return InterruptionSettings()
    if not isinstance(raw, dict):
        raise ConfigError("spec.interruptions must be an object")
    rebalance = raw.get("rebalance", REBALANCE_CHECKPOINT)
    if rebalance not in (REBALANCE_CHECKPOINT, REBALANCE_MIGRATE):
        raise ConfigError(
            f"spec.interruptions.rebalance must be {REBALANCE_CHECKPOINT!r} or "
            f"{REBALANCE_MIGRATE!r}, not {rebalance!r}"
        )
    grace = raw.get("grace_seconds", DEFAULT_GRACE_SECONDS)
    if (
        isinstance(grace, bool)
        or not isinstance(grace, (int, float))
        or not (grace > 0 and math.isfinite(grace))
    ):
        raise ConfigError("spec.interruptions.grace_seconds must be a positive number")
    signal_checkpoint = raw.get("signal_checkpoint", False)
    if not isinstance(signal_checkpoint, bool):
        raise ConfigError("spec.interruptions.signal_checkpoint must be true or false")
    return InterruptionSettings(
        rebalance=rebalance, grace_seconds=float(grace), signal_checkpoint=signal_checkpoint
    )


def _parse_checkpoints_keep(raw: Any) -> int:
    if raw is None:
        return DEFAULT_CHECKPOINTS_KEEP
    if not isinstance(raw, dict):
        raise ConfigError("spec.checkpoints must be an object")
    keep = raw.get("keep", DEFAULT_CHECKPOINTS_KEEP)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError("spec.checkpoints.keep must be a whole number of at least 1")
    return keep


def _require(source: Any, name: str, kind: type, where: str = "") -> Any:
    value = source.get(name) if isinstance(source, dict) else None
    # bool is an int in Python; a flag where a number belongs is still a mistake.
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"agent config field {where}{name} is missing or not a {kind.__name__}")
    return value

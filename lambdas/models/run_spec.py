"""The RunSpec: what a user asks runctl to run. One model for stack, client and schema."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lambdas.models.bounds import json_size

# \Z, not $: Python's $ also matches before a trailing newline.
S3_URI_PATTERN = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.*)\Z")
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
HPARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
IMAGE_PATTERN = r"^(al2023|dlami-pytorch|ami-[0-9a-f]{8,17})$"
# A container image reference as Docker reads it: [registry[:port]/]path[:tag][@sha256:digest],
# lower-case path components (Docker's reference grammar, without its rarely used forms).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
CONTAINER_IMAGE_PATTERN = (
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]{{1,5}})?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
BUILD_ARG_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MAX_BUILD_ARGS = 64
MAX_BUILD_ARGS_JSON_BYTES = 8 * 1024
# Images are built for the platform of the CodeBuild project (x86_64; arm64 is not built yet).
BUILD_PLATFORM = "linux/amd64"
# One arg, environment value or string hyperparameter, in characters: no more than its field's
# total (MAX_*_JSON_BYTES below) anyway.
MAX_ARG_BYTES = 16 * 1024
# s3:// + a bucket name (63 at most) + / + a key (1,024 bytes at most).
MAX_S3_URI_CHARS = 5 + 63 + 1 + 1024
MAX_INSTANCE_TYPE_CHARS = 40

# The RunSpec travels through the TrainRun state: twice at its largest (ValidateRun's RunContext
# beside the raw input; a resumed attempt's RunContext beside the current one, with a caught
# error's cause of up to 64 KiB once escaped), and three times in a Sweep item (its input, and
# the failed run's description inside the caught error's cause, escaped twice: at most 2x). Step
# Functions fails the execution past 256 KiB (States.DataLimitExceeded, which States.ALL does not
# catch), so a RunSpec is at most 64 KiB as JSON: 3 x 64 KiB + the rest stays under it
# (docs/architecture.md, "Payload limits"). Sizes are counted as lambdas/models/bounds.py counts.
MAX_SPEC_JSON_BYTES = 64 * 1024
MAX_ARGS = 1000
MAX_ARGS_JSON_BYTES = 16 * 1024
MAX_ENVIRONMENT_VARIABLES = 256
MAX_ENVIRONMENT_JSON_BYTES = 16 * 1024
MAX_HYPERPARAMETERS = 256
MAX_HYPERPARAMETERS_JSON_BYTES = 16 * 1024


def _no_nul(value: str) -> str:
    # argv and environment entries are C strings: a NUL would silently cut them.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _s3_uri(value: str) -> str:
    if not S3_URI_PATTERN.match(value):
        raise ValueError("must look like s3://bucket/key (lower-case bucket name)")
    return value


def _relative_path(value: str) -> str:
    _no_nul(value)
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or value.startswith("~"):
        raise ValueError("must be a relative path inside the code archive, without '..'")
    return value


S3Uri = Annotated[str, Field(max_length=MAX_S3_URI_CHARS), AfterValidator(_s3_uri)]
SafeStr = Annotated[str, Field(max_length=MAX_ARG_BYTES), AfterValidator(_no_nul)]
RelativePath = Annotated[str, Field(max_length=1024), AfterValidator(_relative_path)]


def _no_nul_if_text(value: bool | int | float | str) -> bool | int | float | str:
    return _no_nul(value) if isinstance(value, str) else value


# The NUL check runs on the union's result: inside the str member, a NUL was reported once per
# member, under a path that printed pydantic's validator functions (with a memory address).
HyperparameterValue = Annotated[
    bool | int | float | Annotated[str, Field(max_length=MAX_ARG_BYTES)],
    AfterValidator(_no_nul_if_text),
]


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Return (bucket, key) of an s3:// URI."""
    match = S3_URI_PATTERN.match(uri)
    if not match:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return match["bucket"], match["key"]


class CodeSource(BaseModel):
    """The training code: a .tar.gz archive in S3, content-addressed by the client."""

    model_config = ConfigDict(extra="forbid")

    s3_uri: S3Uri = Field(description="s3://bucket/code/<sha256>.tar.gz")
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="checksum of the archive; the agent verifies it when given",
    )

    @field_validator("s3_uri")
    @classmethod
    def _is_archive(cls, value: str) -> str:
        if not value.endswith((".tar.gz", ".tgz")):
            raise ValueError("must point at a .tar.gz archive")
        return value


class BuildContext(BaseModel):
    """A Docker build context: a .tar.gz in S3 under contexts/, content-addressed by the client
    (`.dockerignore` honoured)."""

    model_config = ConfigDict(extra="forbid")

    s3_uri: S3Uri = Field(description="s3://bucket/contexts/<sha256>.tar.gz")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="checksum of the archive")


class ContainerBuild(BaseModel):
    """An image built in the account (CodeBuild) from a Dockerfile in a build context."""

    model_config = ConfigDict(extra="forbid")

    context: BuildContext
    dockerfile: RelativePath = Field(
        default="Dockerfile", description="the Dockerfile's path inside the context"
    )
    args: dict[Annotated[str, Field(pattern=BUILD_ARG_NAME_PATTERN)], SafeStr] = Field(
        default_factory=dict,
        max_length=MAX_BUILD_ARGS,
        description=f"--build-arg values; at most {MAX_BUILD_ARGS_JSON_BYTES:,} bytes as JSON",
    )

    @field_validator("args")
    @classmethod
    def _args_within(cls, value: dict[str, str]) -> dict[str, str]:
        return _within(value, MAX_BUILD_ARGS_JSON_BYTES)

    @property
    def tag(self) -> str:
        """The image's tag: a hash of everything the build reads (context, Dockerfile path,
        build args, platform), so the same inputs are never built twice."""
        inputs = {
            "context": self.context.sha256,
            "dockerfile": self.dockerfile,
            "args": dict(sorted(self.args.items())),
            "platform": BUILD_PLATFORM,
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


class Container(BaseModel):
    """Run the script inside a container image: one given, or one built from a Dockerfile."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=CONTAINER_IMAGE_PATTERN,
        description="an image URI (ECR or public), e.g. 123456789012.dkr.ecr.us-east-1."
        "amazonaws.com/train:v3 or pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
    )
    build: ContainerBuild | None = Field(
        default=None, description="build the image in the account from a Dockerfile"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Container:
        if (self.image is None) == (self.build is None):
            raise ValueError("give exactly one of image and build")
        return self


class DataSource(BaseModel):
    """Input data staged from S3 into $RUNCTL_DATA_DIR/<name> before the script starts."""

    model_config = ConfigDict(extra="forbid")

    s3_uri: S3Uri = Field(description="an object, or a prefix ending in '/'")
    name: str = Field(pattern=NAME_PATTERN, description="sub-directory of $RUNCTL_DATA_DIR")


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_runtime_seconds: int = Field(
        default=24 * 3600, ge=60, le=14 * 24 * 3600, description="wall-clock limit of the run"
    )


class InterruptionPolicy(BaseModel):
    """What to do when AWS takes the instance back (spot) or recommends moving (rebalance)."""

    model_config = ConfigDict(extra="forbid")

    # Worst case (bench/history.py): a boot that is ready only at both poll deadlines costs 29
    # polls (13 to the 600 s instance deadline, 16 to the 900 s install deadline) x 9 = 261
    # events, plus ~40 for the resume itself: ~301 per attempt. The run's own ~50 + 261, plus
    # 70 x 301 = 21,381 events, under Step Functions' 25,000 with ~15% to spare (200 would be
    # ~60,500). tests/unit/bench/test_history_budget.py holds this.
    max_interruptions: int = Field(
        default=10, ge=0, le=70, description="preemptions (and lost instances) to resume from"
    )
    on_demand_after: int | None = Field(
        default=None, ge=1, le=70, description="after this many preemptions, resume on-demand"
    )
    rebalance: Literal["checkpoint", "migrate"] = Field(
        default="checkpoint",
        description="on a rebalance recommendation: checkpoint now and carry on, or move now",
    )
    grace_seconds: int = Field(
        default=90, ge=5, le=110, description="SIGTERM to SIGKILL, bounded by the notice's time"
    )
    signal_checkpoint: bool = Field(
        default=False,
        description=(
            "on a rebalance recommendation (policy 'checkpoint'), send SIGUSR1 to the script, "
            "which must handle it by checkpointing and carrying on; the agent also sets "
            "RUNCTL_SIGUSR1_CHECKPOINT=1 for such a script"
        ),
    )


class CheckpointPolicy(BaseModel):
    """What the agent keeps of the checkpoints the script writes to $RUNCTL_CHECKPOINT_DIR."""

    model_config = ConfigDict(extra="forbid")

    keep: int = Field(
        default=3,
        ge=1,
        le=20,
        description=(
            "the newest complete checkpoints kept in S3 (a file or a top-level folder each); "
            "older ones are deleted once a newer one is durable; the newest is always kept"
        ),
    )


# Attempts after the first that a RunSpec may ask for: preemptions and script retries together
# (each resume can cost ~301 history events; with the agent-start and GPU retries on top, 73
# resumes stay under 90% of Step Functions' 25,000: tests/unit/bench/test_history_budget.py).
MAX_RESUMES = 70


class RetryPolicy(BaseModel):
    """Script failures worth another attempt (counted apart from interruptions)."""

    model_config = ConfigDict(extra="forbid")

    # Each retry is another attempt on the run item (DynamoDB's 400 KB holds every attempt's
    # entry: docs/architecture.md, "Payload limits"); 20 is already far past a flaky failure
    # (AWS Batch stops at 10 attempts). It was 100.
    max_retries: int = Field(
        default=0,
        ge=0,
        le=20,
        description="script failures to retry, on another instance each (at most 20)",
    )
    on_exit_codes: list[int] = Field(
        default_factory=list, max_length=50, description="only these exit codes are retried"
    )


class SourceInfo(BaseModel):
    """Where the code came from, recorded by the client for the experiment record."""

    model_config = ConfigDict(extra="forbid")

    git_commit: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{7,64}$", description="HEAD of the project's repository"
    )
    git_dirty: bool | None = Field(
        default=None, description="the packaged tree had changes not in that commit"
    )


class RunSpec(BaseModel):
    """Everything needed to start one training run."""

    model_config = ConfigDict(extra="forbid", title="RunSpec")

    code: CodeSource
    entry_point: RelativePath = Field(description="script inside the archive, e.g. train.py")
    args: list[SafeStr] = Field(
        default_factory=list,
        max_length=MAX_ARGS,
        description=f"passed to the script verbatim; at most {MAX_ARGS_JSON_BYTES:,} bytes as JSON",
    )
    hyperparameters: dict[
        Annotated[str, Field(pattern=HPARAM_NAME_PATTERN)], HyperparameterValue
    ] = Field(
        default_factory=dict,
        max_length=MAX_HYPERPARAMETERS,
        description=(
            "given to the script as JSON in RUNCTL_HPARAMS; at most "
            f"{MAX_HYPERPARAMETERS_JSON_BYTES:,} bytes as JSON"
        ),
    )
    hyperparameters_as_args: bool = Field(
        default=False, description="also pass each hyperparameter as '--key value'"
    )
    environment: dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], SafeStr] = Field(
        default_factory=dict,
        max_length=MAX_ENVIRONMENT_VARIABLES,
        description=(
            "extra environment variables for the script; at most "
            f"{MAX_ENVIRONMENT_JSON_BYTES:,} bytes as JSON"
        ),
    )
    interpreter: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_./-]{1,256}$",
        description=(
            "runs entry_point; default: the image's Python (python3 on al2023, "
            "/opt/pytorch/bin/python on dlami-pytorch)"
        ),
    )
    instance_types: (
        list[
            Annotated[str, Field(pattern=INSTANCE_TYPE_PATTERN, max_length=MAX_INSTANCE_TYPE_CHARS)]
        ]
        | None
    ) = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="in order of preference; the stack's default when omitted",
    )
    market: Literal["spot", "on-demand"] = "spot"
    on_demand_fallback: bool = Field(
        default=True, description="launch on-demand when no spot capacity is left"
    )
    image: str | None = Field(
        default=None,
        pattern=IMAGE_PATTERN,
        description=(
            "al2023, dlami-pytorch or an AMI id; default: dlami-pytorch on NVIDIA GPU instance "
            "types, al2023 on the others"
        ),
    )
    volume_gb: int = Field(default=100, ge=8, le=16384, description="root volume size")
    data: list[DataSource] = Field(default_factory=list, max_length=50)
    container: Container | None = Field(
        default=None,
        description="run the script in this container image (argv, RUNCTL_* variables and "
        "directories as outside it); the image's packages, not requirements.txt",
    )
    limits: Limits = Field(default_factory=Limits)
    interruptions: InterruptionPolicy = Field(default_factory=InterruptionPolicy)
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    checkpoints: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    experiment: str | None = Field(default=None, pattern=NAME_PATTERN)
    source: SourceInfo | None = Field(
        default=None, description="git commit and dirtiness of the code, when known"
    )

    @field_validator("environment")
    @classmethod
    def _no_reserved_env(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(name for name in value if name.upper().startswith(("RUNCTL_", "AWS_")))
        if reserved:
            raise ValueError(f"names starting with RUNCTL_ or AWS_ are reserved: {reserved}")
        return _within(value, MAX_ENVIRONMENT_JSON_BYTES)

    @field_validator("args")
    @classmethod
    def _args_within(cls, value: list[str]) -> list[str]:
        return _within(value, MAX_ARGS_JSON_BYTES)

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameters_within(
        cls, value: dict[str, bool | int | float | str]
    ) -> dict[str, bool | int | float | str]:
        return _within(value, MAX_HYPERPARAMETERS_JSON_BYTES)

    @field_validator("data")
    @classmethod
    def _unique_data_names(cls, value: list[DataSource]) -> list[DataSource]:
        names = [item.name for item in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"data names must be unique, repeated: {duplicates}")
        return value

    @model_validator(mode="after")
    def _resumes_within_history(self) -> RunSpec:
        asked = self.interruptions.max_interruptions + self.retries.max_retries
        if asked > MAX_RESUMES:
            raise ValueError(
                f"interruptions.max_interruptions + retries.max_retries is {asked}, more than "
                f"the {MAX_RESUMES} further attempts a run's history has room for"
            )
        return self

    @model_validator(mode="after")
    def _spec_within(self) -> RunSpec:
        # instance_types is left out: ValidateRun fills in the stack's default list after this
        # check, and every later step validates the RunSpec again. It is bounded on its own (20
        # names of 40 characters, under 1 KiB), in the margin.
        fields = self.model_dump(mode="json", exclude={"instance_types"})
        size = json_size(fields)
        if size > MAX_SPEC_JSON_BYTES:
            sizes = sorted(((json_size(v), k) for k, v in fields.items()), reverse=True)
            largest = ", ".join(f"{name} {taken:,}" for taken, name in sizes[:3])
            raise ValueError(
                f"takes {size:,} bytes as JSON, more than the {MAX_SPEC_JSON_BYTES:,} a RunSpec "
                f"may take (largest fields, in bytes: {largest})"
            )
        return self


_Sized = TypeVar("_Sized")


def _within(value: _Sized, max_bytes: int) -> _Sized:
    size = json_size(value)
    if size > max_bytes:
        raise ValueError(
            f"takes {size:,} bytes as JSON, more than the {max_bytes:,} allowed: fewer or "
            "shorter values"
        )
    return value


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the field: 'instance_types.0: String should match ...'."""
    return "; ".join(validation_problems(error))


def validation_problems(error: ValidationError, under: str | None = None) -> list[str]:
    """Each problem as 'field: message'; `under` names the field the RunSpec is in, if any
    ('base_spec' -> 'base_spec.args: ...')."""
    lines = []
    for problem in error.errors(include_url=False):
        parts = [under, *problem["loc"]] if under else problem["loc"]
        field = ".".join(str(part) for part in parts) or "(RunSpec)"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{field}: {message}")
    return lines

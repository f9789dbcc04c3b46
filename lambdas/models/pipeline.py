"""Pipelines (issue #5): retrain when a new data version lands, or on a schedule.

A pipeline watches `<prefix><version>/<marker>` in one bucket. Uploading a version's data files
starts nothing; uploading its marker (`_READY` by default) starts one TrainRun whose RunSpec is
the pipeline's template with one more data entry, `data_name`, pointing at
`s3://<bucket>/<prefix><version>/`. One model serves `cdk synth` (stacks/config.py reads
`runctl:pipelines` through `parse_pipelines`) and the StartPipelineRun Lambda (its environment).
"""

from __future__ import annotations

import json
import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Final, Literal

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from lambdas.constants import DATA_PREFIX
from lambdas.models.run_spec import NAME_PATTERN, DataSource, RunSpec

# Also the stem of execution names (with room for the version and a digest), rule and schedule
# names, so it stays short and free of characters any of those reject. (Field patterns run in
# pydantic-core's regex engine, where `$` is the very end; `re` patterns below use \Z.)
PIPELINE_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
# S3's "safe" key characters without '*': EventBridge's wildcard filter gives '*' a meaning, and
# none of these is ever URL-encoded in an event.
_SAFE_SEGMENT: Final = r"[A-Za-z0-9!_.'()-]+"
PREFIX_PATTERN: Final = re.compile(rf"^(?:{_SAFE_SEGMENT}/)+\Z")
MARKER_PATTERN: Final = re.compile(rf"^{_SAFE_SEGMENT}\Z")
BUCKET_PATTERN: Final = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
RATE_PATTERN: Final = re.compile(r"^rate\((?P<value>[1-9]\d*) (?P<unit>minute|hour|day)s?\)\Z")
CRON_PATTERN: Final = re.compile(r"^cron\(\S+( \S+){5}\)\Z")
DEFAULT_MARKER: Final = "_READY"
DEFAULT_DATA_NAME: Final = "dataset"
# What EventBridge Scheduler sends StartPipelineRun (the `source` tells it from an S3 event).
SCHEDULE_SOURCE: Final = "schedule"
# Lambda allows 4 KB for all of a function's environment; the shared variables take under 1 KB.
PIPELINES_ENV_MAX_BYTES: Final = 2800


class PipelineWatch(BaseModel):
    """Where a pipeline's data versions land: `<prefix><version>/<marker>` in `bucket`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str | None = Field(
        default=None, pattern=BUCKET_PATTERN, description="default: the runctl bucket"
    )
    prefix: str = Field(description="ends with '/', e.g. 'data/imagenet/'", max_length=512)
    marker: str = Field(
        default=DEFAULT_MARKER,
        max_length=255,
        description="file name whose upload says 'this version is complete'",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not PREFIX_PATTERN.match(value):
            raise ValueError(
                "must be folder names ending with '/', e.g. 'data/imagenet/', using letters, "
                "digits and !_.'()- only"
            )
        return value

    @field_validator("marker")
    @classmethod
    def _marker(cls, value: str) -> str:
        if not MARKER_PATTERN.match(value) or value in {".", ".."}:
            raise ValueError(
                "must be a file name such as '_READY' (letters, digits and !_.'()- only)"
            )
        return value

    @property
    def marker_wildcard(self) -> str:
        """The EventBridge wildcard filter on `detail.object.key` for this pipeline's markers."""
        return f"{self.prefix}*/{self.marker}"

    def version_prefix(self, key: str) -> str | None:
        """`<prefix><version>/` when `key` is a marker exactly one folder below the prefix."""
        suffix = f"/{self.marker}"
        if not key.startswith(self.prefix) or not key.endswith(suffix):
            return None
        version = key[len(self.prefix) : -len(suffix)]
        if not version or "/" in version:
            return None
        return f"{self.prefix}{version}/"


class PipelineSchedule(BaseModel):
    """An EventBridge Scheduler expression that starts a run with the newest data version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expression: str = Field(description="cron(min hour day month weekday year) or rate(n unit)")
    timezone: str = Field(default="UTC", description="IANA name; cron fires in this zone")

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        rate = RATE_PATTERN.match(value)
        if rate:
            plural = value.endswith("s)")
            if (rate["value"] == "1") == plural:
                raise ValueError("use 'rate(1 day)' but 'rate(2 days)': singular only for 1")
            return value
        if not CRON_PATTERN.match(value):
            raise ValueError(
                "must be 'cron(minutes hours day-of-month month day-of-week year)' "
                "or 'rate(<n> minute[s]|hour[s]|day[s])'"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as 'Europe/Berlin'") from None
        return value


class Pipeline(BaseModel):
    """One `runctl:pipelines` entry: what to watch, what to run, and optionally when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=PIPELINE_NAME_PATTERN)
    watch: PipelineWatch
    data_name: str = Field(
        default=DEFAULT_DATA_NAME,
        pattern=NAME_PATTERN,
        description="the data entry that gets each new version: $RUNCTL_DATA_DIR/<data_name>",
    )
    run: RunSpec = Field(description="the RunSpec template; the new version is added to `data`")
    schedule: PipelineSchedule | None = None

    @model_validator(mode="after")
    def _template_takes_a_version(self) -> Pipeline:
        if any(item.name == self.data_name for item in self.run.data):
            raise ValueError(
                f"run.data already has an entry named {self.data_name!r}; that name receives "
                "each new data version (set data_name to another name, or drop the entry)"
            )
        # Same check as at start time, with a stand-in version: the template must still be a
        # valid RunSpec once the version's entry is added (for example under 50 data entries).
        self.run_spec("s3://bucket-name/version/")
        return self

    def bucket(self, runctl_bucket: str) -> str:
        return self.watch.bucket or runctl_bucket

    def run_spec(self, version_uri: str) -> RunSpec:
        """The template with the version as data entry `data_name`; its experiment defaults to
        the pipeline's name, so a pipeline's runs can be listed and compared together."""
        template = self.run.model_dump(mode="json", exclude_unset=True)
        template["data"] = [
            *template.get("data", []),
            DataSource(s3_uri=version_uri, name=self.data_name).model_dump(mode="json"),
        ]
        template.setdefault("experiment", self.name)
        return RunSpec.model_validate(template)


class PipelineConfigError(ValueError):
    """A pipeline entry that cannot work; the message names the pipeline and the field."""

    def __init__(self, problem: str, value: object) -> None:
        super().__init__(problem)
        self.value = value


def parse_pipelines(value: object, *, data_buckets: tuple[str, ...]) -> tuple[Pipeline, ...]:
    """`runctl:pipelines` (a list, or its JSON text from `cdk synth -c`) as Pipelines; the first
    problem raises PipelineConfigError naming the pipeline and the field."""
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise PipelineConfigError(f"is not a valid JSON list ({error.msg})", value) from None
    if not isinstance(value, list):
        raise PipelineConfigError("must be a list of pipelines", value)
    pipelines = tuple(_parse_pipeline(index, item) for index, item in enumerate(value))
    for pipeline in pipelines:
        _check_readable(pipeline, data_buckets)
    names = [pipeline.name for pipeline in pipelines]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PipelineConfigError(f"pipeline names must be unique, repeated: {repeated}", names)
    size = len(pipelines_env_value(pipelines).encode())
    if size > PIPELINES_ENV_MAX_BYTES:
        raise PipelineConfigError(
            f"the pipelines take {size} bytes of StartPipelineRun's environment, more than "
            f"{PIPELINES_ENV_MAX_BYTES} (Lambda allows 4 KB in all): shorten the run templates "
            "(leave defaults out) or split pipelines across stacks",
            names,
        )
    return pipelines


def _parse_pipeline(index: int, item: object) -> Pipeline:
    name = item.get("name") if isinstance(item, dict) else None
    label = f"pipeline {name!r}" if isinstance(name, str) else f"pipeline #{index}"
    try:
        return Pipeline.model_validate(item)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        field = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        where = f"{label}, {field}" if field else label  # whole-entry checks name their fields
        raise PipelineConfigError(f"{where}: {message}", problem["input"]) from None


def _check_readable(pipeline: Pipeline, data_buckets: tuple[str, ...]) -> None:
    # The run's instance must be able to read the version: it reads the runctl bucket's data/
    # prefix and the buckets listed in runctl:dataBuckets, nothing else.
    watch = pipeline.watch
    if watch.bucket is None and not watch.prefix.startswith(DATA_PREFIX):
        raise PipelineConfigError(
            f"pipeline {pipeline.name!r}, watch.prefix: in the runctl bucket it must start with "
            f"{DATA_PREFIX!r} (what instances may read)",
            watch.prefix,
        )
    if watch.bucket is not None and watch.bucket not in data_buckets:
        raise PipelineConfigError(
            f"pipeline {pipeline.name!r}, watch.bucket: add it to runctl:dataBuckets too, so "
            "instances may read its data",
            watch.bucket,
        )


def pipelines_env_value(pipelines: tuple[Pipeline, ...]) -> str:
    """The PIPELINES variable of StartPipelineRun: compact JSON, schedules left out (the
    function never needs them; EventBridge Scheduler holds them)."""
    return json.dumps(
        [
            pipeline.model_dump(mode="json", exclude_unset=True, exclude={"schedule"})
            for pipeline in pipelines
        ],
        separators=(",", ":"),
    )


class PipelineFunctionEnv(BaseModel):
    """StartPipelineRun's own variables, on top of the shared LambdaEnv."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    BUCKET_NAME: str
    STATE_MACHINE_ARN: str
    PIPELINE_TRIGGERS_TABLE_NAME: str
    PIPELINES: tuple[Pipeline, ...]

    @field_validator("PIPELINES", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    def pipeline(self, name: str) -> Pipeline | None:
        return next((item for item in self.PIPELINES if item.name == name), None)


# --- what starts StartPipelineRun --------------------------------------------------------------


class MarkerEvent(S3EventNotificationEventBridgeModel):
    """An S3 Object Created event that a pipeline rule let through (a marker's upload)."""

    source: Literal["aws.s3"]


class ScheduledStart(BaseModel):
    """EventBridge Scheduler's payload: start `pipeline` with its newest data version."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["schedule"]
    pipeline: str


PipelineTrigger = Annotated[MarkerEvent | ScheduledStart, Field(discriminator="source")]
PIPELINE_TRIGGER: Final[TypeAdapter[MarkerEvent | ScheduledStart]] = TypeAdapter(PipelineTrigger)


def schedule_payload(pipeline: Pipeline) -> dict[str, str]:
    """What a pipeline's schedule sends (the stack and local mode use this same payload)."""
    return ScheduledStart(source=SCHEDULE_SOURCE, pipeline=pipeline.name).model_dump()


# --- a data version and what became of it ----------------------------------------------------


class DataVersion(BaseModel):
    """One version of a pipeline's data, known by its marker object. Pipeline, bucket, marker key
    and ETag are the idempotency key: the same marker bytes start one run, however often they
    arrive; new marker bytes are a new version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str
    bucket: str
    marker_key: str
    etag: str
    last_modified: datetime
    version_prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.version_prefix}"

    @property
    def version_name(self) -> str:
        """The version's folder name: `2026-11-23` in `data/imagenet/2026-11-23/`."""
        return self.version_prefix.rstrip("/").rsplit("/", 1)[-1]


TriggerStatus = Literal["started", "duplicate", "no-version"]


class TriggerOutcome(BaseModel):
    """What StartPipelineRun did for one pipeline."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str
    status: TriggerStatus
    version_uri: str | None = None
    marker_key: str | None = None
    etag: str | None = None
    execution_name: str | None = None
    execution_arn: str | None = None

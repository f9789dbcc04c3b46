"""StartPipelineRun's decisions: which pipelines a marker starts, which version a schedule
starts, the run's name and spec, and starting it at most once per data version.

Two guards make "one version, one run" hold: a Powertools idempotency record per (pipeline,
bucket, marker key, ETag) in the triggers table, written before StartExecution and kept for a
year; and a deterministic execution name, so a start that slipped past the record (a crash
between StartExecution and the record's completion) is answered by Step Functions itself, with
the same execution or ExecutionAlreadyExists. The name alone is not enough: Step Functions frees
a name 90 days after its execution closed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any, Final

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from botocore.exceptions import ClientError

from lambdas.errors import RunctlError
from lambdas.integrations.data_versions import DataVersions
from lambdas.models.pipeline import DataVersion, MarkerEvent, Pipeline, TriggerOutcome

S3_SOURCE: Final = "aws.s3"
OBJECT_CREATED: Final = "Object Created"
EXECUTION_NAME_MAX: Final = 80  # Step Functions' limit, and ValidateRun's run id pattern
DIGEST_LENGTH: Final = 16
IDEMPOTENCY_KEY_PREFIX: Final = "pipeline-run"
IDEMPOTENCY_KEY: Final = "[pipeline, bucket, marker_key, etag]"
# A year: long past the 90 days after which Step Functions would accept the name again.
TRIGGER_MEMORY_SECONDS: Final = 365 * 24 * 3600
_NOT_IN_NAME: Final = re.compile(r"[^A-Za-z0-9_-]+")


class PipelineNotFound(RunctlError):
    """A schedule named a pipeline this deployment does not have."""


def marker_event_pattern(bucket: str, pipelines: Sequence[Pipeline]) -> dict[str, Any]:
    """The EventBridge pattern for `bucket`'s pipeline markers: an upload of any other object
    (a version's thousands of data files) matches nothing and invokes nothing."""
    wildcards = dict.fromkeys(pipeline.watch.marker_wildcard for pipeline in pipelines)
    return {
        "source": [S3_SOURCE],
        "detail-type": [OBJECT_CREATED],
        "detail": {
            "bucket": {"name": [bucket]},
            "object": {"key": [{"wildcard": wildcard} for wildcard in wildcards]},
        },
    }


def pipelines_by_bucket(
    pipelines: Sequence[Pipeline], runctl_bucket: str
) -> dict[str, list[Pipeline]]:
    """Watched bucket -> its pipelines, in config order (one rule per watched bucket)."""
    grouped: dict[str, list[Pipeline]] = {}
    for pipeline in pipelines:
        grouped.setdefault(pipeline.bucket(runctl_bucket), []).append(pipeline)
    return grouped


def execution_name(version: DataVersion) -> str:
    """`<pipeline>-<version folder>-<digest>`: readable, at most 80 characters, and the same
    for the same marker bytes (the digest covers pipeline, bucket, marker key and ETag)."""
    identity = "\n".join((version.pipeline, version.bucket, version.marker_key, version.etag))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:DIGEST_LENGTH]
    room = EXECUTION_NAME_MAX - len(version.pipeline) - len(digest) - 2
    label = _NOT_IN_NAME.sub("-", version.version_name)[:room].strip("-_")
    return "-".join(part for part in (version.pipeline, label, digest) if part)


def execution_input(pipeline: Pipeline, version: DataVersion) -> str:
    """The RunSpec JSON for the version, byte-for-byte the same on every call (StartExecution is
    idempotent only for the same name *and* input)."""
    spec = pipeline.run_spec(version.uri)
    return json.dumps(spec.model_dump(mode="json", exclude_none=True), sort_keys=True)


class RunStarter:
    """Starts TrainRun for a data version at most once (see the module docstring)."""

    def __init__(
        self,
        sfn: Any,
        state_machine_arn: str,
        *,
        triggers_table: str,
        dynamodb: Any,
        lambda_context: Any = None,
    ) -> None:
        self._sfn = sfn
        self._state_machine_arn = state_machine_arn
        # One persistence layer per config: Powertools configures a layer once, on first use.
        self._start_once = idempotent_function(
            self._start_execution,
            data_keyword_argument="version",
            persistence_store=DynamoDBPersistenceLayer(
                table_name=triggers_table, boto3_client=dynamodb
            ),
            config=IdempotencyConfig(
                event_key_jmespath=IDEMPOTENCY_KEY,
                raise_on_no_idempotency_key=True,
                expires_after_seconds=TRIGGER_MEMORY_SECONDS,
                lambda_context=lambda_context,
                response_hook=_as_duplicate,
            ),
            key_prefix=IDEMPOTENCY_KEY_PREFIX,
        )

    def start(self, pipeline: Pipeline, version: DataVersion) -> TriggerOutcome:
        return TriggerOutcome.model_validate(self._start_once(pipeline=pipeline, version=version))

    def _start_execution(self, *, pipeline: Pipeline, version: DataVersion) -> dict[str, Any]:
        name = execution_name(version)
        outcome = TriggerOutcome(
            pipeline=pipeline.name,
            status="started",
            version_uri=version.uri,
            marker_key=version.marker_key,
            etag=version.etag,
            execution_name=name,
        )
        try:
            started = self._sfn.start_execution(
                stateMachineArn=self._state_machine_arn,
                name=name,
                input=execution_input(pipeline, version),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            arn = self._state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
            return outcome.model_copy(
                update={"status": "duplicate", "execution_arn": arn}
            ).model_dump(mode="json")
        return outcome.model_copy(update={"execution_arn": started["executionArn"]}).model_dump(
            mode="json"
        )


def _as_duplicate(response: Any, idempotent_data: DataRecord) -> Any:
    """A response replayed from the triggers table: that version's run was started before."""
    return {**response, "status": "duplicate"}


def start_for_marker(
    event: MarkerEvent,
    pipelines: Sequence[Pipeline],
    runctl_bucket: str,
    versions: DataVersions,
    starter: RunStarter,
) -> list[TriggerOutcome]:
    """One outcome per pipeline the marker belongs to (several pipelines may share data)."""
    bucket, key = event.detail.bucket.name, event.detail.object.key
    outcomes = []
    for pipeline in pipelines:
        if pipeline.bucket(runctl_bucket) != bucket or not pipeline.watch.version_prefix(key):
            continue
        version = versions.at_marker(pipeline, bucket, key)
        if version is None:  # deleted again before we looked: nothing to train on
            outcomes.append(TriggerOutcome(pipeline=pipeline.name, status="no-version"))
        else:
            outcomes.append(starter.start(pipeline, version))
    return outcomes


def start_newest(
    name: str,
    pipelines: Sequence[Pipeline],
    runctl_bucket: str,
    versions: DataVersions,
    starter: RunStarter,
) -> TriggerOutcome:
    """A schedule's start: the newest version, unless it already has its run."""
    pipeline = next((item for item in pipelines if item.name == name), None)
    if pipeline is None:
        known = [item.name for item in pipelines]
        raise PipelineNotFound(f"no pipeline named {name!r} (this deployment has {known})")
    version = versions.newest(pipeline, pipeline.bucket(runctl_bucket))
    if version is None:
        return TriggerOutcome(pipeline=name, status="no-version")
    return starter.start(pipeline, version)

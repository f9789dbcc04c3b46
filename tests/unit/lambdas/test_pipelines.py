"""Pipelines without AWS: config validation messages, version markers, the run spec a version
gets, execution names, the rule pattern, and picking the newest version."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lambdas.integrations.data_versions import DataVersions
from lambdas.logic.pipelines import (
    EXECUTION_NAME_MAX,
    execution_input,
    execution_name,
    marker_event_pattern,
    pipelines_by_bucket,
)
from lambdas.logic.validation import RUN_ID_PATTERN
from lambdas.models.pipeline import (
    PIPELINES_ENV_MAX_BYTES,
    DataVersion,
    Pipeline,
    PipelineConfigError,
    PipelineFunctionEnv,
    parse_pipelines,
    pipelines_env_value,
)

README = Path(__file__).resolve().parents[3] / "README.md"
CODE = {"s3_uri": "s3://runctl-bucket/code/" + "a" * 64 + ".tar.gz"}
TEMPLATE = {"code": CODE, "entry_point": "train.py"}
WHEN = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def pipeline(**fields: Any) -> dict[str, Any]:
    return {"name": "imagenet", "watch": {"prefix": "data/imagenet/"}, "run": TEMPLATE, **fields}


def version(**fields: Any) -> DataVersion:
    values = {
        "pipeline": "imagenet",
        "bucket": "runctl-bucket",
        "marker_key": "data/imagenet/2026-11-23/_READY",
        "etag": "0cc175b9c0f1b6a831c399e269772661",
        "last_modified": WHEN,
        "version_prefix": "data/imagenet/2026-11-23/",
        **fields,
    }
    return DataVersion.model_validate(values)


def config_error(value: object, data_buckets: tuple[str, ...] = ()) -> PipelineConfigError:
    with pytest.raises(PipelineConfigError) as raised:
        parse_pipelines(value, data_buckets=data_buckets)
    return raised.value


# --- config ------------------------------------------------------------------------------------


def test_a_minimal_pipeline_gets_the_documented_defaults():
    [parsed] = parse_pipelines([pipeline()], data_buckets=())

    assert parsed.watch.bucket is None
    assert parsed.watch.marker == "_READY"
    assert parsed.data_name == "dataset"
    assert parsed.schedule is None


def test_pipelines_can_come_as_json_text_from_the_command_line():
    parsed = parse_pipelines(json.dumps([pipeline()]), data_buckets=())

    assert [item.name for item in parsed] == ["imagenet"]


@pytest.mark.parametrize("empty", [None, "", []])
def test_no_pipelines_is_valid(empty):
    assert parse_pipelines(empty, data_buckets=()) == ()


@pytest.mark.parametrize(
    ("entry", "names"),
    [
        (pipeline(watch={"prefix": "data/imagenet"}), ("'imagenet'", "watch.prefix", "'/'")),
        (pipeline(watch={"prefix": "data/*/"}), ("watch.prefix",)),
        (pipeline(watch={"prefix": "/data/x/"}), ("watch.prefix",)),
        (pipeline(watch={"prefix": "data/x/", "marker": "a/_READY"}), ("watch.marker",)),
        (pipeline(name="has space"), ("pipeline 'has space'", "name", "pattern")),
        ({"watch": {"prefix": "data/x/"}, "run": TEMPLATE}, ("pipeline #0", "name", "required")),
        (pipeline(run={"entry_point": "train.py"}), ("'imagenet'", "run.code", "Field required")),
        (pipeline(run={**TEMPLATE, "market": "cheap"}), ("run.market",)),
        (pipeline(data_name="../up"), ("data_name",)),
        (pipeline(schedule={"expression": "every day"}), ("schedule.expression", "cron(")),
        (pipeline(schedule={"expression": "rate(1 days)"}), ("schedule.expression", "singular")),
        (pipeline(schedule={"expression": "rate(2 day)"}), ("schedule.expression",)),
        (
            pipeline(schedule={"expression": "rate(1 day)", "timezone": "Mars/Olympus"}),
            ("schedule.timezone", "IANA"),
        ),
        (pipeline(watch={"prefix": "data/x/"}, retrain=True), ("retrain", "not permitted")),
    ],
)
def test_a_malformed_pipeline_is_rejected_naming_it_and_the_field(entry, names):
    error = config_error([entry])

    for name in names:
        assert name in str(error)


def test_a_template_that_already_fills_the_data_name_is_rejected():
    entry = pipeline(run={**TEMPLATE, "data": [{"s3_uri": "s3://b-x/k/", "name": "dataset"}]})

    error = config_error([entry])

    assert "run.data already has an entry named 'dataset'" in str(error)


def test_a_template_with_no_room_for_the_version_is_rejected():
    full = [{"s3_uri": f"s3://bkt/{index}/", "name": f"d{index}"} for index in range(50)]

    error = config_error([pipeline(run={**TEMPLATE, "data": full})])

    assert "data" in str(error)
    assert "at most 50" in str(error)


def test_the_runctl_bucket_is_watched_only_under_data():
    error = config_error([pipeline(watch={"prefix": "datasets/imagenet/"})])

    assert "watch.prefix" in str(error)
    assert "'data/'" in str(error)


def test_another_bucket_must_be_a_data_bucket_too():
    entry = pipeline(watch={"bucket": "lab-datasets", "prefix": "imagenet/"})

    error = config_error([entry], data_buckets=("other-datasets",))
    [parsed] = parse_pipelines([entry], data_buckets=("lab-datasets",))

    assert "watch.bucket" in str(error)
    assert "runctl:dataBuckets" in str(error)
    assert parsed.watch.bucket == "lab-datasets"


def test_pipeline_names_are_unique():
    error = config_error([pipeline(), pipeline(watch={"prefix": "data/other/"})])

    assert "repeated: ['imagenet']" in str(error)


def test_pipelines_too_big_for_the_lambda_environment_are_rejected_with_the_size():
    long_args = ["--flag-" + "x" * 200 for _ in range(4)]
    entries = [
        pipeline(name=f"p{index}", run={**TEMPLATE, "args": long_args}) for index in range(4)
    ]

    error = config_error(entries)

    size = int(re.search(r"take (\d+) bytes", str(error))[1])
    assert size > PIPELINES_ENV_MAX_BYTES


@pytest.mark.parametrize("value", ['{"name": "x"}', "[not json", 42])
def test_pipelines_must_be_a_list(value):
    assert "list" in str(config_error(value))


def test_the_environment_round_trip_keeps_everything_but_the_schedule():
    # Given a pipeline with a schedule, and the variables the stack gives StartPipelineRun
    [original] = parse_pipelines(
        [pipeline(schedule={"expression": "cron(0 3 * * ? *)", "timezone": "Europe/Berlin"})],
        data_buckets=(),
    )
    variables = {
        "BUCKET_NAME": "runctl-bucket",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:TrainRun",
        "PIPELINE_TRIGGERS_TABLE_NAME": "triggers",
        "PIPELINES": pipelines_env_value((original,)),
    }

    # When the function reads them back
    [restored] = PipelineFunctionEnv.model_validate(variables).PIPELINES

    # Then only the schedule is left out, and defaults are not spelled out
    assert restored == original.model_copy(update={"schedule": None})
    assert "max_runtime_seconds" not in variables["PIPELINES"]


def test_the_readme_example_is_a_valid_pipeline():
    section = README.read_text().split("## Retraining when new data lands", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S)[1]
    filled = block.replace("<bucket>", "my-runctl-bucket").replace("<sha256>", "0" * 64)

    [parsed] = parse_pipelines(json.loads("{" + filled + "}")["runctl:pipelines"], data_buckets=())

    assert parsed.schedule is not None
    assert parsed.run_spec("s3://my-runctl-bucket/data/imagenet/v1/").data[0].name == "imagenet"


# --- versions and run specs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("data/imagenet/2026-11-23/_READY", "data/imagenet/2026-11-23/"),
        ("data/imagenet/_READY", None),  # no version folder
        ("data/imagenet/v1/train/_READY", None),  # two folders down
        ("data/imagenet/v1/NOT_READY", None),
        ("data/imagenet/v1/_READY.tmp", None),
        ("data/imagenet-old/v1/_READY", None),
    ],
)
def test_a_version_is_the_folder_right_under_the_prefix_that_holds_the_marker(key, expected):
    parsed = Pipeline.model_validate(pipeline())

    assert parsed.watch.version_prefix(key) == expected


def test_the_run_spec_is_the_template_plus_the_version_under_data_name():
    parsed = Pipeline.model_validate(
        pipeline(
            data_name="images",
            run={
                **TEMPLATE,
                "data": [{"s3_uri": "s3://runctl-bucket/data/labels/", "name": "labels"}],
                "hyperparameters": {"lr": 0.1},
            },
        )
    )

    spec = parsed.run_spec("s3://runctl-bucket/data/imagenet/v2/")

    assert [(item.name, item.s3_uri) for item in spec.data] == [
        ("labels", "s3://runctl-bucket/data/labels/"),
        ("images", "s3://runctl-bucket/data/imagenet/v2/"),
    ]
    assert spec.hyperparameters == {"lr": 0.1}
    assert spec.experiment == "imagenet"


def test_a_template_experiment_is_kept():
    parsed = Pipeline.model_validate(pipeline(run={**TEMPLATE, "experiment": "vision"}))

    assert parsed.run_spec("s3://runctl-bucket/data/imagenet/v2/").experiment == "vision"


def test_the_execution_input_is_the_same_text_every_time():
    parsed = Pipeline.model_validate(
        pipeline(run={**TEMPLATE, "hyperparameters": {"b": 1, "a": 2}})
    )

    first = execution_input(parsed, version())

    assert execution_input(parsed, version()) == first
    assert json.loads(first)["data"][-1]["s3_uri"] == "s3://runctl-bucket/data/imagenet/2026-11-23/"


# --- execution names -------------------------------------------------------------------------


def test_execution_name_reads_as_pipeline_and_version_and_is_stable():
    name = execution_name(version())

    assert re.fullmatch(r"imagenet-2026-11-23-[0-9a-f]{16}", name)
    assert execution_name(version()) == name


@pytest.mark.parametrize(
    "change",
    [
        {"etag": "92eb5ffee6ae2fec3ad71c777531578f"},
        {"bucket": "other-bucket"},
        {"pipeline": "imagenet-small"},
        {"marker_key": "data/imagenet/2026-11-23/MANIFEST.json"},
    ],
)
def test_any_part_of_the_identity_changes_the_name(change):
    assert execution_name(version(**change)) != execution_name(version())


def test_last_modified_alone_does_not_change_the_name():
    later = version(last_modified=WHEN + timedelta(days=1))

    assert execution_name(later) == execution_name(version())


def test_long_and_odd_version_names_still_make_a_valid_run_id():
    odd = version(
        pipeline="p" * 40,
        marker_key="data/x/" + "dt=2026.11.23 (final)" * 5 + "/_READY",
        version_prefix="data/x/" + "dt=2026.11.23 (final)" * 5 + "/",
    )

    name = execution_name(odd)

    assert len(name) <= EXECUTION_NAME_MAX
    assert RUN_ID_PATTERN.match(name)
    assert name.startswith("p" * 40 + "-dt-2026-11-23-final")


# --- the rule pattern --------------------------------------------------------------------------


def test_the_rule_matches_object_created_markers_under_each_prefix_of_the_bucket():
    pipelines = parse_pipelines(
        [
            pipeline(),
            pipeline(name="again", data_name="images"),  # same data: one wildcard
            pipeline(name="text", watch={"prefix": "data/text/", "marker": "MANIFEST.json"}),
        ],
        data_buckets=(),
    )

    pattern = marker_event_pattern("runctl-bucket", pipelines)

    assert pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": ["runctl-bucket"]},
            "object": {
                "key": [
                    {"wildcard": "data/imagenet/*/_READY"},
                    {"wildcard": "data/text/*/MANIFEST.json"},
                ]
            },
        },
    }


def test_pipelines_are_grouped_by_the_bucket_they_watch():
    pipelines = parse_pipelines(
        [
            pipeline(),
            pipeline(name="lab", watch={"bucket": "lab-datasets", "prefix": "imagenet/"}),
        ],
        data_buckets=("lab-datasets",),
    )

    grouped = pipelines_by_bucket(pipelines, "runctl-bucket")

    assert {bucket: [item.name for item in items] for bucket, items in grouped.items()} == {
        "runctl-bucket": ["imagenet"],
        "lab-datasets": ["lab"],
    }


# --- the newest version ----------------------------------------------------------------------


class ListingS3:
    """ListObjectsV2 over a dict of key -> LastModified (what DataVersions asks of S3)."""

    def __init__(self, objects: dict[str, datetime]) -> None:
        self.objects = objects

    def list_objects_v2(self, Bucket: str, Prefix: str, MaxKeys: int) -> dict[str, Any]:
        keys = sorted(key for key in self.objects if key.startswith(Prefix))[:MaxKeys]
        return {
            "Contents": [
                {"Key": key, "LastModified": self.objects[key], "ETag": f'"etag-{key}"'}
                for key in keys
            ]
        }

    def get_paginator(self, operation: str) -> ListingS3:
        return self

    def paginate(self, Bucket: str, Prefix: str, Delimiter: str) -> list[dict[str, Any]]:
        folders = sorted(
            {
                Prefix + key[len(Prefix) :].split(Delimiter)[0] + Delimiter
                for key in self.objects
                if key.startswith(Prefix) and Delimiter in key[len(Prefix) :]
            }
        )
        # Two pages, as a long listing would come
        return [
            {"CommonPrefixes": [{"Prefix": folder} for folder in folders[:1]]},
            {"CommonPrefixes": [{"Prefix": folder} for folder in folders[1:]]},
        ]


def test_newest_version_is_the_latest_marker_not_the_last_name():
    parsed = Pipeline.model_validate(pipeline())
    s3 = ListingS3(
        {
            "data/imagenet/b/_READY": WHEN,
            "data/imagenet/a/_READY": WHEN + timedelta(hours=2),
            "data/imagenet/a/part-0.bin": WHEN + timedelta(hours=1),
            "data/imagenet/c/part-0.bin": WHEN + timedelta(hours=3),  # no marker yet
            "data/imagenet/d/_READY.bak": WHEN + timedelta(hours=4),  # not the marker
        }
    )

    newest = DataVersions(s3).newest(parsed, "runctl-bucket")

    assert newest is not None
    assert newest.version_prefix == "data/imagenet/a/"
    assert newest.etag == "etag-data/imagenet/a/_READY"


def test_no_marker_means_no_version():
    parsed = Pipeline.model_validate(pipeline())
    s3 = ListingS3({"data/imagenet/a/part-0.bin": WHEN})

    assert DataVersions(s3).newest(parsed, "runctl-bucket") is None

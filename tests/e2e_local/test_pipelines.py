"""Pipelines end to end in local mode (issue #5): a data version's upload starts exactly one
TrainRun through the deployed marker rule, the run trains on that version, and duplicates of the
marker event, a re-upload of the same marker, or a schedule with no new data start nothing."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.constants import outputs_prefix
from lambdas.models.pipeline import Pipeline
from runctl.local.deploy import LocalSettings
from runctl.local.session import LocalSession
from runctl.packaging import CodePackage, package_directory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_pipelines")]

LOCAL_BUCKET = "runctl-local-bucket"  # what runctl/local/deploy.py names the runctl bucket
VERSION = "2026-11-23"
DATA_FILES = 500
# Counts what was staged for it and proves which version it was.
SCRIPT = """
    import json, os, pathlib
    data = pathlib.Path(os.environ["RUNCTL_DATA_DIR"]) / "imagenet"
    files = sorted(path.name for path in data.iterdir())
    summary = {"files": len(files), "first": files[0], "marker": (data / "_READY").read_text()}
    out = pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"])
    (out / "seen.json").write_text(json.dumps(summary))
    print("RUNCTL_METRIC " + json.dumps({"step": 1, "files": len(files)}), flush=True)
"""


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> CodePackage:
    project = tmp_path_factory.mktemp("project")
    (project / "train.py").write_text(textwrap.dedent(SCRIPT))
    return package_directory(project)


@pytest.fixture(scope="module")
def pipeline(code: CodePackage) -> Pipeline:
    return Pipeline.model_validate(
        {
            "name": "imagenet",
            "watch": {"prefix": "data/imagenet/"},
            "data_name": "imagenet",
            "run": {
                "code": {"s3_uri": f"s3://{LOCAL_BUCKET}/{code.key}", "sha256": code.sha256},
                "entry_point": "train.py",
            },
            "schedule": {"expression": "cron(0 3 * * ? *)"},
        }
    )


@pytest.fixture(scope="module")
def session(
    tmp_path_factory: pytest.TempPathFactory, code: CodePackage, pipeline: Pipeline
) -> Iterator[LocalSession]:
    settings = LocalSettings(poll_seconds=1, heartbeat_seconds=60, pipelines=(pipeline,))
    with LocalSession(tmp_path_factory.mktemp("runctl-local"), settings) as local:
        assert local.stack.bucket == LOCAL_BUCKET
        local.upload_code(code)
        yield local


def _executions(session: LocalSession) -> list[dict[str, Any]]:
    return session.sfn.list_executions(stateMachineArn=session.stack.state_machine_arn)[
        "executions"
    ]


def _upload_version(session: LocalSession, version: str, files: int, marker: bytes) -> str:
    prefix = f"data/imagenet/{version}/"
    for index in range(files):
        session.s3.put_object(
            Bucket=LOCAL_BUCKET, Key=f"{prefix}part-{index:05d}.bin", Body=index.to_bytes(4, "big")
        )
    session.s3.put_object(Bucket=LOCAL_BUCKET, Key=f"{prefix}_READY", Body=marker)
    return prefix


@pytest.fixture(scope="module")
def first_version(session: LocalSession) -> dict[str, Any]:
    """500 data files and the marker of one version, uploaded; their events handled."""
    prefix = _upload_version(session, VERSION, DATA_FILES, marker=b"500 files\n")
    assert session.pipeline_events is not None
    session.pipeline_events.flush()
    return {"prefix": prefix, "delivered": list(session.pipeline_events.delivered)}


def test_an_upload_of_500_files_and_a_marker_starts_exactly_one_run(session, first_version):
    # Then the rule let through one event (the marker's), and one execution started
    [(event, answer)] = first_version["delivered"]
    assert event["detail"]["object"]["key"] == f"{first_version['prefix']}_READY"
    [outcome] = answer["outcomes"]
    assert outcome["status"] == "started"
    [execution] = _executions(session)
    assert execution["name"] == outcome["execution_name"]

    # And the run trains on that version, staged whole, to the end
    result = session.wait(execution["name"], timeout_seconds=240)
    assert result.execution_status == "SUCCEEDED"
    assert [item["s3_uri"] for item in result.record.spec["data"]] == [
        f"s3://{LOCAL_BUCKET}/{first_version['prefix']}"
    ]
    assert result.record.experiment == "imagenet"
    seen = json.loads(
        session.s3.get_object(
            Bucket=LOCAL_BUCKET, Key=outputs_prefix(execution["name"]) + "seen.json"
        )["Body"].read()
    )
    assert seen == {"files": DATA_FILES + 1, "first": "_READY", "marker": "500 files\n"}


def test_the_same_marker_event_delivered_twice_starts_one_run(session, first_version):
    [(event, _)] = first_version["delivered"]
    assert session.pipeline_events is not None

    answer = session.pipeline_events.send(event)

    assert [item["status"] for item in answer["outcomes"]] == ["duplicate"]
    assert len(_executions(session)) == 1


def test_the_marker_reuploaded_with_the_same_bytes_starts_nothing(session, first_version):
    assert session.pipeline_events is not None
    delivered_before = len(session.pipeline_events.delivered)

    session.s3.put_object(
        Bucket=LOCAL_BUCKET, Key=f"{first_version['prefix']}_READY", Body=b"500 files\n"
    )
    session.pipeline_events.flush()

    # The rule passed the new event on (same key), and StartPipelineRun knew the version
    [(_, answer)] = session.pipeline_events.delivered[delivered_before:]
    assert [item["status"] for item in answer["outcomes"]] == ["duplicate"]
    assert len(_executions(session)) == 1


def test_a_schedule_with_no_new_data_starts_nothing(session, pipeline, first_version):
    assert session.pipeline_events is not None

    answer = session.pipeline_events.fire_schedule(pipeline)

    [outcome] = answer["outcomes"]
    assert outcome["status"] == "duplicate"
    assert outcome["version_uri"] == f"s3://{LOCAL_BUCKET}/{first_version['prefix']}"
    assert len(_executions(session)) == 1

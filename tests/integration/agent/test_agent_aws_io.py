"""The agent's single AWS operations against moto: run item writes, data staging, log stream."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from instance_agent.errors import StagingError
from instance_agent.logs import CloudWatchSink
from instance_agent.main import main
from instance_agent.result import SETUP_REPORT_JSON_BYTES
from instance_agent.run_record import RunRecord
from instance_agent.staging import StagingInterrupted, stage_data_item


def _record(harness, attempt: int = 1) -> RunRecord:
    return RunRecord(harness.dynamodb, "runctl-runs", harness.run_id, attempt, clock=lambda: "T1")


@pytest.mark.parametrize("status", ["LAUNCHING", "STAGING", "RUNNING"])
def test_a_live_run_of_this_attempt_takes_the_status(harness, status):
    harness.put_run_item(status=status)

    assert _record(harness).set_status("RUNNING") is True

    item = harness.run_item()
    assert (item["status"]["S"], item["updated_at"]["S"]) == ("RUNNING", "T1")


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED", "PENDING"])
def test_a_run_in_another_state_is_not_overwritten(harness, status):
    harness.put_run_item(status=status)

    assert _record(harness).set_status("RUNNING") is False

    assert harness.run_item()["status"]["S"] == status


@pytest.mark.parametrize("status", ["STAGING", "RUNNING"])
def test_given_a_notice_then_a_live_run_of_this_attempt_becomes_checkpointing(harness, status):
    harness.put_run_item(status=status)

    assert _record(harness).set_status("CHECKPOINTING") is True

    assert harness.run_item()["status"]["S"] == "CHECKPOINTING"


def test_given_checkpointing_when_a_late_running_comes_then_the_status_stays(harness):
    harness.put_run_item(status="STAGING")
    record = _record(harness)
    record.set_status("CHECKPOINTING")

    assert record.set_status("RUNNING") is False

    assert harness.run_item()["status"]["S"] == "CHECKPOINTING"


def test_given_the_next_attempt_already_planned_then_checkpointing_is_not_written(harness):
    harness.put_run_item(status="RESUMING", attempt=2)

    assert _record(harness, attempt=1).set_status("CHECKPOINTING") is False

    assert harness.run_item()["status"]["S"] == "RESUMING"


def test_another_attempts_run_item_is_not_overwritten(harness):
    harness.put_run_item(status="RUNNING", attempt=2)

    assert _record(harness, attempt=1).set_latest_metrics({"loss": 0.1}) is False

    assert "latest_metrics" not in harness.run_item()


def test_latest_metrics_are_stored_as_numbers_and_unstorable_ones_left_out(harness):
    assert _record(harness).set_latest_metrics({"loss": 0.25, "step": 10, "huge": 1e300}) is True

    assert harness.run_item()["latest_metrics"] == {
        "M": {"loss": {"N": "0.25"}, "step": {"N": "10"}}
    }


def test_setup_phases_land_under_the_attempt_number_as_numbers_and_text(harness):
    harness.put_run_item(status="STAGING", attempt=2)
    phases = {"environment": {"action": "restored", "seconds": 1.5}, "gpu": None}

    assert _record(harness, attempt=2).set_setup(phases) is True

    assert harness.run_item()["setup"] == {
        "M": {
            "2": {
                "M": {
                    "environment": {"M": {"action": {"S": "restored"}, "seconds": {"N": "1.5"}}},
                    "gpu": {"NULL": True},
                }
            }
        }
    }


def test_a_setup_report_over_its_cap_is_written_as_null_and_the_other_kept(harness):
    # Given a GPU report one byte over the cap (16 long GPU names) and a small environment report
    harness.put_run_item(status="STAGING")
    gpu = {"driver_version": "570.86.15", "gpus": [""] * 16}
    gpu["gpus"][0] = "G" * (SETUP_REPORT_JSON_BYTES + 1 - len(json.dumps(gpu)))
    assert len(json.dumps(gpu)) == SETUP_REPORT_JSON_BYTES + 1

    # When the agent records its set-up
    assert _record(harness).set_setup({"environment": {"action": "NONE"}, "gpu": gpu}) is True

    # Then the run item keeps the environment and leaves the GPU report out, as result.json does
    assert harness.run_item()["setup"]["M"]["1"] == {
        "M": {"environment": {"M": {"action": {"S": "NONE"}}}, "gpu": {"NULL": True}}
    }


def test_another_attempts_setup_is_not_written(harness):
    harness.put_run_item(status="RUNNING", attempt=2)

    assert _record(harness, attempt=1).set_setup({"environment": None}) is False

    assert harness.run_item()["setup"] == {"M": {}}


def test_a_single_data_object_lands_under_its_own_name(harness, tmp_path: Path):
    harness.s3.put_object(Bucket="runctl-data", Key="sets/one/labels.csv", Body=b"a,b")

    count = stage_data_item(harness.s3, "s3://runctl-data/sets/one/labels.csv", tmp_path / "d")

    assert count == 1
    assert (tmp_path / "d" / "labels.csv").read_bytes() == b"a,b"


def test_a_missing_data_object_is_named_in_the_error(harness, tmp_path: Path):
    with pytest.raises(StagingError, match=r"no object at s3://runctl-data/absent\.csv"):
        stage_data_item(harness.s3, "s3://runctl-data/absent.csv", tmp_path / "d")


def test_a_prefix_keeps_its_key_layout_and_skips_folder_markers(harness, tmp_path: Path):
    for key in ("p/", "p/a.txt", "p/deep/er/b.txt", "other/c.txt"):
        harness.s3.put_object(Bucket="runctl-data", Key=key, Body=key.encode())

    count = stage_data_item(harness.s3, "s3://runctl-data/p/", tmp_path / "d")

    assert count == 2
    assert (tmp_path / "d" / "deep" / "er" / "b.txt").read_bytes() == b"p/deep/er/b.txt"
    assert not (tmp_path / "d" / "c.txt").exists()


def test_an_interruption_stops_staging_in_the_middle_of_a_file_and_leaves_no_part(
    harness, tmp_path: Path
):
    # Given a prefix of two objects, the first large enough to arrive in many chunks
    harness.s3.put_object(Bucket="runctl-data", Key="big/a.bin", Body=b"\0" * (4 * 1024 * 1024))
    harness.s3.put_object(Bucket="runctl-data", Key="big/b.bin", Body=b"b")
    asked = []

    def interrupted() -> bool:  # the warning arrives once the first chunk is in
        asked.append(True)
        return len(asked) > 2

    # When it is staged
    with pytest.raises(StagingInterrupted, match=r"s3://runctl-data/big/a\.bin"):
        stage_data_item(harness.s3, "s3://runctl-data/big/", tmp_path / "d", interrupted)

    # Then neither file is there, whole or in part
    assert sorted(path.name for path in (tmp_path / "d").rglob("*")) == []


def test_an_interruption_before_staging_downloads_nothing(harness, tmp_path: Path):
    harness.s3.put_object(Bucket="runctl-data", Key="sets/one/labels.csv", Body=b"a,b")

    with pytest.raises(StagingInterrupted):
        stage_data_item(harness.s3, "s3://runctl-data/sets/", tmp_path / "d", lambda: True)

    assert list((tmp_path / "d").iterdir()) == []


def test_the_sink_creates_a_missing_log_group_and_stream(harness):
    sink = CloudWatchSink(harness.logs, "/runctl/other", "run-9/1")
    sink.add("hello")

    sink.flush()

    events = harness.logs.get_log_events(
        logGroupName="/runctl/other", logStreamName="run-9/1", startFromHead=True
    )["events"]
    assert [event["message"] for event in events] == ["hello"]


def test_the_command_line_exits_2_and_logs_to_agent_log_when_the_config_is_missing(
    harness, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        code = main(["--config", f"s3://{harness.bucket}/runs/nope/attempts/1/agent-config.json"])
    finally:
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)

    assert code == 2
    assert "cannot read agent config" in (tmp_path / "home" / "agent.log").read_text()

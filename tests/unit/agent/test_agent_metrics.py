"""Metric lines on stdout and in $RUNCTL_OUTPUT_DIR/metrics.jsonl."""

from __future__ import annotations

import json
import logging
import math

import pytest

from instance_agent.metrics import BadMetricLine, MetricsRecorder, parse_metric_line


def test_a_metric_line_gives_its_json_object():
    assert parse_metric_line('RUNCTL_METRIC {"step": 10, "loss": 0.3}') == {"step": 10, "loss": 0.3}


@pytest.mark.parametrize(
    "line",
    ["step 10 loss 0.3", "", "  RUNCTL_METRIC {}", 'RUNCTL_METRICS {"a": 1}', "x RUNCTL_METRIC"],
)
def test_other_lines_are_not_metrics(line):
    assert parse_metric_line(line) is None


@pytest.mark.parametrize("line", ["RUNCTL_METRIC {step: 1}", "RUNCTL_METRIC", "RUNCTL_METRIC {"])
def test_bad_json_after_the_prefix_is_reported(line):
    with pytest.raises(BadMetricLine, match="not valid JSON"):
        parse_metric_line(line)


@pytest.mark.parametrize("body", ["[1, 2]", "3", '"loss"', "null"])
def test_json_that_is_not_an_object_is_reported(body):
    with pytest.raises(BadMetricLine, match="not a JSON object"):
        parse_metric_line(f"RUNCTL_METRIC {body}")


def test_metric_lines_update_latest_values(tmp_path):
    recorder = MetricsRecorder(tmp_path / "metrics.jsonl")

    recorder.handle_stdout_line('RUNCTL_METRIC {"step": 1, "loss": 0.9, "phase": "train"}')
    recorder.handle_stdout_line('RUNCTL_METRIC {"step": 2, "loss": 0.5}')
    recorder.handle_stdout_line('RUNCTL_METRIC {"step": 3, "acc": 0.7, "ok": true}')

    version, latest = recorder.latest()
    assert latest == {"step": 3, "loss": 0.5, "acc": 0.7}  # strings and bools are not numbers
    assert version == 3
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_given_a_bad_metric_line_then_it_is_logged_and_later_lines_still_count(tmp_path, caplog):
    recorder = MetricsRecorder(tmp_path / "metrics.jsonl")

    with caplog.at_level(logging.WARNING):
        recorder.handle_stdout_line("RUNCTL_METRIC {oops")
        recorder.handle_stdout_line("RUNCTL_METRIC [1]")
        recorder.handle_stdout_line('RUNCTL_METRIC {"loss": 0.1}')

    assert recorder.latest()[1] == {"loss": 0.1}
    assert sum("bad metric line" in record.message for record in caplog.records) == 2


def test_non_finite_numbers_are_kept_in_the_file_but_not_in_latest(tmp_path):
    recorder = MetricsRecorder(tmp_path / "metrics.jsonl")

    recorder.handle_stdout_line('RUNCTL_METRIC {"loss": NaN, "lr": Infinity, "step": 4}')

    assert recorder.latest()[1] == {"step": 4}
    assert math.isnan(json.loads((tmp_path / "metrics.jsonl").read_text())["loss"])


def test_an_output_metrics_file_is_ingested_line_by_line(tmp_path):
    recorder = MetricsRecorder(tmp_path / "agent" / "metrics.jsonl")
    written = tmp_path / "output-metrics.jsonl"
    written.write_text('{"step": 5, "val_loss": 0.2}\n\nnot json\n[1]\n{"step": 6}\n')

    count = recorder.ingest_file(written)

    assert count == 2
    assert recorder.latest()[1] == {"step": 6, "val_loss": 0.2}


def test_a_missing_output_metrics_file_is_nothing_to_ingest(tmp_path):
    recorder = MetricsRecorder(tmp_path / "metrics.jsonl")

    assert recorder.ingest_file(tmp_path / "absent.jsonl") == 0

"""The metrics summary: last, min, max, count (and the step of the last value) per metric."""

from __future__ import annotations

import json

from lambdas.logic.metrics_summary import (
    MAX_METRICS,
    MAX_SUMMARY_JSON_BYTES,
    MetricsSummariser,
    parse_metric_line,
)
from lambdas.models.bounds import json_size
from lambdas.models.run_record import MetricSummary, RunRecord


def summarise(*lines: str) -> dict[str, MetricSummary]:
    summariser = MetricsSummariser()
    summariser.add_lines(lines)
    return summariser.summary()


def line(**values: object) -> str:
    return json.dumps(values)


def test_each_metric_gets_last_min_max_count_and_the_step_of_its_last_value():
    summary = summarise(
        line(step=10, loss=0.9, accuracy=0.5),
        line(step=20, loss=0.3),
        line(step=30, loss=0.4, accuracy=0.8),
    )

    assert summary["loss"] == MetricSummary(last=0.4, min=0.3, max=0.9, count=3, last_step=30)
    assert summary["accuracy"] == MetricSummary(last=0.8, min=0.5, max=0.8, count=2, last_step=30)
    assert summary["step"] == MetricSummary(last=30, min=10, max=30, count=3, last_step=30)


def test_metric_logged_without_a_step_has_no_last_step():
    summary = summarise(line(step=1, loss=0.5), line(loss=0.25))

    assert summary["loss"].last_step is None
    assert summary["loss"].last == 0.25


def test_bad_lines_are_skipped_and_counted():
    summariser = MetricsSummariser()

    bad = summariser.add_lines(
        [
            line(step=1, loss=0.5),
            '{"step": 2, "loss": 0.',  # torn: the instance died mid-write
            "[1, 2, 3]",  # JSON, but not an object
            "not json at all",
            "",  # blank lines are not bad, just empty
            b"\xff\xfe",  # not UTF-8
            line(step=3, loss=0.25),
        ]
    )

    assert bad == 4
    assert summariser.summary()["loss"] == MetricSummary(
        last=0.25, min=0.25, max=0.5, count=2, last_step=3
    )


def test_only_finite_numbers_count_not_bools_strings_nan_or_infinity():
    summary = summarise(
        '{"step": 1, "loss": NaN, "grad": Infinity, "ok": true, "phase": "warmup", "lr": 0.1}',
        '{"step": 2, "loss": 0.5, "grad": -Infinity, "lr": null, "nested": {"a": 1}}',
    )

    assert set(summary) == {"step", "loss", "lr"}
    assert summary["loss"] == MetricSummary(last=0.5, min=0.5, max=0.5, count=1, last_step=2)
    assert summary["lr"].count == 1


def test_resumed_attempt_repeats_steps_and_its_values_are_the_last_ones():
    # Given attempt 1 logged to step 30 and attempt 2 resumed from the step-20 checkpoint
    first_attempt = [line(step=10, loss=0.8), line(step=20, loss=0.6), line(step=30, loss=0.5)]
    second_attempt = [line(step=20, loss=0.61), line(step=30, loss=0.45), line(step=40, loss=0.4)]

    summary = summarise(*first_attempt, *second_attempt)

    # Then every logged value counts, and last is the newest attempt's
    assert summary["loss"] == MetricSummary(last=0.4, min=0.4, max=0.8, count=6, last_step=40)


def test_numbers_dynamodb_cannot_hold_are_left_out_and_long_ints_become_floats():
    summary = summarise(line(loss=1e200, tiny=1e-200, zero=0, big=10**40, huge=10**400))

    assert set(summary) == {"zero", "big"}
    assert summary["big"].last == float(10**40)
    assert isinstance(summary["big"].last, float)


def test_metric_names_beyond_the_cap_or_too_long_are_skipped_and_reported():
    summariser = MetricsSummariser(max_metrics=2)

    summariser.add_lines([line(a=1, b=2, c=3), json.dumps({"x" * 300: 1})])
    summariser.add_lines([line(a=4, c=5)])

    summary = summariser.summary()
    assert set(summary) == {"a", "b"}
    assert summary["a"].last == 4
    assert summariser.skipped_names == {"c", "x" * 255}


def test_given_names_too_long_to_fit_together_then_the_first_that_fit_are_kept_and_reported():
    # Given as many metrics as are kept, each with a 255-character name of 4-byte characters
    # (~1 KB of UTF-8 each: all of them would take ~280 KB of the run item)
    names = [f"{index:03d}" + "😀" * 252 for index in range(MAX_METRICS)]
    summariser = MetricsSummariser()
    summariser.add_lines([json.dumps(dict.fromkeys(names, -1.2345678901234567e-100))])

    # When summarised
    summary = summariser.summary()

    # Then the first names that fit the cap are kept, whole, and the others reported
    dumped = {name: metric.model_dump(mode="json") for name, metric in summary.items()}
    assert MAX_SUMMARY_JSON_BYTES - 3200 < json_size(dumped) <= MAX_SUMMARY_JSON_BYTES
    assert list(summary) == names[: len(summary)]
    assert summariser.skipped_names == set(names[len(summary) :])


def test_parse_metric_line_reads_objects_only():
    assert parse_metric_line('{"loss": 0.5}') == {"loss": 0.5}
    assert parse_metric_line(b'{"loss": 0.5}\n') == {"loss": 0.5}
    assert parse_metric_line('"loss"') is None
    assert parse_metric_line("") is None


def test_summary_survives_a_round_trip_through_the_record():
    summary = summarise(line(step=1, loss=0.5), line(step=2, loss=0.25))
    stored = {name: item.model_dump(mode="json") for name, item in summary.items()}

    record = RunRecord.model_validate(
        {
            "run_id": "run-1",
            "status": "SUCCEEDED",
            "execution_arn": "arn",
            "spec": {},
            "created_at": "2026-11-23T12:00:00+00:00",
            "updated_at": "2026-11-23T12:00:00+00:00",
            "metrics_summary": stored,
        }
    )

    assert record.metrics_summary == summary
    assert record.metrics_summary["step"].last == 2
    assert isinstance(record.metrics_summary["step"].last, int)

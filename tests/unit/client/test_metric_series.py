"""Metric curves merged over attempts: a resumed attempt's points replace the earlier ones."""

from __future__ import annotations

from runctl.client.metrics import merge_attempts, parse_metric_lines


def test_a_resumed_attempt_replaces_the_points_it_repeats():
    # Given attempt 1 reached step 30 and attempt 2 resumed from its step-20 checkpoint
    attempt_1 = [{"step": s, "loss": 1.0 / s} for s in (10, 20, 30)]
    attempt_2 = [{"step": s, "loss": 0.5 / s} for s in (30, 40)]

    series = merge_attempts("run-1", [attempt_1, attempt_2])

    # Then step 30 is attempt 2's, and the curve is in step order without duplicates
    assert series.curves["loss"] == [(10.0, 0.1), (20.0, 0.05), (30.0, 0.5 / 30), (40.0, 0.5 / 40)]
    assert series.last("loss") == 0.5 / 40


def test_rows_without_a_step_are_placed_in_order():
    series = merge_attempts("run-1", [[{"acc": 0.1}, {"acc": 0.2}], [{"acc": 0.3}]])
    assert series.curves["acc"] == [(1.0, 0.1), (2.0, 0.2), (3.0, 0.3)]


def test_only_finite_numbers_become_points():
    rows = [{"step": 1, "loss": 0.5, "phase": "warmup", "ok": True, "nan": float("nan")}]
    assert merge_attempts("run-1", [rows]).names == ["loss"]


def test_torn_and_foreign_lines_are_skipped():
    text = '{"step": 1, "loss": 2}\n\nnot json\n[1, 2]\n{"step": 2, "loss": 1}\n{"step": 3, "lo'
    assert parse_metric_lines(text) == [{"step": 1, "loss": 2}, {"step": 2, "loss": 1}]

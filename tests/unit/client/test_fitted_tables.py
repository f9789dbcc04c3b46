"""The runs and sweeps lists keep one line per row on a narrow terminal, ids whole; low-priority
columns give way in a defined order; a wide terminal shows everything."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from lambdas.models.run_record import AttemptCost, PriceSource, RunCost, RunRecord, RunStatus
from lambdas.models.sweep_summary import (
    SweepCounts,
    SweepRunResult,
    SweepRunStatus,
    SweepSummary,
    SweepVerdict,
)
from runctl.fitted_table import FitColumn, fit_widths
from runctl.render import runs_table
from runctl.render_sweeps import sweep_summaries_table, sweep_summary_table, sweeps_table

START = datetime(2026, 11, 23, 12, 27, tzinfo=UTC)
HEADERS = ["RUN", "EXPERIMENT", "STATUS", "STARTED", "DURATION", "COST", "METRICS"]
SWEEP_ID = "sweep-20261123-122712-ab12cd"


def _run(number: int, status: RunStatus, experiment: str | None, **fields) -> RunRecord:
    created = START + timedelta(minutes=number)
    return RunRecord(
        run_id=f"run-20261123-1227{number:02d}-{number:06x}",
        status=status,
        execution_arn=f"arn:aws:states:us-east-1:1:execution:TrainRun:run-{number}",
        spec={},
        experiment=experiment,
        created_at=created.isoformat(),
        updated_at=created.isoformat(),
        ended_at=(created + timedelta(seconds=4320)).isoformat(),
        duration_seconds=4320.0,
        **fields,
    )


def _cost(usd: float, source: PriceSource = "static-spot-estimate") -> RunCost:
    return RunCost(
        total_usd=usd,
        attempts=[AttemptCost(number=1, seconds=4320, usd=usd, price_source=source)],
    )


RUNS = [
    _run(
        1,
        RunStatus.SUCCEEDED,
        "resnet50-imagenet-learning-rate-warmup-ablation",
        final_metrics={"step": 90000, "loss": 0.0314159, "val_accuracy": 0.76123, "lr": 1e-05},
        cost=_cost(12.84),
    ),
    _run(
        2,
        RunStatus.FAILED,
        "bert-base-finetune-squad-v2",
        final_metrics={"step": 20, "loss": 2.5},
        cost=_cost(0.31, "spot-price-history"),
    ),
    _run(3, RunStatus.CHECKPOINTING, None, latest_metrics={"step": 7, "loss": 9.87654}),
]


def _rendered(table, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, record=True, force_terminal=False)
    console.print(table)
    return console.export_text().rstrip("\n").splitlines()


def _run_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("run-")]


@pytest.mark.parametrize("width", [60, 72, 80, 100, 120])
def test_given_a_narrow_terminal_when_runs_are_listed_then_one_whole_line_per_run(width):
    lines = _rendered(runs_table(RUNS), width)

    # Then a header and exactly one line per run, none wider than the terminal
    assert len(lines) == 1 + len(RUNS)
    assert all(len(line.rstrip()) <= width for line in lines)
    # ...each run's line starts with its whole id, and says its status whole
    for line, run in zip(_run_lines(lines), RUNS, strict=True):
        assert line.split()[0] == run.run_id
        assert run.status.value in line.split()


def test_given_80_columns_when_runs_are_listed_then_metrics_give_way_first():
    header = _rendered(runs_table(RUNS), 80)[0].split()

    assert "METRICS" not in header
    assert header[:1] == ["RUN"] and {"STATUS", "STARTED", "DURATION"} <= set(header)


def test_given_60_columns_when_runs_are_listed_then_ids_status_and_start_remain():
    header = _rendered(runs_table(RUNS), 60)[0].split()
    without_checkpointing = _rendered(runs_table(RUNS[:2]), 60)[0].split()

    # (CHECKPOINTING is 4 characters wider than SUCCEEDED: the duration has no room left)
    assert header == ["RUN", "STATUS", "STARTED"]
    assert without_checkpointing == ["RUN", "STATUS", "STARTED", "DURATION"]


def test_given_a_wide_terminal_when_runs_are_listed_then_every_column_whole():
    lines = _rendered(runs_table(RUNS), 200)

    assert lines[0].split() == HEADERS
    first = _run_lines(lines)[0]
    assert "resnet50-imagenet-learning-rate-warmup-ablation" in first
    assert "step=90000  loss=0.0314159  val_accuracy=0.76123" in first
    assert "$12.84 (est.)" in first
    assert "…" not in "\n".join(lines)


def test_given_columns_too_wide_when_fitted_then_dropped_in_rank_order_then_cut_columns_share():
    columns = [
        FitColumn("id", ["x" * 20]),
        FitColumn("a", ["a" * 30], drop_rank=2, min_width=5),
        FitColumn("b", ["b" * 10], drop_rank=3),
        FitColumn("c", ["c" * 30], drop_rank=1, min_width=5),
    ]

    # Then: everything whole when it fits, cut columns share what is left, then c, then a go
    assert fit_widths(columns, 200, gap=2, edge=0) == [20, 30, 10, 30]
    assert fit_widths(columns, 70, gap=2, edge=0) == [20, 17, 10, 17]
    assert fit_widths(columns, 44, gap=2, edge=0) == [20, 10, 10, None]
    assert fit_widths(columns, 33, gap=2, edge=0) == [20, None, 10, None]
    # ...and a column that is never dropped stays whole even when nothing fits
    assert fit_widths(columns, 10, gap=2, edge=0) == [20, None, None, None]


def _summary() -> SweepSummary:
    runs = [
        SweepRunResult(
            index=index,
            run_id=f"{SWEEP_ID}-r{index:03d}",
            swept={"learning_rate": 0.001 * (index + 1), "batch_size": 64, "optimizer": "adamw"},
            status=SweepRunStatus.FAILED if index == 2 else SweepRunStatus.SUCCEEDED,
            objective_value=None if index == 2 else 0.1 * (index + 1),
            cost_usd=0.5,
            duration_seconds=75,
            error="(script-failed, exit code 3): loss is NaN at step 7" if index == 2 else None,
        )
        for index in range(3)
    ]
    return SweepSummary(
        sweep_id=SWEEP_ID,
        execution_arn=f"arn:aws:states:us-east-1:1:execution:Sweep:{SWEEP_ID}",
        verdict=SweepVerdict.SUCCEEDED,
        message="2 of 3 runs succeeded, 1 failed",
        objective="loss:min",
        best=runs[0],
        counts=SweepCounts(total=3, succeeded=2, failed=1),
        tolerated_failure_percentage=50,
        stop_on_failure=False,
        total_cost_usd=1.5,
        runs=runs,
        written_at=START.isoformat(),
    )


@pytest.mark.parametrize("width", [60, 80, 120])
def test_given_a_narrow_terminal_when_a_sweep_summary_is_shown_then_one_line_per_run(width):
    lines = _rendered(sweep_summary_table(_summary()), width)

    rows = [line for line in lines if SWEEP_ID + "-r" in line and line.startswith("│")]
    assert len(rows) == 3
    assert all(len(line) <= width for line in lines)
    for row, index in zip(rows, range(3), strict=True):
        assert re.search(rf"\b{SWEEP_ID}-r00{index}\b", row)
    assert "FAILED" in rows[2]


def test_given_a_wide_terminal_when_a_sweep_summary_is_shown_then_every_column():
    lines = _rendered(sweep_summary_table(_summary()), 200)

    header = next(line for line in lines if "run" in line and "status" in line)
    for column in ("learning_rate", "batch_size", "optimizer", "loss:min", "cost", "time"):
        assert column in header
    assert any("(script-failed, exit code 3): loss is NaN at step 7" in line for line in lines)


@pytest.mark.parametrize("width", [60, 80])
def test_given_a_narrow_terminal_when_sweeps_are_listed_then_one_line_per_sweep(width):
    executions = [{"name": SWEEP_ID, "status": "SUCCEEDED", "startDate": START, "stopDate": START}]

    for table in (sweeps_table(executions), sweep_summaries_table([_summary()])):
        lines = _rendered(table, width)
        rows = [line for line in lines if SWEEP_ID in line]
        assert len(rows) == 1
        assert re.search(rf"\b{SWEEP_ID}\b", rows[0])
        assert all(len(line) <= width for line in lines)

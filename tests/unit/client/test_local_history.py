"""Local runs are kept on disk, so `runctl local runs ...` can read them after the emulator ends."""

from __future__ import annotations

import pytest

from lambdas.models.run_record import RunRecord, RunStatus
from lambdas.models.sweep_summary import SweepCounts, SweepSummary, SweepVerdict
from runctl.errors import RunctlError
from runctl.local.history import LocalHistory


def _record(run_id: str, created_at: str, experiment: str, status: str = "SUCCEEDED"):
    return RunRecord(
        run_id=run_id,
        status=RunStatus(status),
        execution_arn=f"arn:aws:states:us-east-1:1:execution:sm:{run_id}",
        spec={"hyperparameters": {"lr": 0.1}},
        experiment=experiment,
        created_at=created_at,
        updated_at=created_at,
        attempt=2,
    )


def test_a_saved_run_reads_back_with_its_metrics_per_attempt(tmp_path):
    history = LocalHistory(tmp_path)
    record = _record("run-1", "2026-11-23T10:00:00+00:00", "demo")
    rows = [[{"step": 1, "loss": 2.0}], [{"step": 1, "loss": 1.5}, {"step": 2, "loss": 1.0}]]

    history.save(record, rows)

    assert history.get("run-1") == record
    assert history.metric_rows(record) == rows


def test_runs_are_listed_newest_first_and_filtered(tmp_path):
    history = LocalHistory(tmp_path)
    history.save(_record("run-old", "2026-11-23T10:00:00+00:00", "demo"), [])
    history.save(_record("run-new", "2026-11-23T11:00:00+00:00", "demo"), [])
    history.save(_record("run-x", "2026-11-23T12:00:00+00:00", "other", status="FAILED"), [])

    assert [r.run_id for r in history.list_runs()] == ["run-x", "run-new", "run-old"]
    assert [r.run_id for r in history.list_runs(experiment="demo")] == ["run-new", "run-old"]
    assert [r.run_id for r in history.list_runs(status=RunStatus.FAILED)] == ["run-x"]


def test_an_unknown_or_path_like_run_id_is_not_found(tmp_path):
    history = LocalHistory(tmp_path)
    (tmp_path / "secret.json").write_text("{}")

    assert history.get("run-missing") is None
    assert history.get("../secret") is None
    assert history.list_runs() == []


def test_a_corrupt_record_is_named_with_what_to_do(tmp_path):
    history = LocalHistory(tmp_path)
    history.save(_record("run-1", "2026-11-23T10:00:00+00:00", "demo"), [])
    (tmp_path / "history" / "run-1" / "record.json").write_text('{"run_id": "run-1"}')

    with pytest.raises(RunctlError, match="delete its folder"):
        history.get("run-1")


def _summary(sweep_id: str, written_at: str) -> SweepSummary:
    return SweepSummary(
        sweep_id=sweep_id,
        execution_arn="arn",
        verdict=SweepVerdict.SUCCEEDED,
        message="1 of 1 runs succeeded",
        counts=SweepCounts(total=1, succeeded=1),
        tolerated_failure_percentage=0,
        stop_on_failure=False,
        runs=[],
        written_at=written_at,
    )


def test_sweep_summaries_read_back_newest_first_and_path_like_ids_are_not_found(tmp_path):
    history = LocalHistory(tmp_path)
    older = _summary("sweep-a", "2026-11-23T10:00:00+00:00")
    newer = _summary("sweep-b", "2026-11-23T11:00:00+00:00")
    history.save_sweep(older)
    history.save_sweep(newer)

    assert history.sweep("sweep-a") == older
    assert history.list_sweeps() == [newer, older]
    assert history.sweep("../sweep-a") is None
    with pytest.raises(ValueError, match="not a sweep id"):
        history.save_sweep(_summary("../x", "2026-11-23T12:00:00+00:00"))


def test_a_corrupt_sweep_summary_is_named_with_what_to_do(tmp_path):
    history = LocalHistory(tmp_path)
    history.save_sweep(_summary("sweep-a", "2026-11-23T10:00:00+00:00"))
    (tmp_path / "history" / ".sweeps" / "sweep-a.json").write_text('{"sweep_id": "sweep-a"}')

    for read in (lambda: history.sweep("sweep-a"), history.list_sweeps):
        with pytest.raises(RunctlError, match=r"sweep-a\.json is not a sweep summary .*delete it"):
            read()

"""RecordRun handler: one PENDING record per run id, owned by one execution."""

from __future__ import annotations

import pytest

from lambdas.errors import RunAlreadyExists
from lambdas.handlers import record_run


def test_given_new_run_when_recorded_then_pending_item_with_spec_exists(
    invoke, lambda_environment, clock, run_context, read_record
):
    result = invoke(record_run, {"run": run_context})

    assert result == {"run_id": "run-1", "status": "PENDING"}
    item = read_record("run-1")
    assert item["status"] == "PENDING"
    assert item["execution_arn"] == run_context["execution_arn"]
    assert item["attempt"] == 1
    assert item["attempts"] == {}
    assert item["created_at"] == item["updated_at"] == clock().isoformat()
    assert item["spec"]["entry_point"] == "train.py"
    assert item["spec"]["instance_types"] == ["g5.xlarge", "g4dn.xlarge"]


def test_given_recorded_run_when_same_execution_records_again_then_nothing_changes(
    invoke, lambda_environment, clock, run_context, read_record
):
    invoke(record_run, {"run": run_context})
    before = read_record("run-1")
    clock.advance(30)

    result = invoke(record_run, {"run": run_context})

    assert result == {"run_id": "run-1", "status": "PENDING"}
    assert read_record("run-1") == before


def test_given_recorded_run_when_other_execution_uses_same_id_then_run_already_exists(
    invoke, lambda_environment, clock, make_run_context, read_record
):
    mine = make_run_context(run_id="run-1")
    theirs = make_run_context(run_id="run-1", execution="other-execution")
    invoke(record_run, {"run": mine})

    with pytest.raises(RunAlreadyExists, match="run-1"):
        invoke(record_run, {"run": theirs})

    assert read_record("run-1")["execution_arn"] == mine["execution_arn"]

"""FinalizeRun records what the run cost and a summary of its metrics, and never fails for them."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from lambdas.dal.runs_table import RunsTable
from lambdas.handlers import finalize_run
from lambdas.integrations.metrics_files import MetricsFiles, metrics_key
from lambdas.logic.static_prices import ON_DEMAND_USD_PER_HOUR, SPOT_ESTIMATE_FRACTION

SUCCEEDED = {"outcome": "succeeded", "exit_code": 0, "final_metrics": {"loss": 0.2}}


@pytest.fixture
def upload_metrics(aws, bucket):
    def put(run_id: str, attempt: int, *metrics: dict) -> None:
        body = "".join(json.dumps(metric) + "\n" for metric in metrics)
        aws.s3.put_object(Bucket=bucket, Key=metrics_key(run_id, attempt), Body=body)

    return put


def spot_price(aws, instance: dict) -> float:
    """What moto's spot price history says for the instance's type and zone."""
    history = aws.ec2.describe_spot_price_history(
        InstanceTypes=[instance["instance_type"]],
        Filters=[{"Name": "availability-zone", "Values": [instance["availability_zone"]]}],
    )["SpotPriceHistory"]
    return float(history[0]["SpotPrice"])


def test_finished_run_records_its_cost_and_metrics_summary(
    finalize, recorded_run, launched, clock, upload_metrics, read_record, aws
):
    # Given a spot attempt that logged three metric lines and ran an hour
    assert launched["market"] == "spot"
    upload_metrics(
        "run-1", 1, {"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.3}, {"step": 3, "loss": 0.4}
    )
    clock.advance(3600)

    # When FinalizeRun records the end
    finalize({"run": recorded_run, "instance": launched, "result": SUCCEEDED})

    # Then the record carries the cost from the spot price history...
    item = read_record("run-1")
    price = spot_price(aws, launched)
    (attempt,) = item["cost"]["attempts"]
    assert attempt["number"] == 1
    assert attempt["instance_type"] == launched["instance_type"]
    assert attempt["market"] == "spot"
    assert attempt["seconds"] == 3600
    assert attempt["price_source"] == "spot-price-history"
    assert attempt["usd_per_hour"] == pytest.approx(price)
    assert attempt["usd"] == pytest.approx(price)
    assert item["cost"]["total_usd"] == pytest.approx(price)
    assert item["cost"]["currency"] == "USD"
    # ...and the summary of its metrics
    assert item["metrics_summary"]["loss"] == {
        "last": 0.4,
        "min": 0.3,
        "max": 0.9,
        "count": 3,
        "last_step": 3,
    }
    assert item["metrics_summary"]["step"]["last"] == 3


def test_resumed_run_is_priced_and_summarised_over_both_attempts(
    finalize, recorded_run, launched, clock, interrupt_and_relaunch, upload_metrics, read_record
):
    # Given attempt 1 ran 30 minutes and was interrupted; attempt 2 ran an hour from step 2
    clock.advance(1800)
    plan, second = interrupt_and_relaunch(recorded_run, launched)
    upload_metrics("run-1", 1, {"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.7})
    upload_metrics("run-1", 2, {"step": 2, "loss": 0.71}, {"step": 3, "loss": 0.5})
    clock.advance(3600)

    finalize({"run": plan["run"], "instance": second, "result": SUCCEEDED})

    item = read_record("run-1")
    attempts = item["cost"]["attempts"]
    assert [(cost["number"], cost["seconds"]) for cost in attempts] == [(1, 1800), (2, 3600)]
    assert item["cost"]["total_usd"] == pytest.approx(sum(cost["usd"] for cost in attempts))
    assert item["metrics_summary"]["loss"] == {
        "last": 0.5,
        "min": 0.5,
        "max": 0.9,
        "count": 4,
        "last_step": 3,
    }


def test_run_that_never_launched_costs_nothing(finalize, recorded_run, read_record):
    finalize({"run": recorded_run, "error": {"Error": "CapacityUnavailable", "Cause": None}})

    item = read_record("run-1")
    assert item["status"] == "FAILED"
    assert item["cost"] == {
        "total_usd": 0,
        "currency": "USD",
        "attempts": [],
        "static_prices_as_of": None,
    }
    assert item["metrics_summary"] == {}


def test_denied_spot_price_history_records_the_labelled_static_estimate(
    finalize, recorded_run, launched, clock, read_record, monkeypatch
):
    class DeniedEc2:
        def get_paginator(self, operation: str):
            raise ClientError(
                {"Error": {"Code": "UnauthorizedOperation", "Message": "denied"}}, operation
            )

    monkeypatch.setattr(finalize_run, "aws_client", lambda service: DeniedEc2())
    clock.advance(7200)

    output = finalize({"run": recorded_run, "instance": launched, "result": SUCCEEDED})

    assert output["status"] == "SUCCEEDED"
    (attempt,) = read_record("run-1")["cost"]["attempts"]
    estimate = ON_DEMAND_USD_PER_HOUR[launched["instance_type"]] * SPOT_ESTIMATE_FRACTION
    assert attempt["price_source"] == "static-spot-estimate"
    assert attempt["usd"] == pytest.approx(estimate * 2)


def test_pricing_that_fails_outright_still_ends_the_run_with_its_metrics_summary(
    finalize, recorded_run, launched, upload_metrics, read_record, monkeypatch
):
    class BrokenPrices:
        def __init__(self, ec2: object) -> None:
            pass

        def hourly_price(self, usage):
            raise RuntimeError("pricing bug")

    monkeypatch.setattr(finalize_run, "SpotPriceHistory", BrokenPrices)
    upload_metrics("run-1", 1, {"step": 1, "loss": 0.5})

    output = finalize({"run": recorded_run, "instance": launched, "result": SUCCEEDED})

    assert output["status"] == "SUCCEEDED"
    item = read_record("run-1")
    assert item["status"] == "SUCCEEDED"
    assert "cost" not in item
    assert item["metrics_summary"]["loss"]["last"] == 0.5


def test_unreadable_metrics_still_end_the_run_with_its_cost(
    finalize, recorded_run, launched, read_record, monkeypatch
):
    def denied(self, run_id, attempts, max_bytes=0):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "HeadObject")

    monkeypatch.setattr(MetricsFiles, "lines", denied)

    output = finalize({"run": recorded_run, "instance": launched, "result": SUCCEEDED})

    assert output["status"] == "SUCCEEDED"
    item = read_record("run-1")
    assert item["status"] == "SUCCEEDED"
    assert item["metrics_summary"] == {}  # as RecordRun created it
    assert item["cost"]["attempts"][0]["number"] == 1


def test_item_too_large_for_the_summary_ends_the_run_without_it(
    finalize, recorded_run, launched, upload_metrics, read_record, monkeypatch
):
    # moto applies a too-large UpdateItem in part (AWS applies none of it), so DynamoDB's answer
    # is given here: any write that carries the summary is refused as the item would pass 400 KB.
    real_update = RunsTable.update_live

    def refuse_summary(self, run_id, attempt, now, fields, *args, **kwargs):
        if "cost" in fields or "metrics_summary" in fields:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded"}},
                "UpdateItem",
            )
        return real_update(self, run_id, attempt, now, fields, *args, **kwargs)

    monkeypatch.setattr(RunsTable, "update_live", refuse_summary)
    upload_metrics("run-1", 1, {"step": 1, "loss": 0.5})

    output = finalize({"run": recorded_run, "instance": launched, "result": SUCCEEDED})

    assert output["status"] == "SUCCEEDED"
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("SUCCEEDED", "completed")
    assert item["attempts"]["1"]["end_reason"] == "completed"
    assert "cost" not in item
    assert item["metrics_summary"] == {}


def test_other_write_errors_still_fail_finalize_so_it_is_retried(
    finalize, recorded_run, launched, monkeypatch
):
    def throttled(self, *args, **kwargs):
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
            "UpdateItem",
        )

    monkeypatch.setattr(RunsTable, "update_live", throttled)

    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        finalize({"run": recorded_run, "instance": launched, "result": SUCCEEDED})


def test_retried_finalize_keeps_the_first_cost(
    finalize, recorded_run, launched, clock, read_record
):
    event = {"run": recorded_run, "instance": launched, "result": SUCCEEDED}
    clock.advance(600)
    finalize(event)
    first = read_record("run-1")["cost"]
    clock.advance(3600)

    finalize(event)

    assert read_record("run-1")["cost"] == first
    assert first["attempts"][0]["seconds"] == 600

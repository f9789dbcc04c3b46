"""ReapOrphans against moto's EC2 and DynamoDB: orphan instances terminated, live attempts
spared, runs whose execution ended recorded CANCELLED, runs over their max runtime stopped and
recorded FAILED. Step Functions is a fake (the executions exist nowhere), and the time is passed
to the logic: moto stamps every instance's LaunchTime with the real clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdas import wiring
from lambdas.constants import TAG_MANAGED
from lambdas.dal.runs_table import RunsTable
from lambdas.handlers import reap_orphans
from lambdas.integrations.ec2_fleet import Ec2Fleet, run_tags
from lambdas.integrations.metrics_files import MetricsFiles, metrics_key
from lambdas.logic.pricing import static_price_lookup
from lambdas.logic.reaping import ReapIncomplete, ReapSummary, reap
from lambdas.logic.static_prices import ON_DEMAND_USD_PER_HOUR, SPOT_ESTIMATE_FRACTION
from lambdas.models.steps import RunContext

GRACE = 600
MARGIN = 600
HOUR = 3600


class FakeStepFunctions:
    """describe_execution / stop_execution over `statuses` (execution ARN -> status); an ARN it
    does not know raises ExecutionDoesNotExist. `on_describe` / `on_stop` run before answering,
    to let a test move a run on at that moment."""

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}
        self.stopped: list[dict[str, Any]] = []
        self.described: list[str] = []
        self.on_describe: Callable[[str], None] = lambda arn: None
        self.on_stop: Callable[[str], None] = lambda arn: None

    def _known(self, arn: str, operation: str) -> None:
        if arn not in self.statuses:
            error = {"Error": {"Code": "ExecutionDoesNotExist", "Message": arn}}
            raise ClientError(error, operation)

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        self.on_describe(executionArn)
        self.described.append(executionArn)
        self._known(executionArn, "DescribeExecution")
        return {"executionArn": executionArn, "status": self.statuses[executionArn]}

    def stop_execution(self, executionArn: str, error: str, cause: str) -> dict[str, Any]:
        self.on_stop(executionArn)
        self._known(executionArn, "StopExecution")
        self.stopped.append({"executionArn": executionArn, "error": error, "cause": cause})
        self.statuses[executionArn] = "ABORTED"
        return {}


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> FakeStepFunctions:
    fake = FakeStepFunctions()
    monkeypatch.setattr(wiring, "sfn", lambda: fake)
    return fake


@pytest.fixture
def table(aws, runs_table: str) -> RunsTable:
    return RunsTable(runs_table, aws.dynamodb)


@pytest.fixture
def launch(aws, image_id: str) -> Callable[..., tuple[str, datetime]]:
    """Run one instance tagged as LaunchInstance tags it: (instance id, its LaunchTime)."""

    def run(
        run_id: str = "run-1", attempt: int = 1, tags: list | None = None
    ) -> tuple[str, datetime]:
        response = aws.ec2.run_instances(
            ImageId=image_id,
            InstanceType="g5.xlarge",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": run_tags(run_id, attempt) if tags is None else tags,
                }
            ],
        )
        instance = response["Instances"][0]
        return instance["InstanceId"], instance["LaunchTime"]

    return run


@pytest.fixture
def now(aws, image_id: str) -> datetime:
    """Past the grace of every instance the test launches (moto launches them 'now')."""
    reservations = aws.ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)
    instance = reservations["Instances"][0]
    aws.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    launched: datetime = instance["LaunchTime"]
    return launched + timedelta(seconds=GRACE + 60)


@pytest.fixture
def put_run(
    table: RunsTable, make_run_context, sfn: FakeStepFunctions, set_record_fields, now: datetime
) -> Callable[..., str]:
    """A run record as the state machine leaves it, its execution RUNNING in the fake unless
    told otherwise; created an hour before `now` with a one-day limit unless told otherwise."""

    def put(
        run_id: str = "run-1",
        status: str = "RUNNING",
        attempt: int = 1,
        execution: str | None = "RUNNING",
        age_seconds: float = HOUR,
        max_runtime_seconds: int = 24 * HOUR,
    ) -> str:
        run = RunContext.model_validate(
            make_run_context(run_id, limits={"max_runtime_seconds": max_runtime_seconds})
        )
        table.create(run, (now - timedelta(seconds=age_seconds)).isoformat())
        attempts = {
            str(number): {"number": number, "status": "RUNNING"} for number in range(1, attempt + 1)
        }
        set_record_fields(run_id, status=status, attempt=attempt, attempts=attempts)
        if execution is not None:
            sfn.statuses[run.execution_arn] = execution
        return run.execution_arn

    return put


@pytest.fixture
def reaper(
    aws, table: RunsTable, sfn: FakeStepFunctions, now: datetime, bucket: str
) -> Callable[..., ReapSummary]:
    """One reaper pass at `now` (plus `later` seconds), pricing with the static table."""

    def run(later: float = 0) -> ReapSummary:
        fleet = Ec2Fleet(aws.ec2, aws.ssm)
        return reap(
            fleet,
            table,
            sfn,
            now + timedelta(seconds=later),
            GRACE,
            MARGIN,
            metrics_files=MetricsFiles(aws.s3, bucket),
            prices=static_price_lookup(),
        )

    return run


def _state(aws, instance_id: str) -> str:
    reservations = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservations[0]["Instances"][0]["State"]["Name"])


def _gone(aws, instance_id: str) -> bool:
    return _state(aws, instance_id) in {"shutting-down", "terminated"}


def _scheduled_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": "0d5e9ad3-7a3a-4bd5-9d55-1a1c3f6f0a11",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-23T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/runctl-ReapOrphansSchedule"],
        "detail": {},
    }


# ---------------------------------------------------------------- orphans


def test_given_instance_of_a_finished_run_when_handler_runs_then_terminated_and_counted(
    invoke, lambda_environment, clock, put_run, launch, sfn, now, aws, capsys
):
    put_run(status="SUCCEEDED", execution="SUCCEEDED")
    instance_id, _ = launch()
    clock.now = now

    summary = invoke(reap_orphans, _scheduled_event())

    assert summary == {"terminated": [instance_id], "cancelled_runs": [], "limit_exceeded_runs": []}
    assert _gone(aws, instance_id)
    assert sfn.described == []  # a final run's execution is never looked up
    emitted = capsys.readouterr().out
    assert '"ReapedInstances"' in emitted and '"ReapedLimitExceededRuns"' in emitted


def test_given_instance_of_a_run_never_recorded_when_reaped_then_terminated(reaper, launch, aws):
    instance_id, _ = launch("run-unknown")

    summary = reaper()

    assert summary.terminated == [instance_id]
    assert _gone(aws, instance_id)


def test_given_managed_instance_without_run_id_tag_when_reaped_then_terminated(reaper, launch, aws):
    instance_id, _ = launch(tags=[{"Key": TAG_MANAGED, "Value": "true"}])

    summary = reaper()

    assert summary.terminated == [instance_id]


def test_given_untagged_instance_when_reaped_then_never_touched(reaper, launch, aws):
    instance_id, _ = launch(tags=[{"Key": "Name", "Value": "someone-elses"}])

    summary = reaper()

    assert summary.terminated == []
    assert _state(aws, instance_id) == "running"


def test_given_young_instance_of_an_unrecorded_run_when_reaped_then_spared(
    reaper, launch, aws, now
):
    instance_id, launched = launch("run-just-launching")

    summary = reaper(later=(launched - now).total_seconds() + GRACE - 5)

    assert summary.terminated == []
    assert _state(aws, instance_id) == "running"


def test_given_handler_grace_from_env_when_instance_is_younger_then_spared(
    invoke, lambda_environment, monkeypatch, clock, launch, sfn, now, aws
):
    monkeypatch.setenv("REAPER_GRACE_SECONDS", str(2 * GRACE))
    instance_id, _ = launch("run-unknown")
    clock.now = now  # past the default grace, within twice it

    summary = invoke(reap_orphans, _scheduled_event())

    assert summary["terminated"] == []
    assert _state(aws, instance_id) == "running"


def test_given_current_and_previous_attempt_of_a_live_run_when_reaped_then_both_spared(
    reaper, put_run, launch, aws, sfn
):
    put_run(status="STAGING", attempt=3)
    previous, _ = launch(attempt=2)  # may still be checkpointing
    current, _ = launch(attempt=3)

    summary = reaper()

    assert summary.terminated == []
    assert summary.cancelled_runs == summary.limit_exceeded_runs == []
    assert _state(aws, previous) == _state(aws, current) == "running"
    assert sfn.stopped == []


def test_given_attempt_two_before_the_current_when_reaped_then_only_it_is_terminated(
    reaper, put_run, launch, aws
):
    put_run(status="RUNNING", attempt=3)
    oldest, _ = launch(attempt=1)
    previous, _ = launch(attempt=2)
    current, _ = launch(attempt=3)

    summary = reaper()

    assert summary.terminated == [oldest]
    assert _gone(aws, oldest)
    assert _state(aws, previous) == _state(aws, current) == "running"


def test_given_execution_stopped_by_hand_when_reaped_then_instances_terminated_and_run_cancelled(
    reaper, put_run, launch, aws, read_record, sfn, now
):
    put_run(status="RUNNING", attempt=2, execution="ABORTED")
    previous, _ = launch(attempt=1)
    current, _ = launch(attempt=2)

    summary = reaper()

    assert sorted(summary.terminated) == sorted([previous, current])
    assert summary.cancelled_runs == ["run-1"]
    assert _gone(aws, previous) and _gone(aws, current)
    item = read_record("run-1")
    assert item["status"] == "CANCELLED"
    assert item["end_reason"] == "cancelled"
    assert item["error"] == "execution ABORTED without finishing the run: reaped"
    assert item["ended_at"] == now.isoformat()
    assert item["attempts"]["2"]["end_reason"] == "cancelled"
    assert sfn.stopped == []


def test_given_run_the_scan_missed_when_its_execution_ended_then_its_instance_cancels_it(
    reaper, put_run, launch, aws, table, read_record, monkeypatch
):
    put_run(status="RUNNING", attempt=2, execution="TIMED_OUT")
    previous, _ = launch(attempt=1)
    current, _ = launch(attempt=2)
    monkeypatch.setattr(table, "live_runs", lambda: [])  # as if the scan had missed it
    writes: list[str] = []
    real_update = table.update_live

    def counted_update(run_id: str, *args: Any, **kwargs: Any) -> bool:
        writes.append(run_id)
        return real_update(run_id, *args, **kwargs)

    monkeypatch.setattr(table, "update_live", counted_update)

    summary = reaper()

    assert sorted(summary.terminated) == sorted([previous, current])
    assert summary.cancelled_runs == ["run-1"]
    assert writes == ["run-1"]  # one write for the run, not one per instance
    assert read_record("run-1")["error"] == "execution TIMED_OUT without finishing the run: reaped"


def test_given_live_run_whose_execution_ended_and_no_instance_when_reaped_then_cancelled(
    reaper, put_run, read_record
):
    put_run(status="PENDING", execution="FAILED")

    summary = reaper()

    assert summary.cancelled_runs == ["run-1"]
    item = read_record("run-1")
    assert item["status"] == "CANCELLED"
    assert item["error"] == "execution FAILED without finishing the run: reaped"


def test_given_live_run_whose_execution_step_functions_forgot_when_reaped_then_cancelled(
    reaper, put_run, launch, read_record
):
    put_run(status="RUNNING", execution=None)
    instance_id, _ = launch()

    summary = reaper()

    assert summary.terminated == [instance_id]
    assert read_record("run-1")["status"] == "CANCELLED"


# ---------------------------------------------------------------- limits


def test_given_run_over_its_max_runtime_when_reaped_then_stopped_terminated_and_failed(
    reaper, put_run, launch, aws, read_record, sfn, now
):
    arn = put_run(
        status="RUNNING", attempt=2, age_seconds=HOUR + MARGIN + 1, max_runtime_seconds=HOUR
    )
    previous, _ = launch(attempt=1)
    current, _ = launch(attempt=2)
    other_arn = put_run("run-2", status="RUNNING", age_seconds=HOUR)
    other, _ = launch("run-2")

    summary = reaper()

    assert summary.limit_exceeded_runs == ["run-1"]
    assert sorted(summary.terminated) == sorted([previous, current])
    assert _gone(aws, previous) and _gone(aws, current)
    assert _state(aws, other) == "running"
    assert [(item["executionArn"], item["error"]) for item in sfn.stopped] == [
        (arn, "Runctl.LimitExceeded")
    ]
    assert "max runtime of 3600 s" in sfn.stopped[0]["cause"]
    assert other_arn not in [item["executionArn"] for item in sfn.stopped]
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("FAILED", "limit-exceeded")
    assert item["attempts"]["2"]["end_reason"] == "limit-exceeded"
    assert item["duration_seconds"] == HOUR + MARGIN + 1


def test_given_run_over_its_limit_when_reaped_then_its_cost_and_metrics_are_recorded_too(
    reaper, put_run, set_record_fields, aws, bucket, read_record, now
):
    # Given a run over its limit whose one spot attempt started two hours ago and logged metrics
    put_run(age_seconds=2 * HOUR + MARGIN, max_runtime_seconds=HOUR)
    started = now - timedelta(seconds=2 * HOUR)
    attempt = {
        "number": 1,
        "status": "RUNNING",
        "instance_type": "g5.xlarge",
        "market": "spot",
        "started_at": started.isoformat(),
    }
    set_record_fields("run-1", attempts={"1": attempt})
    lines = [{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.4}]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    aws.s3.put_object(Bucket=bucket, Key=metrics_key("run-1", 1), Body=body)

    # When the reaper ends it
    reaper()

    # Then the record has what FinalizeRun would have written: the cost up to the end...
    item = read_record("run-1")
    assert item["end_reason"] == "limit-exceeded"
    (cost,) = item["cost"]["attempts"]
    assert cost["seconds"] == 2 * HOUR
    hourly = ON_DEMAND_USD_PER_HOUR["g5.xlarge"] * SPOT_ESTIMATE_FRACTION
    assert cost["usd"] == pytest.approx(2 * hourly)
    assert cost["price_source"] == "static-spot-estimate"
    # ...and the summary of its metrics
    assert item["metrics_summary"]["loss"]["last"] == 0.4
    assert item["metrics_summary"]["loss"]["count"] == 2


def test_given_run_just_within_its_limit_and_margin_when_reaped_then_left_running(
    reaper, put_run, launch, aws, sfn, read_record
):
    put_run(age_seconds=HOUR + MARGIN - 1, max_runtime_seconds=HOUR)
    instance_id, _ = launch()

    summary = reaper()

    assert summary == ReapSummary()
    assert sfn.stopped == []
    assert _state(aws, instance_id) == "running"
    assert read_record("run-1")["status"] == "RUNNING"


def test_given_run_over_its_limit_whose_execution_is_gone_when_reaped_then_still_ended(
    reaper, put_run, launch, aws, read_record
):
    put_run(age_seconds=2 * HOUR, max_runtime_seconds=60, execution=None)
    instance_id, _ = launch()

    summary = reaper()

    assert summary.limit_exceeded_runs == ["run-1"]
    assert _gone(aws, instance_id)
    assert read_record("run-1")["end_reason"] == "limit-exceeded"


def test_given_young_instance_of_a_run_over_its_limit_when_reaped_then_terminated_too(
    reaper, put_run, launch, aws, now
):
    put_run(age_seconds=2 * HOUR, max_runtime_seconds=60)
    instance_id, launched = launch()

    summary = reaper(later=(launched - now).total_seconds())

    assert summary.terminated == [instance_id]


# ---------------------------------------------------------------- exactly once


def test_given_a_reaped_account_when_reaped_again_then_nothing_more_is_done(
    reaper, put_run, launch, sfn, read_record
):
    put_run("run-done", status="SUCCEEDED", execution="SUCCEEDED")
    launch("run-done")
    put_run("run-stopped", execution="ABORTED")
    launch("run-stopped")
    put_run("run-long", age_seconds=2 * HOUR, max_runtime_seconds=60)
    launch("run-long")
    put_run("run-live", attempt=2)
    launch("run-live", attempt=2)
    first = reaper()
    records = {run_id: read_record(run_id) for run_id in ("run-stopped", "run-long", "run-live")}
    stops = list(sfn.stopped)

    second = reaper(later=300)

    assert len(first.terminated) == 3 and first.cancelled_runs and first.limit_exceeded_runs
    assert second == ReapSummary()
    assert sfn.stopped == stops
    assert {run_id: read_record(run_id) for run_id in records} == records


def test_given_run_finishing_before_its_cancel_is_written_when_reaped_then_not_overwritten(
    reaper, put_run, launch, sfn, set_record_fields, read_record, aws
):
    arn = put_run(status="RUNNING")
    instance_id, _ = launch()

    def finish(described: str) -> None:
        # FinalizeRun records the run, then the execution ends: the reaper saw it live.
        set_record_fields("run-1", status="SUCCEEDED", end_reason="completed")
        sfn.statuses[arn] = "SUCCEEDED"

    sfn.on_describe = finish

    summary = reaper()

    assert summary.cancelled_runs == []
    assert summary.terminated == [instance_id]  # the run is over either way
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("SUCCEEDED", "completed")


def test_given_run_finishing_before_its_limit_failure_is_written_when_reaped_then_not_overwritten(
    reaper, put_run, launch, sfn, set_record_fields, read_record
):
    put_run(status="RUNNING", age_seconds=2 * HOUR, max_runtime_seconds=60)
    launch()

    def finish(arn: str) -> None:
        set_record_fields("run-1", status="SUCCEEDED", end_reason="completed")

    sfn.on_stop = finish

    summary = reaper()

    assert summary.limit_exceeded_runs == []
    item = read_record("run-1")
    assert (item["status"], item["end_reason"]) == ("SUCCEEDED", "completed")


def test_given_run_finished_after_the_scan_when_over_its_limit_then_its_execution_is_not_stopped(
    reaper, put_run, table, sfn, set_record_fields, monkeypatch
):
    put_run(status="RUNNING", age_seconds=2 * HOUR, max_runtime_seconds=60)
    scanned = table.live_runs()
    set_record_fields("run-1", status="SUCCEEDED")
    monkeypatch.setattr(table, "live_runs", lambda: scanned)

    summary = reaper()

    assert summary == ReapSummary()
    assert sfn.stopped == []


# ---------------------------------------------------------------- one failure, not all


def test_given_ec2_refuses_one_instance_when_handler_runs_then_others_reaped_and_it_fails(
    invoke, lambda_environment, clock, client_overrides, launch, aws, now, sfn
):
    stuck, _ = launch("run-a")
    other, _ = launch("run-b")

    class RefusingEc2:
        def terminate_instances(self, InstanceIds: list[str]) -> Any:
            if stuck in InstanceIds:
                raise ClientError(
                    {"Error": {"Code": "UnauthorizedOperation"}}, "TerminateInstances"
                )
            return aws.ec2.terminate_instances(InstanceIds=InstanceIds)

        def __getattr__(self, name: str) -> Any:
            return getattr(aws.ec2, name)

    client_overrides.by_service["ec2"] = RefusingEc2()
    clock.now = now

    with pytest.raises(ReapIncomplete, match=f"{stuck}: UnauthorizedOperation"):
        invoke(reap_orphans, _scheduled_event())

    assert _gone(aws, other)
    assert _state(aws, stuck) == "running"

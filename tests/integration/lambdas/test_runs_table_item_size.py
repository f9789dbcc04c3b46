"""The largest run item stays under BUDGET_BYTES of DynamoDB's 400 KB item limit, counted as
DynamoDB counts (tests/dynamodb_item_size.py; docs/architecture.md, "Payload limits").

The item is written as a run writes it, against moto: RecordRun's item with the largest RunSpec,
then for every attempt the RunSpec caps allow LaunchInstance's attempt with every option refused,
the agent's set-up reports and latest metrics at their caps, StartAgent's task token and
PlanNextAttempt's advance, and last FinalizeRun's write with the largest result, the longest
cause, the cost of every attempt and the largest metrics summary. Strings are plain ASCII, one
UTF-8 byte per byte of a JSON cap, except where a cut text's rest is wider (the cause, the
metric names past the summary's cap), so a missing cut shows. It takes seconds: moto copies
the whole item on every write."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from instance_agent.checkpoint_manifest import CheckpointFile, CheckpointVersion
from instance_agent.checkpoints import FACT_LINES, NotDurable, checkpoint_facts
from instance_agent.metrics import MetricsRecorder
from instance_agent.result import SETUP_REPORT_JSON_BYTES
from instance_agent.result import AgentResult as SentResult
from instance_agent.run_record import RunRecord as AgentRunRecord
from lambdas.dal.runs_table import RunsTable
from lambdas.integrations.ec2_fleet import CAPACITY_ERROR_CODES
from lambdas.integrations.metrics_files import MetricsFiles, metrics_key
from lambdas.logic.finalizing import Outcome, run_end_fields, run_summary_fields, write_run_end
from lambdas.logic.launch_plan import LaunchOption, summarize_refusals
from lambdas.logic.launching import NOT_TRIED_IN_TIME
from lambdas.logic.next_attempt import AGENT_START_RETRIES, GPU_RETRIES
from lambdas.logic.pricing import HourlyPrice, InstanceUsage
from lambdas.models.bounds import json_size
from lambdas.models.run_record import SETUP_ATTEMPTS_KEPT, Attempt, EndReason, RunStatus
from lambdas.models.run_spec import InterruptionPolicy, RetryPolicy, RunSpec
from lambdas.models.steps import AgentResult, RunContext
from tests.dynamodb_item_size import ITEM_LIMIT_BYTES, attribute_size, item_size
from tests.largest_payloads import PLAIN, largest_spec

# A margin under the limit for what this model leaves out (a field added later, a longer id).
BUDGET_BYTES = 350_000

BUCKET_NAME = "b" * 63  # the bucket in the spec's URIs (the test bucket holds the metrics)
RUN_ID = "r" * 80
EXECUTION_ARN = f"arn:aws:states:ap-southeast-2:123456789012:execution:{'T' * 80}:{RUN_ID}"
DATA_PREFIX = f"s3://{BUCKET_NAME}/data/"
INSTANCE_TYPES = [f"{'x' * 30}{index:02d}.xlarge" for index in range(20)]  # 40 characters
# Six zones, as us-east-1 has: the longest lines that still name their zones (~160 bytes).
ZONES = [f"us-east-1{letter}" for letter in "abcdef"]
STAMP = "2026-12-03T10:42:11.123456+00:00"
NOW = datetime(2026, 12, 17, 10, 42, 11, 123456, tzinfo=UTC)
# Step Functions' task tokens are at most 2,048 characters; a cause at most 32,768 characters,
# here wider past the 4 KiB the record keeps (3 UTF-8 bytes each).
TASK_TOKEN = "t" * 2048
LONGEST_CAUSE = "x" * 4096 + "中" * (32_768 - 4096)
# Metric names at the 255-character cap; the summary's first ones ASCII, the rest 4-byte.
METRIC_VALUE = -1.2345678901234567e-100  # 17 significant digits, the most a float has
ASCII_NAMES = [f"{index:03d}" + "x" * 252 for index in range(300)]
WIDE_NAMES = [f"{index:03d}" + "😀" * 252 for index in range(300)]


def _cap(model: type, field: str) -> int:
    metadata = model.model_fields[field].metadata  # type: ignore[attr-defined]
    return int(next(item.le for item in metadata if hasattr(item, "le")))


def most_attempts() -> int:
    """Every resume PlanNextAttempt allows at the RunSpec's caps (lambdas/logic/next_attempt.py:
    preemptions, script retries, one more GPU instance, agent-start retries), then the last."""
    resumes = (
        _cap(InterruptionPolicy, "max_interruptions")
        + _cap(RetryPolicy, "max_retries")
        + GPU_RETRIES
        + AGENT_START_RETRIES
    )
    return resumes + 1


def largest_run() -> RunContext:
    def data_entry(index: int, uri_chars: int) -> dict[str, str]:
        return {
            "s3_uri": DATA_PREFIX + PLAIN * (uri_chars - len(DATA_PREFIX)),
            "name": f"{index:02d}" * 64,
        }

    base = {
        "code": {"s3_uri": f"s3://{BUCKET_NAME}/code/" + "a" * 64 + ".tar.gz", "sha256": "a" * 64},
        "entry_point": "e" * 1024,
        "instance_types": INSTANCE_TYPES,
        "interpreter": "i" * 256,
        "experiment": "x" * 128,
    }
    spec = RunSpec.model_validate(largest_spec(base, data_entry, len(DATA_PREFIX) + 1, PLAIN))
    return RunContext(
        run_id=RUN_ID, execution_arn=EXECUTION_ARN, spec=spec, train_timeout_seconds=1_210_200
    )


def every_option_refused() -> list[str]:
    """LaunchInstance's refusals when every option of the largest spec failed, each zone with
    every reason there is (the most lines summarize_refusals can be given)."""
    reasons = [NOT_TRIED_IN_TIME, *sorted(CAPACITY_ERROR_CODES, key=len, reverse=True)]
    return summarize_refusals(
        [
            (LaunchOption(instance_type, f"subnet-{zone}", zone, market), reason)
            for market in ("spot", "on-demand")
            for instance_type in INSTANCE_TYPES
            for reason in reasons
            for zone in ZONES
        ]
    )


def report_of(size: int) -> dict[str, Any]:
    """A set-up report of exactly `size` bytes of JSON (the cap keeps it whole)."""
    report: dict[str, Any] = {"action": "INSTALLED", "seconds": 1234.567, "python": ""}
    report["python"] = "p" * (size - json_size(report))
    assert json_size(report) == size
    return report


def largest_result() -> AgentResult:
    """The agent's result with every part past its cap, as FinalizeRun reads it."""
    sent = SentResult(
        outcome="script-failed",
        exit_code=-2_147_483_648,
        stderr_tail="x" * 20_000,
        started_at=STAMP,
        ended_at=STAMP,
        outputs_uri=f"s3://{BUCKET_NAME}/runs/{RUN_ID}/outputs/",
        final_metrics=dict.fromkeys(ASCII_NAMES, METRIC_VALUE),
        message="x" * 20_000,
    )
    return AgentResult.model_validate_json(sent.to_json())


class LongPrices:
    """Prices with as many digits as a float has, from the longest source name."""

    def hourly_price(self, usage: InstanceUsage) -> HourlyPrice:
        return HourlyPrice(1 / 3, "static-spot-estimate")


def largest_checkpoint_facts() -> dict[str, Any]:
    """An attempt's checkpoint facts at their longest: the user's names are as long as a file
    name gets (255 wide characters), every kind of line at its count."""
    name = "界" * 255
    version = CheckpointVersion(
        version=f"{2**31}-{10**6}",
        name=name,
        kind="folder",
        files=(CheckpointFile(name + "/x", "0" * 64, 2**40),),
        attempt=2**31,
        saved_at=STAMP,
        uploaded_at=STAMP,
        step=2**53,
    )
    lines = [f"{name} (version 1-1): " + "界" * 4000] * (FACT_LINES + 5)
    never = [NotDurable(name + str(index), 1e12) for index in range(FACT_LINES + 5)]
    return checkpoint_facts(version, version, lines, never)


def breakdown(item: dict[str, Any]) -> str:
    sizes = sorted(((len(name) + attribute_size(value), name) for name, value in item.items()))
    return ", ".join(f"{name} {size:,}" for size, name in reversed(sizes))


@pytest.fixture
def largest_item(aws, runs_table, bucket, tmp_path: Path) -> dict[str, Any]:
    run = largest_run()
    table = RunsTable(runs_table, aws.dynamodb)
    table.create(run, STAMP)
    refused = every_option_refused()
    recorder = MetricsRecorder(tmp_path / "metrics.jsonl")
    recorder.record(dict.fromkeys(ASCII_NAMES, METRIC_VALUE))
    latest = recorder.latest()[1]
    setup = {
        "environment": report_of(SETUP_REPORT_JSON_BYTES),
        "gpu": report_of(SETUP_REPORT_JSON_BYTES),
    }
    facts = largest_checkpoint_facts()
    attempts = most_attempts()
    for number in range(1, attempts + 1):
        launched = Attempt(
            number=number,
            instance_id="i-0123456789abcdef0",
            instance_type=INSTANCE_TYPES[-1],
            availability_zone="ap-southeast-2-akl-1a",
            market="on-demand",
            started_at=STAMP,
            refused=refused,
        )
        assert table.start_attempt(RUN_ID, launched, STAMP)
        agent = AgentRunRecord(aws.dynamodb, runs_table, RUN_ID, number, clock=lambda: STAMP)
        assert agent.set_setup(setup)
        assert agent.set_checkpoints(facts)
        if number < attempts:
            assert table.advance_attempt(RUN_ID, number, EndReason.ENVIRONMENT_FAILED.value, STAMP)
    # The fields every attempt writes again over the last one's: only the last one's stay.
    assert agent.set_latest_metrics(latest)
    assert table.update_live(RUN_ID, attempts, STAMP, {"task_token": TASK_TOKEN})
    assert agent.set_status("CHECKPOINTING", reason=EndReason.SPOT_INTERRUPTED.value)
    assert table.request_stop(RUN_ID, STAMP)

    # FinalizeRun: the summary reads every attempt's metrics.jsonl (attempt 1's holds them all).
    names = ASCII_NAMES[:100] + WIDE_NAMES[100:256]
    line = json.dumps({"step": 2**53, **dict.fromkeys(names, METRIC_VALUE)}) + "\n"
    aws.s3.put_object(Bucket=bucket, Key=metrics_key(RUN_ID, 1), Body=line.encode())
    record = table.get(RUN_ID)
    assert record is not None
    summary = run_summary_fields(record, MetricsFiles(aws.s3, bucket), LongPrices(), NOW)
    outcome = Outcome(
        RunStatus.FAILED, EndReason.SCRIPT_FAILED, "Runctl.ScriptFailed", LONGEST_CAUSE
    )
    fields = run_end_fields(outcome, largest_result(), STAMP, 1_209_600.123456789)
    ended = {"ended_at": STAMP, "end_reason": EndReason.SCRIPT_FAILED.value}
    assert write_run_end(table, RUN_ID, attempts, STAMP, fields, summary, ended)
    item: dict[str, Any] = aws.dynamodb.get_item(
        TableName=runs_table, Key={"run_id": {"S": RUN_ID}}
    )["Item"]
    return item


def test_the_largest_run_item_stays_under_the_budget(largest_item):
    # Given a run at every cap, written as its steps and agent write it (the fixture)
    item = largest_item

    # When its size is counted as DynamoDB counts it
    size = item_size(item)

    # Then it is under the budget, with margin under the limit, and holds all it should
    assert size < BUDGET_BYTES < ITEM_LIMIT_BYTES, f"{size:,} bytes: {breakdown(item)}"
    assert len(item["attempts"]["M"]) == most_attempts()
    assert len(item["setup"]["M"]) == SETUP_ATTEMPTS_KEPT
    assert len(item["checkpoints"]["M"]) == SETUP_ATTEMPTS_KEPT
    assert item["cost"]["M"]["attempts"]["L"] and item["metrics_summary"]["M"]
    assert item["status"]["S"] == "FAILED"

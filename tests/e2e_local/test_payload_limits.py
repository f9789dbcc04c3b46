"""The largest RunSpec runctl accepts and the largest result an agent sends go through every
TrainRun state under Step Functions' 256 KiB (which local mode enforces as AWS does): a run at
every RunSpec cap, whose script logs thousands of long metric names and a stderr full of
characters that escape to twice their size, fails once (PlanNextAttempt's output holds the next
RunContext beside the current one) and then succeeds, its result capped. The emulator drops a
task failure's cause, so the causes' share of a state is held by
tests/unit/lambdas/test_payload_budget.py instead."""

from __future__ import annotations

import json

import pytest

from lambdas.constants import attempt_result_key
from lambdas.models.bounds import json_size
from lambdas.models.run_record import EndReason, RunStatus
from lambdas.models.run_spec import MAX_SPEC_JSON_BYTES
from lambdas.models.steps import FINAL_METRICS_JSON_BYTES, STDERR_TAIL_JSON_BYTES
from runctl.local.limits import MAX_PAYLOAD_BYTES, payload_size
from tests.largest_payloads import largest_spec, spec_size

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_payload_limits")]

METRIC_NAMES = 2000
NOISY_SCRIPT = f"""
    import json, os, sys
    attempt = int(os.environ["RUNCTL_ATTEMPT"])
    print("RUNCTL_METRIC " + json.dumps({{"step": attempt, "loss": 0.5 / attempt}}), flush=True)
    for start in range(0, {METRIC_NAMES}, 50):
        names = {{f"m{{i:04d}}" + '"' * 200: i * 0.5 for i in range(start, start + 50)}}
        print("RUNCTL_METRIC " + json.dumps(names), flush=True)
    print("RUNCTL_METRIC " + json.dumps({{"huge": 1e200}}), flush=True)
    sys.stderr.write('"' * 10000 + f"\\nlast line of attempt {{attempt}}\\n")
    sys.exit(3 if attempt == 1 else 0)
"""


def test_the_largest_spec_and_result_fit_every_state_of_a_resumed_run(runner):
    # Given a RunSpec at every cap: its data entries are objects with long keys in the bucket
    session = runner.session
    bucket = session.stack.bucket

    def data_entry(index: int, uri_chars: int) -> dict[str, str]:
        prefix = f"s3://{bucket}/data/largest/{index:02d}/"
        filler = "".join("/" if i % 201 == 200 else "p" for i in range(uri_chars - len(prefix)))
        key = (prefix + filler.rstrip("/") + "q" * (len(filler) - len(filler.rstrip("/"))))[
            len(f"s3://{bucket}/") :
        ]
        session.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        return {"s3_uri": f"s3://{bucket}/{key}", "name": f"d{index:02d}"}

    base = runner.spec(NOISY_SCRIPT, retries={"max_retries": 1, "on_exit_codes": [3]})
    spec = largest_spec(base, data_entry, len(f"s3://{bucket}/data/largest/00/") + 1)
    assert spec_size(spec) == MAX_SPEC_JSON_BYTES

    # When it runs: attempt 1 fails with exit code 3 (retried), attempt 2 succeeds
    outcome = runner.run_spec(spec)

    # Then the run succeeded on its second attempt, no state over the limit
    record = outcome.record
    assert outcome.execution_status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert record.status is RunStatus.SUCCEEDED
    assert record.attempt == 2
    assert record.attempts["1"].end_reason is EndReason.SCRIPT_FAILED
    # And the spec went through whole
    for field in ("args", "environment", "hyperparameters", "data"):
        assert record.spec[field] == spec[field]
    # And the states it went through were large, and all within the limit
    history = session.sfn.get_execution_history(
        executionArn=session.execution_arn(outcome.run_id), maxResults=1000
    )["events"]
    entered = [e["stateEnteredEventDetails"] for e in history if "stateEnteredEventDetails" in e]
    assert {"PlanNextAttempt", "StartNextAttempt"} <= {state["name"] for state in entered}
    largest_state = max(payload_size(json.loads(state["input"])) for state in entered)
    assert 2 * MAX_SPEC_JSON_BYTES < largest_state <= MAX_PAYLOAD_BYTES

    # And the record's final metrics are the first names that fit, without the number DynamoDB
    # cannot hold; the result says how many were left out
    final = record.final_metrics
    assert list(final)[:2] == ["step", "loss"] and final["step"] == 2
    assert list(final)[2:] == [f"m{i:04d}" + '"' * 200 for i in range(len(final) - 2)]
    assert json_size(final) <= FINAL_METRICS_JSON_BYTES
    result = json.loads(runner.s3_text(attempt_result_key(outcome.run_id, 2)))
    assert result["final_metrics"] == final
    assert result["final_metrics_dropped"] == METRIC_NAMES + 3 - len(final)
    # And attempt 1's stderr tail is its last bytes, within the cap
    failed = json.loads(runner.s3_text(attempt_result_key(outcome.run_id, 1)))
    assert failed["stderr_tail"].endswith('"\nlast line of attempt 1\n')
    assert json_size(failed["stderr_tail"]) <= STDERR_TAIL_JSON_BYTES

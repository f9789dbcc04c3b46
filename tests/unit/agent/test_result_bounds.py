"""The attempt's result stays small whatever the script does: stderr's last bytes, the message's
first, the first metric names that fit, each under its cap, so the whole is a SendTaskFailure
cause (32,768 characters) and a small part of a TrainRun state. The agent and the Lambdas'
AgentResult apply the same caps."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from instance_agent import bounds as agent_bounds
from instance_agent import result as agent_result
from instance_agent.metrics import MetricsRecorder
from instance_agent.result import AgentResult
from instance_agent.task_token import MAX_CAUSE_CHARS
from lambdas.models import bounds as lambda_bounds
from lambdas.models import steps
from lambdas.models.steps import FinalizeOutput
from tests.largest_payloads import NASTY, largest_result

QUOTE = '"'  # doubled when escaped: the worst character for a size, with control characters


def stderr_of(text: str) -> str:
    return AgentResult(outcome="script-failed", stderr_tail=text).to_dict()["stderr_tail"]


def test_stderr_tail_keeps_its_last_bytes_within_the_cap():
    # Given a tail whose quotes double when escaped, ending with the line that says what failed
    text = "first line\n" + QUOTE * 6000 + "\nValueError: loss is NaN"

    tail = stderr_of(text)

    # Then the end is kept whole and the whole fits its cap exactly or just under
    assert text.endswith(tail)
    assert tail.endswith("\nValueError: loss is NaN")
    cap = agent_result.STDERR_TAIL_JSON_BYTES
    assert cap - 2 <= len(json.dumps(tail)) <= cap


def test_a_plain_stderr_tail_is_kept_whole():
    text = "Traceback (most recent call last):\n" + "y" * 4000

    assert stderr_of(text) == text


def test_the_message_keeps_its_start_and_says_it_was_cut():
    message = "the script exited with code 0, but the agent could not finish: " + NASTY * 2000

    kept = AgentResult(outcome="agent-failed", message=message).to_dict()["message"]

    assert kept.endswith("…")
    assert message.startswith(kept[:-1])
    assert len(json.dumps(kept)) <= agent_result.MESSAGE_JSON_BYTES


def test_final_metrics_keep_the_first_names_and_count_the_rest():
    # Given 3,000 metric names, first logged first
    metrics = {f"m{index:04d}": index * 0.5 for index in range(3000)}

    fields = AgentResult(outcome="succeeded", final_metrics=metrics).to_dict()

    # Then the first 256 are kept, in order, and the result says how many were left out
    assert list(fields["final_metrics"]) == [f"m{index:04d}" for index in range(256)]
    assert fields["final_metrics_dropped"] == 3000 - 256


def test_long_metric_names_are_bounded_by_bytes_too():
    # Given names at the longest allowed, made of quotes (each takes 2 bytes escaped)
    metrics = {f"{index:03d}" + QUOTE * 252: 1.0 for index in range(256)}

    fields = AgentResult(outcome="succeeded", final_metrics=metrics).to_dict()

    kept = fields["final_metrics"]
    assert len(json.dumps(kept)) <= agent_result.FINAL_METRICS_JSON_BYTES
    assert list(kept) == list(metrics)[: len(kept)]
    assert fields["final_metrics_dropped"] == 256 - len(kept) > 0


def test_final_metrics_keep_only_numbers_dynamodb_can_hold():
    metrics = {"loss": 0.25, "huge": 1e200, "tiny": 1e-200, "nan": math.nan, "flag": True, "n": 7}

    kept = AgentResult(outcome="succeeded", final_metrics=metrics).to_dict()["final_metrics"]

    assert kept == {"loss": 0.25, "n": 7}


def test_a_set_up_report_too_large_is_left_out():
    gpu = {"driver_version": "570.86.15", "cuda_version": "12.8", "gpus": ["NVIDIA A10G"] * 200}

    fields = AgentResult(outcome="succeeded", gpu=gpu, environment={"action": "none"}).to_dict()

    assert fields["gpu"] is None
    assert fields["environment"] == {"action": "none"}


def test_the_largest_result_fits_a_task_failure_cause_without_being_cut():
    body = largest_result().to_json()

    # Then it is ASCII (bytes = characters), under its own bound and the task token's cut
    assert body.isascii()
    assert len(body) <= agent_result.MAX_RESULT_JSON_BYTES
    assert agent_result.MAX_RESULT_JSON_BYTES <= MAX_CAUSE_CHARS < 32_768
    json.loads(body)  # whole, not cut


def test_the_lambdas_agent_result_applies_the_same_caps_as_the_agent():
    # Given the agent's uncapped result as some other writer might have left it in result.json
    raw = largest_result()
    uncapped = {**raw.__dict__}

    # When FinalizeRun parses it
    parsed = steps.AgentResult.model_validate(uncapped).model_dump(mode="json")

    # Then it holds what the agent would have sent
    assert parsed == json.loads(raw.to_json())


@pytest.mark.parametrize(
    "name",
    [
        "STDERR_TAIL_JSON_BYTES",
        "MESSAGE_JSON_BYTES",
        "FINAL_METRICS_JSON_BYTES",
        "MAX_FINAL_METRICS",
        "MAX_METRIC_NAME_CHARS",
        "SETUP_REPORT_JSON_BYTES",
        "MAX_RESULT_JSON_BYTES",
    ],
)
def test_the_agent_and_the_lambdas_share_each_cap(name):
    assert getattr(agent_result, name) == getattr(steps, name)


TEXTS = [
    "",
    "plain",
    QUOTE * 50,
    NASTY * 30,
    "é" * 40,
    "😀" * 20 + "x",
    "\x00\x1f" * 9,
    "\udcff" * 9,
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("max_bytes", [2, 3, 7, 13, 64])
def test_the_agent_and_the_lambdas_cut_text_alike(text, max_bytes):
    for fit in ("fit_head", "fit_tail"):
        ours: str = getattr(agent_bounds, fit)(text, max_bytes)
        assert ours == getattr(lambda_bounds, fit)(text, max_bytes)
        assert len(json.dumps(ours)) <= max(max_bytes, len(json.dumps(lambda_bounds.ELLIPSIS)))


@pytest.mark.parametrize(
    "metrics",
    [
        {},
        {"a": 1, "b": 2.5, "c": True, "d": "x", "e": math.inf, "f": 10**40, "g": 10**200},
        {f"n{index}" + QUOTE * index: index for index in range(40)},
    ],
)
def test_the_agent_and_the_lambdas_fit_metrics_alike(metrics: dict[str, Any]):
    for limits in [(256, 255, 12 * 1024), (3, 5, 40), (40, 255, 200)]:
        ours = agent_bounds.fit_metrics(metrics, *limits)
        assert ours == lambda_bounds.fit_metrics(metrics, *limits)
        assert len(json.dumps(ours[0])) <= limits[2]


def test_the_recorder_keeps_the_first_names_and_counts_the_ones_it_refused(tmp_path):
    # Given a script that logs 10,000 distinct names, and too long a name, then updates the first
    recorder = MetricsRecorder(tmp_path / "metrics.jsonl")
    for start in range(0, 10_000, 100):
        recorder.record({f"m{index:05d}": 1.0 for index in range(start, start + 100)})
    recorder.record({"x" * 256: 1.0, "m00000": 2.0})

    # Then the latest values are those of the first 256 names (the first one updated)
    _, latest = recorder.latest()
    assert list(latest) == [f"m{index:05d}" for index in range(256)]
    assert latest["m00000"] == 2.0
    # And every other name is counted as left out, and still in metrics.jsonl
    assert recorder.dropped() == 10_000 - 256 + 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 101


def test_the_recorders_latest_values_fit_their_byte_cap(tmp_path):
    recorder = MetricsRecorder(tmp_path / "metrics.jsonl")
    recorder.record({f"{index:03d}" + QUOTE * 250: 0.1 for index in range(256)})

    _, latest = recorder.latest()

    assert len(json.dumps(latest)) <= agent_result.FINAL_METRICS_JSON_BYTES
    assert recorder.dropped() == 256 - len(latest) > 0


def test_finalize_runs_cause_is_cut_to_a_few_kib():
    cause = "script exited with code 1: " + QUOTE * 10_000

    kept = FinalizeOutput(run_id="r", status="FAILED", end_reason="script-failed", cause=cause)

    assert kept.cause.startswith("script exited with code 1: ")
    assert kept.cause.endswith("…")
    assert len(json.dumps(kept.cause)) <= steps.FINAL_CAUSE_JSON_BYTES

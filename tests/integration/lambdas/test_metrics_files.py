"""MetricsFiles: the attempts' metrics.jsonl lines from S3, in attempt order, within a budget."""

from __future__ import annotations

import json

import pytest

from instance_agent import layout
from lambdas.integrations.metrics_files import MetricsFiles, metrics_key


@pytest.fixture
def upload(aws, bucket):
    def put(attempt: int, *steps: int) -> bytes:
        body = "".join(json.dumps({"step": step, "loss": 1 / step}) + "\n" for step in steps)
        aws.s3.put_object(Bucket=bucket, Key=metrics_key("run-1", attempt), Body=body)
        return body.encode()

    return put


def steps_of(lines) -> list[int]:
    return [json.loads(line)["step"] for line in lines]


def test_metrics_key_is_where_the_agent_uploads():
    assert metrics_key("run-1", 3) == layout.metrics_key("run-1", 3)


def test_lines_come_attempt_by_attempt_and_a_missing_file_is_skipped(aws, bucket, upload):
    upload(1, 1, 2, 3)
    upload(3, 2, 3, 4)  # attempt 2 never logged anything

    lines = MetricsFiles(aws.s3, bucket).lines("run-1", [3, 1, 2])

    assert steps_of(lines) == [1, 2, 3, 2, 3, 4]


def test_over_the_budget_only_the_newest_bytes_are_read(aws, bucket, upload):
    upload(1, *range(1, 100))
    newest = upload(2, *range(50, 60))
    newest_lines = newest.splitlines()
    # The budget holds attempt 2 and part of the last line of attempt 1's 99 lines, and no more
    budget = len(newest) + 5

    lines = list(MetricsFiles(aws.s3, bucket).lines("run-1", [1, 2], max_bytes=budget))

    assert lines == newest_lines


def test_the_budget_cuts_an_older_file_at_a_line_and_keeps_its_newest_lines(aws, bucket, upload):
    older = upload(1, *range(1, 100))
    newest = upload(2, 200)
    last_three = b"\n".join(older.splitlines()[-3:]) + b"\n"
    # Attempt 1's last three lines fit, and a few bytes of the line before them
    budget = len(newest) + len(last_three) + 4

    lines = MetricsFiles(aws.s3, bucket).lines("run-1", [1, 2], max_bytes=budget)

    assert steps_of(lines) == [97, 98, 99, 200]


def test_no_files_no_lines(aws, bucket):
    assert list(MetricsFiles(aws.s3, bucket).lines("run-1", [1, 2])) == []

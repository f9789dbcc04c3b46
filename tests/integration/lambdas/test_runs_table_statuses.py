"""RunsTable.statuses: many runs' statuses in batched reads (sweep progress polls with it)."""

from __future__ import annotations

from typing import Any

from lambdas.dal.runs_table import RunsTable
from lambdas.models.run_record import RunStatus


class CountingClient:
    """The moto DynamoDB client, counting BatchGetItem calls and the keys in each."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.batches: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> Any:
        (request,) = RequestItems.values()
        self.batches.append(len(request["Keys"]))
        return self._real.batch_get_item(RequestItems=RequestItems)


def test_given_250_runs_when_their_statuses_are_read_then_three_batches_return_the_recorded_ones(
    aws, runs_table
):
    # Given 250 run ids of which every other one has a record, in assorted statuses
    run_ids = [f"sweep-1-r{index:03d}" for index in range(250)]
    cycle = [RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.LAUNCHING]
    recorded = {run_id: cycle[index % 4] for index, run_id in enumerate(run_ids[::2])}
    for run_id, status in recorded.items():
        aws.dynamodb.put_item(
            TableName=runs_table,
            Item={"run_id": {"S": run_id}, "status": {"S": status.value}, "attempt": {"N": "1"}},
        )
    client = CountingClient(aws.dynamodb)

    # When their statuses are read
    statuses = RunsTable(runs_table, client).statuses(run_ids)

    # Then one call per 100 runs, and exactly the recorded runs with their statuses
    assert client.batches == [100, 100, 50]
    assert statuses == recorded


def test_given_no_runs_when_statuses_are_read_then_nothing_is_called(aws, runs_table):
    client = CountingClient(aws.dynamodb)

    assert RunsTable(runs_table, client).statuses([]) == {}
    assert client.batches == []

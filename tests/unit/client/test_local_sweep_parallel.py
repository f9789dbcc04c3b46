"""A local sweep runs at most two runs per CPU at once (local instances share the machine), and
says so; what it asks within that limit is kept."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from lambdas.models.sweep_spec import SweepSpec
from runctl.local.sweeps import LocalSweeps, local_parallel_limit

BASE = {
    "code": {"s3_uri": "s3://runctl-bucket/code/" + "a" * 64 + ".tar.gz"},
    "entry_point": "train.py",
}


class RecordingSfn:
    def __init__(self) -> None:
        self.inputs: list[dict[str, Any]] = []

    def start_execution(self, **request: Any) -> dict[str, str]:
        self.inputs.append(json.loads(request["input"]))
        return {"executionArn": "arn"}


def _started_max_parallel(spec: SweepSpec | dict[str, Any]) -> int:
    sfn = RecordingSfn()
    stack = SimpleNamespace(sweep_state_machine_arn="arn:aws:states:::stateMachine:s", bucket="b")
    LocalSweeps(SimpleNamespace(sfn=sfn, s3=None, stack=stack)).start(spec)  # type: ignore[arg-type]
    (started,) = sfn.inputs
    return int(started["max_parallel"])


def test_the_limit_is_two_runs_per_cpu_and_never_below_two():
    assert [local_parallel_limit(cpus) for cpus in (1, 2, 8)] == [2, 4, 16]


@pytest.mark.parametrize("as_model", [False, True])
def test_a_sweep_asking_more_than_the_limit_runs_at_the_limit(as_model):
    raw = {"base_spec": BASE, "grid": {"lr": [0.1, 0.2]}, "max_parallel": 40}
    spec = SweepSpec.model_validate(raw) if as_model else raw

    assert _started_max_parallel(spec) == local_parallel_limit()


def test_a_sweep_within_the_limit_keeps_what_it_asked():
    raw = {"base_spec": BASE, "grid": {"lr": [0.1, 0.2]}, "max_parallel": 2}

    assert _started_max_parallel(raw) == 2

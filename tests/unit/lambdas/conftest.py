"""Plain values the step logic is built from: a RunSpec, the Lambda environment, a RunContext."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.env import LambdaEnv
from lambdas.models.run_spec import RunSpec
from lambdas.models.steps import RunContext

CODE_URI = "s3://runctl-bucket/code/" + "a" * 64 + ".tar.gz"


@pytest.fixture
def minimal_spec() -> dict[str, Any]:
    """The smallest RunSpec a user can send."""
    return {"code": {"s3_uri": CODE_URI}, "entry_point": "train.py"}


@pytest.fixture
def env() -> LambdaEnv:
    return LambdaEnv(
        RUNS_TABLE_NAME="runctl-runs",
        BUCKET_NAME="runctl-bucket",
        LOG_GROUP_NAME="/runctl/runs",
        LAUNCH_TEMPLATE_ID="lt-0123456789abcdef0",
        AGENT_S3_URI="s3://runctl-bucket/agent/instance_agent.zip",
        DEFAULT_INSTANCE_TYPES="g5.xlarge,g4dn.xlarge",
    )


@pytest.fixture
def make_run(minimal_spec: dict[str, Any]) -> Any:
    """Build a RunContext from overrides of the minimal spec."""

    def build(run_id: str = "run-1", attempt: int = 1, **spec_fields: Any) -> RunContext:
        spec = RunSpec.model_validate(
            {"instance_types": ["g5.xlarge", "g4dn.xlarge"], **minimal_spec, **spec_fields}
        )
        return RunContext(
            run_id=run_id,
            execution_arn=f"arn:aws:states:us-east-1:123456789012:execution:TrainRun:{run_id}",
            attempt=attempt,
            spec=spec,
            train_timeout_seconds=spec.limits.max_runtime_seconds + 600,
        )

    return build

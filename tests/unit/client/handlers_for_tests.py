"""Tiny handlers the Lambda bridge tests import by name."""

from types import SimpleNamespace
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.errors import RunSpecInvalid
from lambdas.observability import metrics
from runctl.local.lambda_bridge import invoke_in_process


def raises_runspec_invalid(event: Any, context: Any) -> Any:
    raise RunSpecInvalid("entry_point: bad")


def echo(event: Any, context: Any) -> Any:
    return {"echo": event}


def local_mode_cause() -> str:
    """The cause moto gives a Lambda step that raised RunSpecInvalid('entry_point: bad') in
    local mode: the error payload of the bridge that stands in for Lambda."""
    function = SimpleNamespace(
        handler=f"{__name__}.raises_runspec_invalid",
        environment_vars={},
        function_name="ValidateRun",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:ValidateRun",
    )
    payload, errored = invoke_in_process(function, {})  # type: ignore[arg-type]
    assert errored
    return payload.decode()


@metrics.log_metrics
def counts_a_metric(event: Any, context: Any) -> Any:
    """Like LaunchInstance and FinalizeRun: one metric per invocation, flushed by the decorator."""
    metrics.add_metric(name="Launched-spot", unit=MetricUnit.Count, value=1)
    return {}

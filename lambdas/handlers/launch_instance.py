"""LaunchInstance: launch the attempt's instance (spot with capacity fallback), exactly once."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.logic.launching import LaunchBudget, launch_attempt
from lambdas.models.steps import PreviousAttempt, RunContext
from lambdas.observability import logger, metrics, tracer


class LaunchInput(BaseModel):
    run: RunContext
    previous: PreviousAttempt | None = None


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=LaunchInput)
def lambda_handler(event: LaunchInput, context: LambdaContext) -> dict[str, Any]:
    env = lambda_env()
    instance = launch_attempt(
        event.run,
        env,
        wiring.ec2_fleet(),
        wiring.runs_table(),
        wiring.utc_now().isoformat(),
        env.INSTANCE_READY_TIMEOUT_SECONDS,
        previous=event.previous,
        # Spot options give way to on-demand in time to launch inside the function's timeout.
        budget=LaunchBudget(context.get_remaining_time_in_millis),
    )
    metrics.add_metric(name=f"Launched-{instance.market}", unit=MetricUnit.Count, value=1)
    return instance.model_dump(mode="json")

"""FinalizeRun: always terminate the instance, then record how the run ended and what it cost."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.integrations.aws_clients import aws_client
from lambdas.integrations.spot_prices import SpotPriceHistory
from lambdas.logic.finalizing import finalize_run
from lambdas.models.steps import FinalizeInput
from lambdas.observability import logger, metrics, tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=FinalizeInput)
def lambda_handler(event: FinalizeInput, context: LambdaContext) -> dict[str, Any]:
    output = finalize_run(
        event,
        wiring.ec2_fleet(),
        wiring.runs_table(),
        wiring.s3(),
        lambda_env().BUCKET_NAME,
        wiring.utc_now(),
        SpotPriceHistory(aws_client("ec2")),
    )
    metrics.add_metric(name=f"Run-{output.status}", unit=MetricUnit.Count, value=1)
    return output.model_dump(mode="json")

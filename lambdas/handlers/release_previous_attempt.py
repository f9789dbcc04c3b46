"""ReleasePreviousAttempt: one bounded poll for an interrupted attempt's handoff, then end it."""

import time
from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.logic.release_previous import release_previous_attempt
from lambdas.models.steps import ReleaseInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=ReleaseInput)
def lambda_handler(event: ReleaseInput, context: LambdaContext) -> dict[str, Any]:
    probe = release_previous_attempt(
        event, wiring.ec2_fleet(), wiring.s3(), lambda_env().BUCKET_NAME, time.time()
    )
    return probe.model_dump()

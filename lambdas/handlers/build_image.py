"""BuildImage: the run's container image is in the repository, or a build of it runs (one
bounded poll; the state machine waits and calls again)."""

import time
from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.logic.image_builds import ensure_image
from lambdas.models.steps import BuildImageInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=BuildImageInput)
def lambda_handler(event: BuildImageInput, context: LambdaContext) -> dict[str, Any]:
    return ensure_image(
        event,
        lambda_env(),
        wiring.image_builds(),
        wiring.runs_table(),
        time.time(),
        wiring.utc_now().isoformat(),
    ).model_dump(mode="json")

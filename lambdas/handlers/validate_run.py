"""ValidateRun: parse and check the RunSpec; fail with RunSpecInvalid if it is wrong."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.logic.validation import validate_run
from lambdas.models.steps import ValidateInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=ValidateInput)
def lambda_handler(event: ValidateInput, context: LambdaContext) -> dict[str, Any]:
    return validate_run(event, lambda_env(), wiring.s3(), wiring.ec2()).model_dump(mode="json")

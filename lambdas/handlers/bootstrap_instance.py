"""BootstrapInstance: send the SSM command that installs the agent."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.logic.agent_start import bootstrap
from lambdas.models.steps import StepInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=StepInput)
def lambda_handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    return bootstrap(event, lambda_env(), wiring.ssm_commands(), wiring.region()).model_dump()

"""StartAgent (Train state, waitForTaskToken): write the agent's config and start it detached."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.logic.agent_start import start_agent
from lambdas.models.steps import StartAgentInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=StartAgentInput)
def lambda_handler(event: StartAgentInput, context: LambdaContext) -> dict[str, Any]:
    command_id = start_agent(
        event,
        lambda_env(),
        wiring.s3(),
        wiring.ssm_commands(),
        wiring.runs_table(),
        wiring.region(),
        wiring.utc_now().isoformat(),
    )
    return {"command_id": command_id}

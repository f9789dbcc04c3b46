"""StopRun: invoked by the client (`runctl stop RUN`), not by a state machine."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.logic.stopping import stop_run
from lambdas.models.steps import StopRunInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=StopRunInput)
def lambda_handler(event: StopRunInput, context: LambdaContext) -> dict[str, Any]:
    result = stop_run(
        event.run_id, wiring.runs_table(), wiring.ssm_commands(), wiring.utc_now().isoformat()
    )
    logger.info(result.message, extra={"run_id": result.run_id, "action": result.action})
    return result.model_dump()

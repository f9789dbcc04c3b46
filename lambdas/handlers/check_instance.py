"""CheckInstance: is the instance running and online in SSM? (one bounded poll)"""

import time
from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.logic.readiness import check_instance
from lambdas.models.steps import StepInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=StepInput)
def lambda_handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    return check_instance(event, wiring.ec2_fleet(), wiring.runs_table(), time.time()).model_dump()

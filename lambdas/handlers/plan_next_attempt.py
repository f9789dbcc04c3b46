"""PlanNextAttempt: after an attempt ended early, resume as a new attempt if the budgets allow."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.logic.next_attempt import plan_next_attempt
from lambdas.models.steps import FinalizeInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=FinalizeInput)
def lambda_handler(event: FinalizeInput, context: LambdaContext) -> dict[str, Any]:
    plan = plan_next_attempt(
        event, wiring.runs_table(), wiring.s3(), lambda_env().BUCKET_NAME, wiring.utc_now()
    )
    logger.info("next attempt", extra={"resume": plan.resume, "detail": plan.detail})
    return plan.model_dump(mode="json")

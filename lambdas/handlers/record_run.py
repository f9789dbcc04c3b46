"""RecordRun: create the run's record (PENDING); a retry by the same execution is a no-op."""

from typing import Any

from aws_lambda_powertools.utilities.parser import BaseModel, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.models.steps import RunContext
from lambdas.observability import logger, tracer


class RecordRunInput(BaseModel):
    run: RunContext


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=RecordRunInput)
def lambda_handler(event: RecordRunInput, context: LambdaContext) -> dict[str, Any]:
    record = wiring.runs_table().create(event.run, wiring.utc_now().isoformat())
    return {"run_id": record.run_id, "status": record.status.value}
